"""Preset run configurations (YAML): tiny (tests, CI), demo (the demo and the method benchmarks), small (CPU
default), base (paper scale)."""
