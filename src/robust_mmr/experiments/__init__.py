"""Experiments: one method job (pre-train → fine-tune → evaluate), run in parallel, and the demo built on it."""
