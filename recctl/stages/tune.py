"""The ``tune`` stage: search every listed model's parameters, scored on the validation split.

Reads from ``<workdir>/preprocess/`` only ``tune_train`` (to fit), ``valid`` (to score) and
the id maps / features every model needs; ``test.parquet`` is never opened, so the test
metric that ``evaluate`` reports for the chosen configuration is an honest one.

Each model named by ``tune.models`` (or ``tune.model``; default: every model) is searched in
its own space (``tune.spaces.<name>``, else its kind's default space,
:mod:`recctl.tuning.spaces`), within its share of what is left of ``tune.timeout_s``, which
holds for the whole search (:mod:`recctl.tuning.budget`: models whose first trial would not
fit are skipped and listed under ``skipped``, epoch-wise trials are cut at their limit). A
tuned value replaces the configured one only when it is a real improvement on validation
(:mod:`recctl.tuning.select`); a best value at the edge of a log-scaled range is searched
beyond it. With two or more models a weighted blend of the best ones is tuned too. The models
(and the blend) are then ranked on validation.

Writes ``<workdir>/tune/``:

* ``trials.parquet`` — every trial of every model (``model`` column first);
* ``tuned.json`` — per model the accepted parameters, default vs tuned on validation, the test
  decision; the blend; the winner. ``train`` reads it when ``tune.apply`` is set;
* ``best.yaml`` — a complete config with the accepted parameters (see
  :mod:`recctl.tuning.best_config`);
* ``manifest.json`` — whose ``summary`` holds the ranking and the winner; its ``duration_s``
  is the whole search.

Finished trials are also kept in ``<workdir>/.tune-checkpoint/`` (one file per model and
space, see :mod:`recctl.tuning.records`); running the stage again continues from them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from recctl import clock
from recctl.artifacts import Manifest, write_json_atomic, write_parquet_atomic, write_text_atomic
from recctl.config import Config, config_from_dict
from recctl.config.tune import ChoiceSpace, FloatSpace, IntSpace, TuneConfig
from recctl.errors import ConfigError, RecctlError
from recctl.progress import Progress, report
from recctl.stages._common import StageRun, require_stage, timed_stage
from recctl.tuning.best_config import best_config_dict, tuned_model_params
from recctl.tuning.budget import BLEND_WEIGHT, EPOCH_WISE_TRIALS, EPOCH_WISE_WEIGHT, Budget
from recctl.tuning.parallel import TrialRunner, effective_jobs
from recctl.tuning.records import (
    checkpoint_key,
    checkpoint_path,
    read_checkpoint,
    trials_frame,
    write_checkpoint,
)
from recctl.tuning.search import RandomSampler, SearchPlan, make_sampler, run_search
from recctl.tuning.select import Decision, blend_weight_vectors, decide, describe_params
from recctl.tuning.space import Space
from recctl.tuning.spaces import at_edge, default_space, extend_space
from recctl.tuning.trial import TrialData, TrialResult, load_trial_data, score_on_valid
from recctl.workdir import writes_workdir

__all__ = ["BLEND_NAME", "LEAKAGE_NOTE", "TUNE_INPUTS", "TUNED_FILE", "read_tuned", "run_tune"]

log = logging.getLogger(__name__)

#: what every tune output says about the data it used
LEAKAGE_NOTE = "scored on validation split; test untouched"

#: preprocess outputs tuning reads (plus item/user features when present)
TUNE_INPUTS = ("users.parquet", "items.parquet", "tune_train.parquet", "valid.parquet")

#: the machine-readable result ``train`` reads with ``tune.apply``
TUNED_FILE = "tuned.json"

#: name of the tuned blend of the best models
BLEND_NAME = "tuned_blend"

#: config sections a search depends on
_SECTIONS = ["tune", "models", "evaluate.candidates", "evaluate.candidate_list"]

TrialCallback = Callable[[TrialResult, list[TrialResult], int], None]


@dataclass
class ModelSearch:
    """The search of one model."""

    name: str
    kind: str
    space: dict[str, Any]
    results: list[TrialResult]
    decision: Decision | None
    tuned_params: dict[str, Any]
    base_params: dict[str, Any]
    seconds: float
    n_resumed: int = 0
    hints: list[str] = field(default_factory=list)
    extended: dict[str, Any] = field(default_factory=dict)
    #: why the model was not searched (its first trial would not fit in the time left)
    skipped: str | None = None

    @property
    def value(self) -> float | None:
        """The validation value of the parameters kept (tuned if accepted, else configured)."""
        return None if self.decision is None else self.decision.chosen.value


def _tuned_config(cfg: Config, n_trials: int | None) -> Config:
    if cfg.tune is None:
        raise ConfigError(
            f"{cfg.source_path or 'config'}: tune: no `tune:` section; add one, e.g. `tune: {{models: all}}` "
            "(every model in its default space) or `tune: {models: [ease], spaces: {ease: {l2: {type: "
            "loguniform, low: 10, high: 10000}}}}`"
        )
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


def _allowed_ids(cfg: Config) -> list[str] | None:
    if cfg.evaluate.candidates != "allow_list" or cfg.evaluate.candidate_list is None:
        return None
    from recctl.rules import read_id_list

    return read_id_list(cfg.resolve(cfg.evaluate.candidate_list), "evaluate.candidate_list")


@writes_workdir
@timed_stage
def run_tune(
    cfg: Config,
    *,
    n_trials: int | None = None,
    progress: Progress | None = None,
    on_trial: TrialCallback | None = None,
) -> Manifest:
    """Search the listed models' parameters on the validation split, rank them, write the result.

    Parameters
    ----------
    cfg
        The experiment config; needs a ``tune:`` section.
    n_trials
        Override ``tune.n_trials`` (the CLI's ``--trials``), per model.
    progress
        ``progress("tune <model>", trials_done, n_trials)`` after every trial.
    on_trial
        ``on_trial(result, all_trials_of_that_model, n_trials)`` after every new trial.

    Returns
    -------
    Manifest
        The tune stage's manifest; ``summary`` has the ranking on validation, the winner and,
        for the winner, its best trial and the configured-parameters baseline.

    Raises
    ------
    ConfigError
        Without a ``tune:`` section.
    ArtifactError
        When preprocess has not run or its outputs changed.
    RecctlError
        When every trial of every model failed (the first errors are listed; the trials stay in
        the checkpoints).
    """
    cfg = _tuned_config(cfg, n_trials)
    tune = cfg.tune
    assert tune is not None
    names = _available(cfg, tune.model_names(list(cfg.models)))
    pre_dir, pre_manifest = require_stage(cfg, "preprocess", TUNE_INPUTS)
    split_hashes = {n: pre_manifest.output(n).sha256 for n in ("tune_train.parquet", "valid.parquet")}
    with StageRun(cfg, "tune", sections=_SECTIONS, inputs=_inputs(pre_dir, pre_manifest)) as run:
        # the budget starts here, before the data is read: it holds for the whole search
        clock = Budget(tune.timeout_s)
        allowed = _allowed_ids(cfg)
        data = load_trial_data(pre_dir, cfg.evaluate.candidates, allowed)
        by_name: dict[str, ModelSearch] = {}
        jobs: list[int] = [1]
        weights = _budget_weights(cfg, names)
        weights_left = sum(weights.values()) + (BLEND_WEIGHT if tune.blend and len(names) > 1 else 0.0)
        for name in sorted(names, key=lambda n: (weights[n], _first_estimate(cfg, n, data) or 0.0)):
            share = clock.share(weights[name], weights_left)
            weights_left -= weights[name]
            run_first = not any(s.value is not None for s in by_name.values())
            by_name[name] = _search_model(
                cfg, name, pre_dir, data, split_hashes, share, allowed, progress, on_trial, jobs, run_first
            )
        searches = [by_name[n] for n in names]  # reported in the configured order
        done = [s for s in searches if s.value is not None]
        if not done:
            errors = "; ".join(f"{s.name} trial {r.number}: {r.error}" for s in searches for r in s.results if r.error)[
                :1500
            ]
            raise RecctlError(
                f"every tuning trial failed or was pruned ({errors or 'no error recorded'}). Fix the model "
                f"parameters or the spaces in {cfg.source_path or 'the config'}; finished trials are kept in "
                f"{cfg.workdir_path / '.tune-checkpoint'}."
            )
        blend = None
        blend_skipped = None
        if tune.blend and len(done) >= 2:
            blend, blend_skipped = _tune_blend(cfg, done, data, progress, clock)
        result = _result(cfg, searches, blend)
        summary = _summary(cfg, searches, blend, result, clock.spent())
        summary["n_jobs"] = max(jobs)
        summary["budget"] = {"timeout_s": tune.timeout_s, "spent_s": round(clock.spent(), 3)}
        summary["skipped"] = [{"model": s.name, "reason": s.skipped} for s in searches if s.skipped]
        if blend_skipped:
            summary["skipped"].append({"model": BLEND_NAME, "reason": blend_skipped})
        result["skipped"] = summary["skipped"]

        frames = [trials_frame(s.results, tune.objective).with_columns(pl.lit(s.name).alias("model")) for s in searches]
        if blend is not None:
            frames.append(
                trials_frame(blend["results"], tune.objective).with_columns(pl.lit(BLEND_NAME).alias("model"))
            )
        frame = pl.concat(frames, how="diagonal_relaxed")
        frame = frame.select("model", *[c for c in frame.columns if c != "model"])
        write_parquet_atomic(frame, run.dir / "trials.parquet")
        run.add_output(run.dir / "trials.parquet", rows=frame.height)
        write_json_atomic(run.dir / TUNED_FILE, result)
        run.add_output(run.dir / TUNED_FILE)
        best_raw = _best_raw(cfg, result)
        _write_best_yaml(run.dir / "best.yaml", best_raw, cfg, summary)
        run.add_output(run.dir / "best.yaml")
        run.summary.update(summary)
    return run.manifest


def _available(cfg: Config, names: list[str]) -> list[str]:
    """Under ``models: all``, leave out models whose optional extra is missing (sasrec without torch)."""
    from recctl.models.registry import get_model_class

    tune = cfg.tune
    if tune is None or tune.model is not None or isinstance(tune.models, list):
        return names  # named explicitly: training them says what to install
    kept = []
    for name in names:
        extra = get_model_class(cfg.model_config_for(name).kind).missing_extra()
        if extra is None:
            kept.append(name)
        else:
            log.warning("tune: leaving out %s: it needs pip install 'recctl[%s]'", name, extra)
    return kept


def _epoch_wise(cfg: Config, name: str) -> bool:
    from recctl.models.registry import get_model_class

    return bool(getattr(get_model_class(cfg.model_config_for(name).kind), "supports_epochs", False))


def _budget_weights(cfg: Config, names: list[str]) -> dict[str, float]:
    """Each model's weight in the split of the time budget (epoch-wise models more, searched last)."""
    return {n: EPOCH_WISE_WEIGHT if _epoch_wise(cfg, n) else 1.0 for n in names}


def _first_estimate(cfg: Config, name: str, data: TrialData) -> float | None:
    """The model's own estimate of one trial's fit on the tuning data (``None``: unknown)."""
    from recctl.models.registry import get_model_class

    config = cfg.model_config_for(name)
    return get_model_class(config.kind).estimate_fit_seconds(config, data.dataset)


def _model_tune(tune: TuneConfig, name: str, space: dict[str, Any]) -> TuneConfig:
    # the per-model view of the section: what the samplers, the plan and the checkpoint read
    return tune.model_copy(update={"model": name, "models": None, "space": space, "spaces": {}})


def _search_model(
    cfg: Config,
    name: str,
    pre_dir: Path,
    data: TrialData,
    split_hashes: dict[str, str],
    budget_s: float | None,
    allowed: list[str] | None,
    progress: Progress | None,
    on_trial: TrialCallback | None,
    n_jobs_used: list[int],
    run_first: bool = True,
) -> ModelSearch:
    from recctl.models.registry import get_model_class

    tune = cfg.tune
    assert tune is not None
    clock = Budget(budget_s)
    model_config = cfg.model_config_for(name)
    fields = set(type(model_config).model_fields) - {"kind"}
    kind = model_config.kind
    epoch_wise = bool(getattr(get_model_class(kind), "supports_epochs", False))
    space = tune.space_for(name)
    if space is None:
        space = default_space(kind, fields)
    base_params = dict(cfg.models[name])
    if epoch_wise and tune.max_epochs is not None and "epochs" not in space:
        # early stopping picks the length, so the cap can be generous; the best epoch is kept
        base_params["epochs"] = tune.max_epochs
    configured = model_config.model_dump(mode="json")
    default_params = {key: configured[key] for key in sorted(space) if key in fields}
    # an empty space: score the configured parameters once, so the model still takes part
    n_trials = tune.n_trials if space else 1
    mtune = _model_tune(tune, name, space).model_copy(update={"n_trials": n_trials, "include_default": True})
    if not space:
        mtune = mtune.model_copy(update={"space": {"__none__": ChoiceSpace(type="choice", values=[0])}})
    section = {
        k: v
        for k, v in cfg.section("tune").items()
        if k not in ("model", "models", "space", "spaces", "blend", "blend_top", "blend_trials", "apply", "alpha")
    }
    section.update(
        model=name,
        space={k: v.model_dump(mode="json") for k, v in space.items()},
        candidates=[cfg.evaluate.candidates, cfg.evaluate.candidate_list],
    )
    key = checkpoint_key(section, base_params, cfg.seed, split_hashes)
    ckpt = checkpoint_path(cfg.workdir_path, key)
    done = read_checkpoint(ckpt)
    resumed = len([r for r in done if r.number < n_trials])
    if resumed:
        log.info("%s: resuming %d finished trials from %s", name, resumed, ckpt)
    estimate = _first_estimate(cfg, name, data)
    if not resumed and not run_first and budget_s is not None and (budget_s <= 0 or (estimate or 0.0) > budget_s):
        why = (
            f"no time left of tune.timeout_s={tune.timeout_s:g}"
            if budget_s <= 0
            else f"its first trial would take about {estimate:.0f}s, more than its {budget_s:.0f}s share of "
            f"tune.timeout_s={tune.timeout_s:g}"
        )
        log.warning("tune: skipping %s: %s", name, why)
        return ModelSearch(
            name=name,
            kind=kind,
            space={k: v.model_dump(mode="json") for k, v in space.items()},
            results=list(done),
            decision=None,
            tuned_params=base_params,
            base_params=dict(cfg.models[name]),
            seconds=0.0,
            skipped=why,
        )
    n_jobs = effective_jobs(tune.n_jobs, base_params, n_trials - resumed)
    plan = SearchPlan(
        tune=mtune,
        base_params=base_params,
        default_params=default_params,
        n_trials=n_trials,
        seed=cfg.seed,
        n_jobs=n_jobs,
        epoch_wise=epoch_wise,
        trial_share=min(n_trials, EPOCH_WISE_TRIALS) if epoch_wise else 1,
    )
    task = f"tune {name}"
    report(progress, task, resumed, n_trials)
    all_done = list(done)

    def record(result: TrialResult, trials: list[TrialResult]) -> None:
        # checkpoint first: a Ctrl-C right after this trial must not lose it
        merged = {r.number: r for r in all_done}
        merged.update({r.number: r for r in trials})
        write_checkpoint(ckpt, [merged[n] for n in sorted(merged)])
        log.info(
            "%s trial %d %s %s=%s (%.1fs)%s",
            name,
            result.number,
            result.status,
            tune.objective,
            "-" if result.value is None else f"{result.value:.4f}",
            result.duration_s,
            f": {result.error}" if result.error else "",
        )
        report(progress, task, len(trials), plan.n_trials)
        if on_trial is not None:
            on_trial(result, trials, plan.n_trials)

    n_jobs_used.append(n_jobs)
    runner_data = data if n_jobs == 1 else None
    with TrialRunner(pre_dir, n_jobs, runner_data, cfg.evaluate.candidates, allowed) as runner:
        sampler = make_sampler(mtune, cfg.seed)
        results = run_search(
            plan,
            sampler,
            runner,
            done,
            on_result=record,
            timeout_s=budget_s,
            first_estimate_s=estimate,
            run_first=run_first,
        )
        decision = decide(results, tune.alpha)
        hints: list[str] = []
        extended: dict[str, Any] = {}
        if decision is not None and space:
            edges = _edges(space, decision.best.params)
            wider: dict[str, IntSpace | FloatSpace] = {}
            for param, (spec, side) in edges.items():
                hints.append(
                    f"{name}.{param}: best value {describe_params({param: decision.best.params[param]})} is at the "
                    f"{side} edge of its range [{spec.low:g}, {spec.high:g}]"
                )
                beyond = extend_space(spec, side)
                if beyond is not None:
                    wider[param] = beyond
            left = clock.left()
            if tune.extend_edges and wider and (left is None or left > 0) and decision.best.status == "complete":
                # search beyond the edge, the other parameters fixed at the best trial's values
                ext_space = {
                    k: wider.get(k) or ChoiceSpace(type="choice", values=[decision.best.params[k]]) for k in space
                }
                n_ext = max(2, n_trials // 3)
                ext_plan = SearchPlan(
                    tune=mtune.model_copy(update={"include_default": False}),
                    base_params=base_params,
                    default_params=default_params,
                    n_trials=len(results) + n_ext,
                    seed=cfg.seed,
                    n_jobs=1,
                    epoch_wise=epoch_wise,
                    trial_share=plan.trial_share,
                )
                all_done = list(results)
                sampler = RandomSampler(ext_space, cfg.seed + 7919, offset=0)
                results = run_search(
                    ext_plan,
                    sampler,
                    runner,
                    results + [r for r in done if r.number >= n_trials],
                    on_result=record,
                    timeout_s=left,
                    run_first=False,
                )
                decision = decide(results, tune.alpha)
                extended = {p: [w.low, w.high] for p, w in wider.items()}
                assert decision is not None
                ranges = ", ".join(f"{p} in [{a:g}, {b:g}]" for p, (a, b) in extended.items())
                best_now = describe_params({p: decision.best.params.get(p) for p in extended})
                hints.append(f"{name}: searched beyond the edge ({ranges}); best now {best_now}")
    tuned = base_params
    if decision is not None:
        chosen = decision.chosen
        params = {k: v for k, v in chosen.params.items() if k in fields}
        tuned = tuned_model_params(
            base_params, TrialResult(chosen.number, params, chosen.status, best_epoch=chosen.best_epoch), epoch_wise
        )
        hints.insert(0, decision.reason)
    return ModelSearch(
        name=name,
        kind=kind,
        space={k: v.model_dump(mode="json") for k, v in space.items()},
        results=results,
        decision=decision,
        tuned_params=tuned,
        base_params=dict(cfg.models[name]),
        seconds=clock.spent(),
        n_resumed=resumed,
        hints=hints,
        extended=extended,
    )


def _edges(space: Space, params: dict[str, Any]) -> dict[str, tuple[IntSpace | FloatSpace, str]]:
    """The ranges whose best value lies at an edge: ``{param: (range, "low" | "high")}``."""
    out = {}
    for key, spec in space.items():
        if isinstance(spec, ChoiceSpace):  # a choice has no edge
            continue
        side = at_edge(spec, params.get(key))
        if side is not None:
            out[key] = (spec, side)
    return out


def _fit_tuned(search: ModelSearch, data: TrialData, seed: int) -> Any:
    from recctl.models.registry import create_model, get_model_class

    config = get_model_class(search.tuned_params["kind"]).config_class.model_validate(search.tuned_params)
    if "random_state" in type(config).model_fields and getattr(config, "random_state", 0) is None:
        config = config.model_copy(update={"random_state": seed})
    return create_model(config).fit(data.dataset)


def _refit_seconds(search: ModelSearch) -> float:
    """About what refitting a search's kept parameters costs: its chosen trial's time (to its best epoch)."""
    if search.decision is None:
        return 0.0
    chosen = next((r for r in search.results if r.number == search.decision.chosen.number), None)
    if chosen is None or chosen.duration_s <= 0:
        return 0.0
    return chosen.duration_s * (chosen.best_epoch or 1) / max(chosen.epochs_run, chosen.best_epoch or 1, 1)


def _tune_blend(
    cfg: Config, searches: list[ModelSearch], data: TrialData, progress: Progress | None, clock: Budget
) -> tuple[dict[str, Any] | None, str | None]:
    """Tune the weights of a blend of the best models; keep it only if it beats the best one for real.

    Returns the blend's result, or ``None`` and why when refitting its components would not fit
    in what is left of the time budget.
    """
    import numpy as np

    from recctl.models.blend import BlendComponent, BlendConfig, BlendModel

    tune = cfg.tune
    assert tune is not None
    ranked = sorted(searches, key=lambda s: -(s.value or 0.0))
    top = [s for s in ranked if s.kind not in ("blend",)][: tune.blend_top]
    refit = sum(_refit_seconds(s) for s in top)
    left = clock.left()
    if left is not None and refit > left:
        why = (
            f"refitting {', '.join(s.name for s in top)} would take about {refit:.0f}s, more than the {left:.0f}s "
            f"left of tune.timeout_s={tune.timeout_s:g}"
        )
        log.warning("tune: skipping the blend: %s", why)
        return None, why
    t0 = time.monotonic()
    fitted = [_fit_tuned(s, data, cfg.seed) for s in top]
    history = np.diff(data.dataset.interactions.indptr).astype(np.int64)
    vectors = blend_weight_vectors(len(top), tune.blend_trials, cfg.seed)
    results = []
    best_single = top[0].decision.chosen if top[0].decision else None
    for number, weights in enumerate(vectors):
        report(progress, f"tune {BLEND_NAME}", number, len(vectors))
        started = time.perf_counter()
        config = BlendConfig(
            components=[BlendComponent(weight=w, model=s.tuned_params) for w, s in zip(weights, top, strict=True)],
            random_state=cfg.seed,
        )
        blend = BlendModel(config)
        blend.components_ = fitted
        blend.history_ = history
        blend.n_users, blend.n_items = data.dataset.n_users, data.dataset.n_items
        blend.is_fitted = True
        metrics, per_user = score_on_valid(blend, data, tune.metric, tune.k)
        results.append(
            TrialResult(
                number=number + 1,
                params={f"weight.{s.name}": w for s, w in zip(top, weights, strict=True)},
                status="complete",
                value=metrics[tune.objective],
                metrics=metrics,
                best_epoch=1,
                epochs_run=1,
                duration_s=round(time.perf_counter() - started, 3),
                per_user=per_user,
            )
        )
        left = clock.left()
        mean_s = sum(r.duration_s for r in results) / len(results)
        if left is not None and mean_s > left:  # another weight vector would end past the budget
            break
    # trial 0 of the comparison is the best single model: a blend must beat it for real
    base = (
        TrialResult(0, {}, "complete", value=best_single.value, per_user=best_single.per_user) if best_single else None
    )
    decision = decide(([base] if base else []) + results, tune.alpha, label=f"the best single model ({top[0].name})")
    assert decision is not None
    chosen = decision.chosen
    accepted = decision.accepted and chosen.number != 0
    # the best weight vector found, whether or not it beat the best single model for real
    best_blend = max(results, key=lambda r: (r.value or 0.0, -r.number))
    best_weights = [best_blend.params.get(f"weight.{s.name}") for s in top]
    return {
        "components": [s.name for s in top],
        "results": results,
        "decision": decision,
        "accepted": accepted,
        "weights": best_weights,
        "value": best_blend.value if accepted else None,
        "best_value": best_blend.value,
        "params": {
            "kind": "blend",
            "combine": "weighted",
            "normalize": "minmax",
            "components": [
                {"weight": w if w is not None else 0.0, "model": s.tuned_params}
                for w, s in zip(best_weights, top, strict=True)
            ],
        },
        "seconds": round(time.monotonic() - t0, 3),
    }, None


def _result(cfg: Config, searches: list[ModelSearch], blend: dict[str, Any] | None) -> dict[str, Any]:
    tune = cfg.tune
    assert tune is not None
    models = {}
    for s in searches:
        d = s.decision
        models[s.name] = {
            "kind": s.kind,
            "params": s.tuned_params,
            "configured_params": s.base_params,
            "changed": bool(d and d.accepted and d.chosen.number != 0),
            "value": s.value,
            "default_value": None if d is None or d.default is None else d.default.value,
            "best_trial_value": None if d is None else d.best.value,
            "p_value": None if d is None else d.p_value,
            "decision": None if d is None else d.reason,
            "space": s.space,
            "extended": s.extended,
            "hints": s.hints,
            "n_trials": len(s.results),
            "seconds": round(s.seconds, 3),
            "skipped": s.skipped,
        }
    # models by their kept validation value, best first (ties in search order)
    scored = [(s.name, s.value) for s in searches if s.value is not None]
    entries: list[tuple[str, float]] = sorted(scored, key=lambda e: -e[1])
    blend_out = None
    if blend is not None:
        blend_out = {k: v for k, v in blend.items() if k not in ("results", "decision")}
        blend_out["decision"] = blend["decision"].reason
        if blend["accepted"]:
            entries.append((BLEND_NAME, blend["value"]))
    entries.sort(key=lambda e: -e[1])
    winner = entries[0][0]
    params = blend["params"] if winner == BLEND_NAME and blend else models[winner]["params"]
    return {
        "objective": tune.objective,
        "scored_on": "valid",
        "note": LEAKAGE_NOTE,
        "models": models,
        "blend": blend_out,
        "ranking": [{"model": n, "value": v} for n, v in entries],
        "winner": {"name": winner, "params": params},
    }


def read_tuned(cfg: Config) -> tuple[Path, dict[str, Any]]:
    """``tuned.json`` of the finished tune stage (hash checked), and its path."""
    import json

    stage_dir, _ = require_stage(cfg, "tune", [TUNED_FILE])
    path = stage_dir / TUNED_FILE
    return path, json.loads(path.read_text(encoding="utf-8"))


def _summary(
    cfg: Config,
    searches: list[ModelSearch],
    blend: dict[str, Any] | None,
    result: dict[str, Any],
    seconds: float,
) -> dict[str, Any]:
    tune = cfg.tune
    assert tune is not None
    winner = result["winner"]["name"]
    # the single-model fields describe the best searched model (the blend is a combination of them)
    lead = next(s for s in searches if s.name == (winner if winner != BLEND_NAME else result["blend"]["components"][0]))
    scored_trials = [r for r in lead.results if r.value is not None]
    d = lead.decision
    assert d is not None
    counts = {st: sum(r.status == st for s in searches for r in s.results) for st in ("complete", "pruned", "failed")}
    summary: dict[str, Any] = {
        "model": lead.name,
        "kind": lead.kind,
        "models_searched": [s.name for s in searches],
        "method": tune.method,
        "objective": tune.objective,
        "scored_on": "valid",
        "note": LEAKAGE_NOTE,
        "n_trials": sum(len(s.results) for s in searches),
        "n_trials_budget": tune.n_trials,
        "n_resumed": sum(s.n_resumed for s in searches),
        **{f"n_{status}": n for status, n in counts.items()},
        "best_trial": d.best.number,
        "best_value": d.best.value,
        "best_params": d.best.params,
        "best_metrics": d.best.metrics,
        "best_epoch": d.best.best_epoch,
        "accepted": d.accepted,
        "p_value": d.p_value,
        "tuned_params": lead.tuned_params,
        "search_seconds": round(seconds, 3),
        "winner": winner,
        "winner_value": result["ranking"][0]["value"],
        "ranking": result["ranking"],
        "models": {
            n: {
                k: m[k]
                for k in (
                    "kind",
                    "value",
                    "default_value",
                    "best_trial_value",
                    "changed",
                    "p_value",
                    "n_trials",
                    "seconds",
                )
            }
            for n, m in result["models"].items()
        },
        "blend": None
        if blend is None
        else {k: result["blend"][k] for k in ("components", "weights", "accepted", "value", "best_value", "decision")},
        "top_trials": [
            {
                "trial": r.number,
                "value": r.value,
                "params": r.params,
                "best_epoch": r.best_epoch,
                "status": r.status,
                "duration_s": r.duration_s,
            }
            for r in sorted(scored_trials, key=lambda r: (-(r.value or 0.0), r.number))[:5]
        ],
        "failures": [
            {"model": s.name, "trial": r.number, "error": r.error}
            for s in searches
            for r in s.results
            if r.status == "failed"
        ][:10],
    }
    hints = [h for s in searches for h in s.hints if "edge" in h or "beyond" in h]
    best = d.best
    if (
        best.best_epoch is not None
        and best.best_epoch == best.epochs_run
        and not best.stopped_early
        and best.epochs_run > 1
    ):
        hints.append(
            f"{lead.name}: the best trial was still improving at its last epoch ({best.epochs_run}); "
            "raise tune.max_epochs to let early stopping find the best length"
        )
    for s in searches:
        if s.decision is not None and not s.decision.accepted and s.decision.best.number != 0:
            hints.append(f"{s.name}: {s.decision.reason}")
    if d.best.number == 0:
        hints.append("no trial beat the configured parameters; best.yaml keeps them (with the best epoch)")
    summary["hints"] = hints
    if d.default is not None:
        summary["default_value"] = d.default.value
        summary["default_metrics"] = d.default.metrics
        chosen, default = d.chosen.value, d.default.value
        summary["gain_over_default"] = None if chosen is None or default is None else chosen - default
    return summary


def _best_raw(cfg: Config, result: dict[str, Any]) -> dict[str, Any]:
    raw = best_config_dict(cfg, None, {})
    for name, m in result["models"].items():
        raw["models"][name] = m["params"]
    if result["blend"] is not None and result["blend"]["accepted"]:
        raw["models"][BLEND_NAME] = result["blend"]["params"]
    rec = raw.get("recommend") or {}
    if "tuned" in [rec.get("model"), *(rec.get("fallback") or [])]:
        # `recommend.model: tuned` names tune's pick; best.yaml has no tune section, so the pick
        # becomes an ordinary model of that name and serves the same lists
        raw["models"]["tuned"] = result["winner"]["params"]
    return raw


def _write_best_yaml(path: Path, raw: dict[str, Any], cfg: Config, summary: dict[str, Any]) -> None:
    # refuse to publish a best.yaml that would not load: validate it exactly as `recctl train` will
    try:
        config_from_dict(raw, base_dir=path.parent, source=str(path))
    except ConfigError as exc:
        raise RecctlError(f"the tuned config does not validate (a bug in recctl tune):\n{exc}") from exc
    stamp = clock.now().strftime("%Y-%m-%d %H:%M UTC")
    source = Path(cfg.source_path).resolve() if cfg.source_path else "a config"
    ranking = ", ".join(f"{e['model']} {e['value']:.4f}" for e in summary["ranking"])
    header = (
        f"# Written by `recctl tune` on {stamp} from {source}.\n"
        f"# {summary['n_trials']} trials ({summary['method']} search) over {', '.join(summary['models_searched'])}; "
        f"{summary['objective']} on validation: {ranking}.\n"
        f"# Picked: {summary['winner']}. Each model keeps its configured parameters unless a tuned value beat them\n"
        f"# for real ({LEAKAGE_NOTE}).\n"
        "# Paths are absolute so this file works from here; there is no `tune:` section, so\n"
        "# `recctl run` on this file trains and evaluates the tuned models instead of searching again.\n"
    )
    write_text_atomic(path, header + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True))
