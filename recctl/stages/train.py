"""The ``train`` stage: fit every model in the config on the training split."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from recctl.artifacts import Manifest
from recctl.config import Config
from recctl.data.dataset import load_dataset
from recctl.model_store import load_trained_model, with_seed
from recctl.models.registry import create_model
from recctl.progress import Progress, report
from recctl.stages._common import StageRun, require_stage, timed_stage
from recctl.workdir import writes_workdir

__all__ = ["DEFAULT_SUFFIX", "PREPROCESS_FILES", "TUNED_MODEL", "load_trained_model", "run_train"]

log = logging.getLogger(__name__)

#: with ``tune.apply``: the model tune picked, and the suffix of a tuned model's configured-parameters copy
TUNED_MODEL = "tuned"
DEFAULT_SUFFIX = "@default"

#: preprocess outputs a model may read (features only when configured)
PREPROCESS_FILES = ("users.parquet", "items.parquet", "train.parquet", "events.parquet")


def preprocess_inputs(pre_dir: Path, manifest: Manifest) -> list[Path]:
    """The preprocess outputs the train stage depends on (those that exist)."""
    names = [Path(r.path).name for r in manifest.outputs]
    wanted = [n for n in names if n in PREPROCESS_FILES or n.endswith("_features.npz")]
    return [pre_dir / n for n in wanted]


@writes_workdir
@timed_stage
def run_train(cfg: Config, *, models: list[str] | None = None, progress: Progress | None = None) -> Manifest:
    """Fit the configured models and write ``<workdir>/train/<name>.pkl`` with a manifest.

    Parameters
    ----------
    cfg
        The experiment config.
    models
        Names of the models to train (default: all in ``cfg.models``). Models not named keep
        no file: the train stage always describes exactly what it holds.
    progress
        Optional progress callback.

    Returns
    -------
    Manifest
        The train stage's manifest; ``summary.models`` lists each model's kind, fit time
        and file.
    """
    pre_dir, pre_manifest = require_stage(cfg, "preprocess", ["users.parquet", "items.parquet", "train.parquet"])
    names = models or list(cfg.models)
    for name in names:
        cfg.model_config_for(name)  # raises on an unknown name
    configs = {name: cfg.model_config_for(name) for name in names}
    tuning: dict[str, Any] = {}
    tuned_inputs: list[Path] = []
    if cfg.tune is not None and cfg.tune.apply:
        configs, tuning, tuned_inputs = _apply_tuning(cfg, configs)
    if cfg.recommend is not None:
        from recctl.stages.recommend import check_recommend_settings

        # K above what the catalogue and rules allow: say so now, not after training
        check_recommend_settings(cfg, pre_dir, configs)
    np.random.seed(cfg.seed)
    if cfg.engine.is_spark:
        # Spark-backed kinds (spark_als) train on the configured cluster; the others on the driver
        from recctl.engine.spark.session import get_spark

        get_spark(cfg.engine)
    refit = bool(cfg.recommend and cfg.recommend.refit_on_all_data)
    datasets = {"train": load_dataset(pre_dir, "train")}
    inputs = preprocess_inputs(pre_dir, pre_manifest) + tuned_inputs
    if refit:
        datasets["all"] = load_dataset(pre_dir, "all")
        inputs.append(pre_dir / "all.parquet")
    sections = ["models", "recommend.refit_on_all_data", "tune.apply"]
    dataset = datasets["train"]
    names = list(configs)
    steps = len(names) * len(datasets)
    with StageRun(cfg, "train", sections=sections, inputs=inputs) as run:
        summary: dict[str, dict] = {}
        step = 0
        for split, data in datasets.items():
            for name in names:
                task = f"train {name}" + (" (all data)" if split == "all" else "")
                report(progress, task, step, steps)
                model = create_model(with_seed(configs[name], cfg.seed))
                t0 = time.perf_counter()
                model.fit(data, progress=_model_progress(progress, task, step, steps))
                fit_s = time.perf_counter() - t0
                # evaluated models keep the plain name; models refitted on every event only serve
                file = f"{name}.pkl" if split == "train" else f"{name}.all.pkl"
                record = model.save(run.dir / file)
                run.add_output(run.dir / file)
                if split == "train":
                    summary[name] = {
                        "kind": model.kind,
                        "fit_seconds": round(fit_s, 3),
                        "file": file,
                        "sha256": record.sha256,
                    }
                else:
                    summary[name].update(serve_file=file, serve_fit_seconds=round(fit_s, 3))
                log.info("trained %s (%s) on %s in %.2fs", name, model.kind, split, fit_s)
                step += 1
        report(progress, "train", steps, steps)
        run.summary.update(
            models=summary,
            n_users=dataset.n_users,
            n_items=dataset.n_items,
            n_interactions=int(dataset.interactions.nnz),
            refit_on_all_data=refit,
            **({"tuning": tuning} if tuning else {}),
        )
    return run.manifest


def _model_progress(progress: Progress | None, task: str, step: int, steps: int) -> Callable[[float], None]:
    """Turn a model's fraction done into the stage's progress (step ``step`` of ``steps``)."""
    return lambda fraction: report(progress, task, step + fraction, steps)


def _apply_tuning(cfg: Config, configs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], list[Path]]:
    """``tune.apply``: the models with their accepted tuned parameters, their defaults, and ``tuned``.

    A model whose tuning changed its parameters is trained with them under its own name and with
    its configured parameters as ``<name>@default``, so ``evaluate`` shows defaults vs tuned on
    test; the model tune picked on validation (a model, or the tuned blend) is trained as
    ``tuned``, which ``recommend.model: tuned`` serves.
    """
    from recctl.models.registry import get_model_class
    from recctl.stages.tune import read_tuned

    path, tuned = read_tuned(cfg)
    out: dict[str, Any] = {}
    info: dict[str, Any] = {"file": str(path), "models": {}, "winner": tuned["winner"]["name"]}

    def config_of(params: dict[str, Any]) -> Any:
        return get_model_class(params["kind"]).config_class.model_validate(params)

    for name, config in configs.items():
        entry = tuned["models"].get(name)
        if entry is None or not entry.get("changed"):
            out[name] = config
            continue
        out[name] = config_of(entry["params"])
        out[f"{name}{DEFAULT_SUFFIX}"] = config
        info["models"][name] = {
            "tuned": name,
            "default": f"{name}{DEFAULT_SUFFIX}",
            "params": entry["params"],
            "valid_default": entry.get("default_value"),
            "valid_tuned": entry.get("value"),
            "p_value": entry.get("p_value"),
        }
    out[TUNED_MODEL] = config_of(tuned["winner"]["params"])
    return out, info, [path]
