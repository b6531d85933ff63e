"""``recctl run``: every stage in order, skipping the ones whose last run is still fresh.

What runs, in which order, and whether a stage is fresh are all decided by the stage graph
(:mod:`recctl.graph`): a stage is re-run when its config sections, its raw inputs or an
upstream run it read changed, or its outputs no longer match its manifest. Because the check
compares the outputs an upstream holds now with those the stage read, a re-run upstream whose
outputs came out byte-identical does not re-run what follows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from recctl import graph
from recctl.artifacts import Manifest
from recctl.config import Config
from recctl.progress import Progress
from recctl.workdir import exclusive

__all__ = ["PIPELINE_STAGES", "RunReport", "StageOutcome", "run_all", "stage_order", "why_stale"]

log = logging.getLogger(__name__)

#: the order ``recctl run`` executes stages in (from the stage graph)
PIPELINE_STAGES = graph.PIPELINE
why_stale = graph.why_stale


@dataclass
class StageOutcome:
    """What happened to one stage during ``run``."""

    stage: str
    status: str  # "ran" | "skipped" | "not configured" | "failed" (then the run stops)
    reason: str
    duration_s: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunReport:
    """The outcome of every stage of one ``recctl run``."""

    stages: list[StageOutcome] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``--json``."""
        return {"stages": [s.__dict__ for s in self.stages]}


def _stage_functions() -> dict[str, Callable[..., Manifest]]:
    from recctl.stages.evaluate import run_evaluate
    from recctl.stages.export import run_serve_export
    from recctl.stages.ingest import run_ingest
    from recctl.stages.preprocess import run_preprocess
    from recctl.stages.recommend import run_recommend
    from recctl.stages.train import run_train
    from recctl.stages.tune import run_tune

    return {
        "ingest": run_ingest,
        "preprocess": run_preprocess,
        "train": run_train,
        "evaluate": run_evaluate,
        "tune": run_tune,
        "recommend": run_recommend,
        "serve-export": run_serve_export,
    }


def stage_order(cfg: Config) -> tuple[str, ...]:
    """The order ``run`` executes stages in (:func:`recctl.graph.order`)."""
    return graph.order(cfg)


def run_all(
    cfg: Config,
    *,
    force: bool = False,
    skip: tuple[str, ...] = (),
    on_stage: Callable[[StageOutcome], None] | None = None,
    progress: Progress | None = None,
) -> RunReport:
    """Run every configured stage in order.

    Parameters
    ----------
    cfg
        The experiment config.
    force
        Run every stage even when nothing changed.
    skip
        Stages not to run at all (e.g. ``("tune",)`` for a quick retrain).
    on_stage
        Called after each stage with its outcome (the CLI prints a line per stage).
    progress
        Progress callback passed to each stage.

    Returns
    -------
    RunReport
        What ran, what was skipped and why.
    """
    from recctl.data.preflight import check_inputs

    # every column the config names, against the inputs' headers, before the first stage runs
    # (a typo in recommend.rules used to surface after ingest..evaluate had run)
    check_inputs(cfg)
    with exclusive(cfg):  # one lock for the whole run; each stage re-enters it
        started = time.perf_counter()
        report = RunReport()
        try:
            _run_all(cfg, report, force, skip, on_stage, progress)
        except BaseException as exc:
            _record_run(cfg, report, started, error=exc)
            raise
        _record_run(cfg, report, started)
        return report


def _record_run(cfg: Config, report: RunReport, started: float, *, error: BaseException | None = None) -> None:
    """One line of run history (``recctl history``): what ran, why, how long; the error if it failed."""
    from recctl import clock
    from recctl.history import append_record

    record: dict[str, Any] = {
        "experiment": cfg.name,
        "finished_at": clock.utc_stamp(),
        "duration_s": round(time.perf_counter() - started, 3),
        "status": "ok" if error is None else "failed",
        "stages": [
            {"stage": s.stage, "status": s.status, "reason": s.reason, "duration_s": s.duration_s}
            for s in report.stages
        ],
    }
    if error is not None:
        record["error"] = {
            "type": type(error).__name__,
            "message": str(error).splitlines()[0][:500] if str(error) else "",
            "exit_code": getattr(error, "exit_code", 130 if isinstance(error, KeyboardInterrupt) else 1),
        }
    try:
        append_record(cfg.workdir_path, record, stage="run", keep=cfg.history.keep)
    except OSError as exc:  # history is a convenience: a full disk must not hide the run's own outcome
        log.warning("run history not written: %s", exc)


def _run_all(
    cfg: Config,
    report: RunReport,
    force: bool,
    skip: tuple[str, ...],
    on_stage: Callable[[StageOutcome], None] | None,
    progress: Progress | None,
) -> None:
    functions = _stage_functions()
    upstream_ran = False
    for stage in stage_order(cfg):
        if stage in skip or not graph.configured(cfg, stage):
            if stage in skip:
                outcome = StageOutcome(stage, "skipped", "skipped on request")
            else:
                outcome = StageOutcome(stage, "not configured", "no section in the config")
        else:
            reason = "forced" if force else graph.why_stale(cfg, stage)
            if reason is None:
                outcome = StageOutcome(stage, "skipped", "inputs and config unchanged")
            else:
                log.info("running %s: %s", stage, reason)
                t0 = time.perf_counter()
                try:
                    manifest = functions[stage](cfg, progress=progress)
                except BaseException:
                    report.stages.append(StageOutcome(stage, "failed", reason, round(time.perf_counter() - t0, 3)))
                    raise
                outcome = StageOutcome(stage, "ran", reason, round(time.perf_counter() - t0, 3), manifest.summary)
                upstream_ran = True
        report.stages.append(outcome)
        if on_stage is not None:
            on_stage(outcome)
    log.debug("run finished; any stage ran: %s", upstream_ran)
