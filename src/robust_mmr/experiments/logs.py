"""Progress lines of the demo and the method benchmarks, and quiet Lightning."""

from __future__ import annotations

import logging
import time
import warnings


def log(message: str) -> None:
    """One time-stamped progress line, flushed at once (parallel jobs interleave theirs)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def quiet_lightning() -> None:
    """Keep the output to the experiment's own progress lines: Lightning's per-fit banners and tips, and two
    harmless warnings (a deprecation inside Lightning, short epochs vs the logging interval), are hidden."""
    import lightning.pytorch  # noqa: F401  (importing it sets its loggers to INFO: quiet them after that)

    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
