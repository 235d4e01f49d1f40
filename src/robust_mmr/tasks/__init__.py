"""Downstream tasks: VQA and image–text classification (a classifier on the pooled pair feature)."""
