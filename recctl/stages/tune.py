"""The ``tune`` stage: search the tuned model's parameters, scored on the validation split.

Reads from ``<workdir>/preprocess/`` only ``tune_train`` (to fit), ``valid`` (to score) and
the id maps / features every model needs; ``test.parquet`` is never opened, so the test
metric that ``evaluate`` reports for the chosen configuration is an honest one.

Writes ``<workdir>/tune/``:

* ``trials.parquet`` — every trial: parameters, validation metrics, best epoch, epochs run,
  time, status (``complete`` / ``pruned`` / ``failed``) and error;
* ``best.yaml`` — a complete config for ``recctl train`` / ``recctl run`` (see
  :mod:`recctl.tuning.best_config`);
* ``manifest.json`` — whose ``summary`` holds the best trial and the gain over the
  configured parameters.

Finished trials are also kept in ``<workdir>/.tune-checkpoint/`` (see
:mod:`recctl.tuning.records`); running the stage again continues from them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from recctl import clock
from recctl.artifacts import Manifest, write_parquet_atomic, write_text_atomic
from recctl.config import Config, config_from_dict
from recctl.errors import ConfigError, RecctlError
from recctl.progress import Progress, report
from recctl.stages._common import StageRun, require_stage
from recctl.tuning.best_config import best_config_dict, best_trial, tuned_model_params
from recctl.tuning.parallel import TrialRunner, effective_jobs
from recctl.tuning.records import (
    checkpoint_key,
    checkpoint_path,
    read_checkpoint,
    trials_frame,
    write_checkpoint,
)
from recctl.tuning.search import SearchPlan, make_sampler, run_search
from recctl.tuning.trial import TrialResult, load_trial_data

__all__ = ["LEAKAGE_NOTE", "TUNE_INPUTS", "run_tune"]

log = logging.getLogger(__name__)

#: what every tune output says about the data it used
LEAKAGE_NOTE = "scored on validation split; test untouched"

#: preprocess outputs tuning reads (plus item/user features when present)
TUNE_INPUTS = ("users.parquet", "items.parquet", "tune_train.parquet", "valid.parquet")

TrialCallback = Callable[[TrialResult, list[TrialResult], int], None]


def _tuned_config(cfg: Config, n_trials: int | None) -> Config:
    if cfg.tune is None:
        raise ConfigError(
            f"{cfg.source_path or 'config'}: tune: no `tune:` section; add one naming the model and "
            "its search space, e.g. tune: {model: lightfm_warp, space: {no_components: {type: choice, "
            "values: [16, 32, 64]}}}"
        )
    if not cfg.tune.space:
        raise ConfigError(f"{cfg.source_path or 'config'}: tune.space: empty; give at least one parameter to search.")
    if n_trials is not None:
        if n_trials < 1:
            raise ConfigError(f"--trials must be at least 1, got {n_trials}")
        # record the budget actually used, so `recctl run` knows this run differs from the file
        cfg = cfg.model_copy(update={"tune": cfg.tune.model_copy(update={"n_trials": n_trials})})
    return cfg


def _inputs(pre_dir: Path, manifest: Manifest) -> list[Path]:
    names = {Path(r.path).name for r in manifest.outputs}
    wanted = [n for n in TUNE_INPUTS if n in names]
    wanted += sorted(n for n in names if n.endswith(("_features.npz", "_feature_names.parquet")))
    if "events.parquet" in names:  # load_dataset keeps its tune_train rows only
        wanted.append("events.parquet")
    return [pre_dir / n for n in wanted]


def run_tune(
    cfg: Config,
    *,
    n_trials: int | None = None,
    progress: Progress | None = None,
    on_trial: TrialCallback | None = None,
) -> Manifest:
    """Search ``tune.model``'s parameters on the validation split and write the best config.

    Parameters
    ----------
    cfg
        The experiment config; needs a ``tune:`` section.
    n_trials
        Override ``tune.n_trials`` (the CLI's ``--trials``).
    progress
        ``progress("tune", trials_done, n_trials)`` after every trial.
    on_trial
        ``on_trial(result, all_trials, n_trials)`` after every new trial (live displays).

    Returns
    -------
    Manifest
        The tune stage's manifest; ``summary`` has the best trial, its parameters, the
        configured-parameters baseline and counts by status.

    Raises
    ------
    ConfigError
        Without a ``tune:`` section or with an empty space.
    ArtifactError
        When preprocess has not run or its outputs changed.
    RecctlError
        When every trial failed (the first errors are listed; the trials stay in the
        checkpoint).
    """
    cfg = _tuned_config(cfg, n_trials)
    tune = cfg.tune
    assert tune is not None
    pre_dir, pre_manifest = require_stage(cfg, "preprocess", TUNE_INPUTS)
    model_config = cfg.model_config_for(tune.model)
    model_cls = type(model_config)
    from recctl.models.registry import get_model_class

    epoch_wise = bool(getattr(get_model_class(model_config.kind), "supports_epochs", False))
    base_params = dict(cfg.models[tune.model])
    if epoch_wise and tune.max_epochs is not None and "epochs" not in tune.space:
        # early stopping picks the length, so the cap can be generous; best.yaml gets the best epoch
        base_params["epochs"] = tune.max_epochs
    configured = model_config.model_dump(mode="json")
    default_params = {key: configured[key] for key in sorted(tune.space) if key in model_cls.model_fields}

    split_hashes = {n: pre_manifest.output(n).sha256 for n in ("tune_train.parquet", "valid.parquet")}
    key = checkpoint_key(cfg.section("tune"), base_params, cfg.seed, split_hashes)
    ckpt = checkpoint_path(cfg.workdir_path, key)
    done = read_checkpoint(ckpt)
    resumed = len([r for r in done if r.number < tune.n_trials])
    if resumed:
        log.info("resuming: %d finished trials from %s", resumed, ckpt)

    n_jobs = effective_jobs(tune.n_jobs, base_params, tune.n_trials - resumed)
    plan = SearchPlan(
        tune=tune,
        base_params=base_params,
        default_params=default_params,
        n_trials=tune.n_trials,
        seed=cfg.seed,
        n_jobs=n_jobs,
    )
    sampler = make_sampler(tune, cfg.seed)
    report(progress, "tune", resumed, tune.n_trials)

    def record(result: TrialResult, trials: list[TrialResult]) -> None:
        # checkpoint first: a Ctrl-C right after this trial must not lose it
        write_checkpoint(ckpt, trials)
        log.info(
            "trial %d %s %s=%s (%.1fs)%s",
            result.number,
            result.status,
            tune.objective,
            "-" if result.value is None else f"{result.value:.4f}",
            result.duration_s,
            f": {result.error}" if result.error else "",
        )
        report(progress, "tune", len(trials), tune.n_trials)
        if on_trial is not None:
            on_trial(result, trials, tune.n_trials)

    t0 = time.perf_counter()
    data = load_trial_data(pre_dir) if n_jobs == 1 else None
    with TrialRunner(pre_dir, n_jobs, data) as runner:
        results = run_search(plan, sampler, runner, done, on_result=record, timeout_s=tune.timeout_s)
    search_s = time.perf_counter() - t0

    best = best_trial(results)
    if best is None:
        errors = "; ".join(f"trial {r.number}: {r.error}" for r in results if r.error)[:1500]
        raise RecctlError(
            f"all {len(results)} tuning trials failed or were pruned ({errors or 'no error recorded'}). "
            f"Fix the model parameters or the space in {cfg.source_path or 'the config'} (tune.space); "
            f"finished trials are kept in {ckpt}."
        )
    tuned = tuned_model_params(base_params, best, epoch_wise)
    best_raw = best_config_dict(cfg, tune.model, tuned)
    summary = _summary(cfg, results, best, tuned, resumed, search_s, n_jobs, epoch_wise)

    with StageRun(cfg, "tune", sections=["tune", "models"], inputs=_inputs(pre_dir, pre_manifest)) as run:
        frame = trials_frame(results, tune.objective)
        write_parquet_atomic(frame, run.dir / "trials.parquet")
        run.add_output(run.dir / "trials.parquet", rows=frame.height)
        _write_best_yaml(run.dir / "best.yaml", best_raw, cfg, summary)
        run.add_output(run.dir / "best.yaml")
        run.summary.update(summary)
    return run.manifest


def _summary(
    cfg: Config,
    results: list[TrialResult],
    best: TrialResult,
    tuned: dict[str, Any],
    resumed: int,
    search_s: float,
    n_jobs: int,
    epoch_wise: bool,
) -> dict[str, Any]:
    tune = cfg.tune
    assert tune is not None
    default = next((r for r in results if r.number == 0), None) if tune.include_default else None
    counts = {s: sum(r.status == s for r in results) for s in ("complete", "pruned", "failed")}
    summary: dict[str, Any] = {
        "model": tune.model,
        "kind": tuned.get("kind"),
        "method": tune.method,
        "objective": tune.objective,
        "scored_on": "valid",
        "note": LEAKAGE_NOTE,
        "n_trials": len(results),
        "n_trials_budget": tune.n_trials,
        "n_resumed": resumed,
        "n_jobs": n_jobs,
        **{f"n_{status}": n for status, n in counts.items()},
        "best_trial": best.number,
        "best_value": best.value,
        "best_params": best.params,
        "best_metrics": best.metrics,
        "best_epoch": best.best_epoch if epoch_wise else None,
        "tuned_params": tuned,
        "search_seconds": round(search_s, 3),
        "top_trials": [
            {
                "trial": r.number,
                "value": r.value,
                "params": r.params,
                "best_epoch": r.best_epoch,
                "status": r.status,
                "duration_s": r.duration_s,
            }
            for r in sorted((r for r in results if r.value is not None), key=lambda r: (-r.value, r.number))[:5]
        ],
        "failures": [{"trial": r.number, "error": r.error} for r in results if r.status == "failed"][:10],
    }
    hints = []
    if epoch_wise and best.best_epoch is not None and best.best_epoch == best.epochs_run and not best.stopped_early:
        hints.append(
            f"the best trial was still improving at its last epoch ({best.epochs_run}); "
            "raise tune.max_epochs to let early stopping find the best length"
        )
    if best.number == 0 and tune.include_default:
        hints.append("no trial beat the configured parameters; best.yaml keeps them (with the best epoch)")
    summary["hints"] = hints
    if default is not None and default.status == "complete":
        summary["default_value"] = default.value
        summary["default_metrics"] = default.metrics
        summary["gain_over_default"] = None if default.value is None else best.value - default.value
    return summary


def _write_best_yaml(path: Path, raw: dict[str, Any], cfg: Config, summary: dict[str, Any]) -> None:
    # refuse to publish a best.yaml that would not load: validate it exactly as `recctl train` will
    try:
        config_from_dict(raw, base_dir=path.parent, source=str(path))
    except ConfigError as exc:
        raise RecctlError(f"the tuned config does not validate (a bug in recctl tune):\n{exc}") from exc
    stamp = clock.now().strftime("%Y-%m-%d %H:%M UTC")
    source = Path(cfg.source_path).resolve() if cfg.source_path else "a config"
    header = (
        f"# Written by `recctl tune` on {stamp} from {source}.\n"
        f"# Model '{summary['model']}' tuned by {summary['method']} search over {summary['n_trials']} trials:\n"
        f"# best {summary['objective']} = {summary['best_value']:.4f} (trial {summary['best_trial']}), "
        f"{LEAKAGE_NOTE}.\n"
        "# Paths are absolute so this file works from here; there is no `tune:` section, so\n"
        "# `recctl run` on this file trains and evaluates the tuned model instead of searching again.\n"
    )
    write_text_atomic(path, header + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
