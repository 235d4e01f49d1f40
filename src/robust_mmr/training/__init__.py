"""Training: the pre-training DataModule and LightningModule, checkpoints, and the run driver."""
