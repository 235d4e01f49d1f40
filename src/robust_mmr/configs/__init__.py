"""Preset run configurations (YAML): tiny (tests, CI), small (CPU default), base (paper scale)."""
