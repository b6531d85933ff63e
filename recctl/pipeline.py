"""``recctl run``: every stage in order, skipping the ones whose inputs and config are unchanged.

Whether a stage can be skipped is decided from its own last manifest: the config sections it
recorded must equal the current ones, every input it recorded must still have the same
sha256 (for ``ingest`` the set of raw files matching the config must be the same too), and
its outputs must be intact. Because downstream inputs are upstream outputs, a change anywhere
re-runs exactly the stages after it whose inputs really changed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recctl import clock
from recctl.artifacts import Manifest, config_hash, read_manifest, sha256_file, verify_output
from recctl.config import Config
from recctl.errors import ArtifactError
from recctl.progress import Progress
from recctl.stages._common import STAGE_DIRS

__all__ = ["PIPELINE_STAGES", "RunReport", "StageOutcome", "run_all", "stage_order", "why_stale"]

log = logging.getLogger(__name__)

#: the order ``recctl run`` executes stages in
PIPELINE_STAGES = ("ingest", "preprocess", "train", "evaluate", "tune", "recommend", "serve-export")


@dataclass
class StageOutcome:
    """What happened to one stage during ``run``."""

    stage: str
    status: str  # "ran" | "skipped" | "not configured"
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


def why_stale(cfg: Config, stage: str) -> str | None:
    """Why ``stage`` must run again, or ``None`` when its last run is still valid."""
    stage_dir = cfg.workdir_path / STAGE_DIRS[stage]
    try:
        manifest = read_manifest(stage_dir, stage=stage)
    except ArtifactError:
        return "no finished run"
    current = {k: cfg.section(k) for k in manifest.config_section if k != "seed"}
    current["seed"] = cfg.seed
    if config_hash(current) != manifest.config_hash:
        changed = [k for k in current if config_hash(current[k]) != config_hash(manifest.config_section.get(k))]
        return f"config changed ({', '.join(changed)})"
    for rec in manifest.inputs:
        p = Path(rec.path)
        if not p.exists():
            return f"input missing: {p.name}"
        if sha256_file(p) != rec.sha256:
            return f"input changed: {p.name}"
    if stage == "ingest":
        from recctl.stages.ingest import ingest_inputs

        recorded = {str(Path(r.path)) for r in manifest.inputs}
        if not {str(p) for p in ingest_inputs(cfg)} <= recorded:
            return "new raw files"
    if stage == "train":
        trained = set(manifest.summary.get("models", {}))
        missing = sorted(set(cfg.models) - trained)
        if missing:
            return f"models not trained: {', '.join(missing)}"
    if stage == "serve-export":
        # the nightly file is named by its date: a new day publishes a new file even when
        # nothing else changed, so the shop never reads yesterday's date as today's
        generated = str(manifest.summary.get("generated_at", ""))[:10]
        today = clock.today()
        if generated != today:
            return f"last export is from {generated or 'an unknown date'}, today is {today}"
    for rec in manifest.outputs:
        try:
            verify_output(stage_dir, manifest, Path(rec.path).name)
        except ArtifactError:
            return f"output changed or missing: {Path(rec.path).name}"
    return None


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
    """The order ``run`` executes stages in: tune comes before train when train uses its result.

    With ``tune.apply`` the train stage trains the tuned parameters (``tune/tuned.json`` is one
    of its inputs), so tune must have run first; otherwise tune reads only preprocess outputs
    and runs after evaluate, as the last of the modelling stages.
    """
    if cfg.tune is not None and cfg.tune.apply:
        return ("ingest", "preprocess", "tune", "train", "evaluate", "recommend", "serve-export")
    return PIPELINE_STAGES


def _configured(cfg: Config, stage: str) -> bool:
    if stage == "tune":
        return cfg.tune is not None
    if stage in ("recommend", "serve-export"):
        return cfg.recommend is not None
    return True


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
    functions = _stage_functions()
    report = RunReport()
    upstream_ran = False
    for stage in stage_order(cfg):
        if stage in skip or not _configured(cfg, stage):
            if stage in skip:
                outcome = StageOutcome(stage, "skipped", "skipped on request")
            else:
                outcome = StageOutcome(stage, "not configured", "no section in the config")
        else:
            reason = "forced" if force else why_stale(cfg, stage)
            if reason is None:
                outcome = StageOutcome(stage, "skipped", "inputs and config unchanged")
            else:
                log.info("running %s: %s", stage, reason)
                t0 = time.perf_counter()
                manifest = functions[stage](cfg, progress=progress)
                outcome = StageOutcome(stage, "ran", reason, round(time.perf_counter() - t0, 3), manifest.summary)
                upstream_ran = True
        report.stages.append(outcome)
        if on_stage is not None:
            on_stage(outcome)
    log.debug("run finished; any stage ran: %s", upstream_ran)
    return report
