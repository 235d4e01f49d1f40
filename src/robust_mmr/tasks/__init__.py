"""Downstream tasks: VQA and image–text classification (a head on the fused pair), ITC retrieval, fine-tuning with
early stopping, the probe on a frozen backbone, and predictions for new inputs."""
