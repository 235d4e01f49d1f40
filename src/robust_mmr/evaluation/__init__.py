"""Evaluation: metrics, the clean / perturbed / cross-domain / missing protocols, and baselines."""
