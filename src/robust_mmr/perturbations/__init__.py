"""Perturbations: image corruptions and text perturbations with 5 severities (DESIGN §3)."""
