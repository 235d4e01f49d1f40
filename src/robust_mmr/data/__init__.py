"""Data: the canonical record schema, manifests, image reading, validation and the synthetic set."""
