"""A stopped parallel benchmark run leaves no worker process behind (a rerun resumes from the finished jobs)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SCRIPT = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from robust_mmr.experiments import runner
    from robust_mmr.experiments.job import Job

    def hang(job, progress):  # a worker that would run for minutes
        Path(job.out, "worker.pid").write_text(str(os.getpid()))
        time.sleep(300)
        return {"job": {"variant": job.variant, "seed": job.seed}}

    if __name__ == "__main__":
        runner._run_logged = hang
        jobs = [Job(variant="mmr", overrides=(), seed=seed, pretrain_data="", task_data="",
                    out=str(Path(sys.argv[1], f"seed{seed}")), holdouts=("",), finetune={}, corruptions=(),
                    text_perturbations=(), severities=(), max_eval_items=None) for seed in (0, 1)]
        for job in jobs:
            Path(job.out).mkdir(parents=True)
        runner.run_jobs(jobs, parallel=2)
""")


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie left for a non-reaping init counts as ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_sigterm_to_a_parallel_run_ends_its_workers(tmp_path):
    script = tmp_path / "stop_me.py"
    script.write_text(SCRIPT)
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path / "runs")], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    pid_files = [tmp_path / "runs" / f"seed{seed}" / "worker.pid" for seed in (0, 1)]
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not all(f.is_file() and f.read_text() for f in pid_files):
            assert parent.poll() is None, parent.stdout.read()
            assert time.monotonic() < deadline, "the workers never started"
            time.sleep(0.2)
        workers = [int(f.read_text()) for f in pid_files]
        assert all(_alive(pid) for pid in workers)

        parent.send_signal(signal.SIGTERM)
        output = parent.communicate(timeout=30)[0]
        assert parent.returncode != 0 and "stopped by signal" in output
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in workers if _alive(pid)], "workers outlived the stopped run"
    finally:  # never leave the run or its workers behind, even when the test fails
        for pid in [parent.pid, *workers]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        parent.wait()
