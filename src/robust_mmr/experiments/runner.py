"""Run method jobs one after another or in parallel processes, and read back the finished ones.

A job that fails keeps the others going: its result is ``{"job": ..., "error": traceback}``. Parallel jobs
run in spawned processes (safe with CUDA), each with its own torch thread count (``Job.threads``).
"""

from __future__ import annotations

import json
import os
import signal
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from multiprocessing import get_context

from robust_mmr.experiments.job import PROTOCOLS, Job, read_finished, run_job, vqa_headline, vqa_run_dir
from robust_mmr.experiments.logs import log, quiet_lightning


def cores_per_job(parallel: int) -> int:
    """Torch threads for each of ``parallel`` jobs run at once: the machine's cores shared between them."""
    return max(1, (os.cpu_count() or 1) // max(1, parallel))


def finished_results(jobs: list[Job]) -> list[dict]:
    """The results of the jobs that have finished, their VQA headlines recomputed from each run's saved
    ``results.json`` (so a summary follows today's headline definitions, whatever made the job). Checks the
    settings of every finished or begun job (:func:`robust_mmr.experiments.job.read_finished`)."""
    results = []
    for job in jobs:
        result = read_finished(job)
        if result is not None:
            results.append(refresh_headlines(result, job))
    return results


def refresh_headlines(result: dict, job: Job) -> dict:
    """``result`` with every VQA headline recomputed from its run's ``results.json`` where that file exists."""
    for protocol in (key for key in PROTOCOLS if key in result):
        for holdout, head in result[protocol].items():
            path = vqa_run_dir(job, protocol, holdout) / "results.json"
            if path.is_file():
                head.update(vqa_headline(json.loads(path.read_text(encoding="utf-8"))))
    return result


def run_jobs(jobs: list[Job], parallel: int = 1, progress: bool = False) -> list[dict]:
    """Run ``jobs`` (finished ones are read back), ``parallel`` at a time, logging each as it ends."""
    start = time.perf_counter()
    done = finished_results(jobs)  # checks every finished or begun job's settings before anything runs
    log(f"{len(jobs)} jobs ({len(done)} already finished), {parallel} at a time")
    results = []
    pool = None
    previous = signal.signal(signal.SIGTERM, _stop)  # `kill` of this process ends its workers too
    try:
        if parallel <= 1:
            finished = ((job, _run_logged(job, progress)) for job in jobs)
        else:
            pool = ProcessPoolExecutor(max_workers=parallel, mp_context=get_context("spawn"))
            futures = {pool.submit(_run_logged, job, False): job for job in jobs}
            finished = ((futures[f], _result_of(f, futures[f])) for f in as_completed(futures))
        for i, (job, result) in enumerate(finished, 1):
            label = f"{result['job']['variant']} seed {result['job']['seed']}"
            if "error" in result:
                log(f"[{i}/{len(jobs)}] {label} FAILED:\n{result['error']}")
            else:
                result = refresh_headlines(result, job)  # as --summary-only would read it
                log(f"[{i}/{len(jobs)}] {label} ({result.get('seconds', 0):.0f} s): {headline_line(result)}")
            results.append(result)
    except BaseException:
        if pool is not None:  # a stopped run leaves no worker behind (a rerun resumes from the finished jobs)
            for process in list(getattr(pool, "_processes", {}).values()):
                process.kill()
            pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    if pool is not None:
        pool.shutdown()
    log(f"all jobs done in {time.perf_counter() - start:.0f} s")
    return results


def _stop(signum, frame) -> None:
    raise SystemExit(f"stopped by signal {signum}")


def headline_line(result: dict) -> str:
    """One line per finished job: clean / held-out / perturbed accuracy and the epoch kept, per run."""
    def num(value: float | None) -> str:
        return "–" if value is None else f"{value:.3f}"

    return "; ".join(f"{key} {holdout or 'standard'}: clean {num(v['clean'])} held-out {num(v['held_out'])} "
                     f"perturbed {num(v['perturbed'])} (epoch {v['best_epoch']}/{v['epochs_run']})"
                     for key in PROTOCOLS for holdout, v in result.get(key, {}).items())


def _run_logged(job: Job, progress: bool) -> dict:
    quiet_lightning()
    try:
        return run_job(job, progress)
    except Exception:  # keep the other jobs going; the failure is reported with its traceback
        return {"job": asdict(job), "error": traceback.format_exc()}


def _result_of(future, job: Job) -> dict:
    try:
        return future.result()
    except Exception:  # the worker process itself died (out of memory, killed): the others go on
        return {"job": asdict(job), "error": traceback.format_exc()}
