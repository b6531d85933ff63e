"""Run a batch of trials in this process or in parallel worker processes.

Parallel trials use ``concurrent.futures.ProcessPoolExecutor`` with the ``spawn`` start
method (safe with the threads numpy and polars start; ``fork`` is not). Each worker loads the
tuning data once, in its initializer, and then runs trial after trial.

Processes only help when the model itself is single-threaded: a model asked for several
threads (``num_threads`` / ``n_jobs`` above 1) would fight the other trials for the cores, so
:func:`effective_jobs` runs its trials one after another.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from threadpoolctl import threadpool_limits

from recctl.ranking import MAX_THREADS_ENV
from recctl.tuning.trial import TrialData, TrialResult, TrialSpec, load_trial_data, run_trial

__all__ = ["TrialRunner", "effective_jobs"]

log = logging.getLogger(__name__)

#: model parameters that make a model use several threads by itself
_THREAD_PARAMS = ("num_threads", "n_jobs", "n_threads")

_WORKER_DATA: TrialData | None = None


def effective_jobs(n_jobs: int, model_params: dict[str, Any], n_trials: int) -> int:
    """How many trial processes to run.

    Parameters
    ----------
    n_jobs
        ``tune.n_jobs`` (``-1`` = all cores).
    model_params
        The tuned model's parameters; a model that is multi-threaded itself gets 1.
    n_trials
        Trials still to run (no more processes than that).
    """
    jobs = (os.cpu_count() or 1) if n_jobs == -1 else n_jobs
    threads = [model_params.get(name) for name in _THREAD_PARAMS]
    if any(isinstance(t, int) and (t > 1 or t == -1) for t in threads):
        if jobs > 1:
            log.info("the model runs several threads itself; running trials one at a time")
        return 1
    return max(1, min(jobs, n_trials))


def _init_worker(preprocess_dir: str, candidates: str, allowed_ids: list[str] | None) -> None:
    global _WORKER_DATA
    # the trial processes share the cores: each runs its models (LightFM, kNN, the ranking
    # kernel, BLAS) on one thread, or n_jobs workers x all-core models oversubscribe them
    os.environ[MAX_THREADS_ENV] = "1"
    threadpool_limits(limits=1)
    _WORKER_DATA = load_trial_data(preprocess_dir, candidates, allowed_ids)


def _run_in_worker(spec: TrialSpec) -> TrialResult:
    assert _WORKER_DATA is not None, "worker initializer did not run"
    return run_trial(spec, _WORKER_DATA)


class TrialRunner:
    """Runs batches of trials; use as a context manager.

    Parameters
    ----------
    preprocess_dir
        Where ``tune_train`` and ``valid`` are.
    n_jobs
        Worker processes; 1 runs trials in this process on ``data``.
    data
        Already-loaded data for in-process trials (loaded on demand otherwise).
    candidates, allowed_ids
        ``evaluate.candidates`` for workers' data (see :func:`load_trial_data`).
    """

    def __init__(
        self,
        preprocess_dir: Path,
        n_jobs: int = 1,
        data: TrialData | None = None,
        candidates: str = "all",
        allowed_ids: list[str] | None = None,
    ) -> None:
        self.preprocess_dir = Path(preprocess_dir)
        self.n_jobs = n_jobs
        self._data = data
        self.candidates = candidates
        self.allowed_ids = allowed_ids
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> TrialRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Shut the worker processes down (cancelling queued trials)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def _ensure_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.n_jobs,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(str(self.preprocess_dir), self.candidates, self.allowed_ids),
            )
        return self._pool

    def run(self, specs: list[TrialSpec]) -> list[TrialResult]:
        """Run ``specs`` and return their results in the same order."""
        if self.n_jobs <= 1:
            if self._data is None:
                self._data = load_trial_data(self.preprocess_dir, self.candidates, self.allowed_ids)
            return [run_trial(spec, self._data) for spec in specs]
        pool = self._ensure_pool()
        futures = [pool.submit(_run_in_worker, spec) for spec in specs]
        results = []
        broken = False
        for spec, future in zip(specs, futures, strict=True):
            try:
                results.append(future.result())
            except BrokenProcessPool as exc:
                # a worker died (out of memory, a crash in compiled code): the trial failed,
                # the pool is rebuilt for the next batch and the search goes on
                broken = True
                results.append(
                    TrialResult(
                        number=spec.number,
                        params=dict(spec.params),
                        status="failed",
                        error=f"worker process died: {exc}",
                    )
                )
            except Exception as exc:  # e.g. a result that could not be pickled back
                results.append(
                    TrialResult(
                        number=spec.number,
                        params=dict(spec.params),
                        status="failed",
                        error=f"{type(exc).__name__}: {exc}",
                    )
                )
        if broken:
            pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        return results
