"""Evaluation: metrics, ranking, the clean / perturbed / missing / cross-domain protocols, baselines, and reports
(per run over seeds, and the method benchmarks' summaries)."""
