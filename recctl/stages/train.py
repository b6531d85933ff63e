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
from recctl.models.registry import create_model
from recctl.progress import Progress, report
from recctl.stages._common import StageRun, require_stage

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
                model = create_model(_with_seed(configs[name], cfg.seed))
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


def _with_seed(model_config, seed: int):  # noqa: ANN001, ANN202
    # models with a `random_state` take the experiment seed unless the config sets one
    if "random_state" in type(model_config).model_fields and model_config.random_state is None:
        return model_config.model_copy(update={"random_state": seed})
    return model_config


def load_trained_model(cfg: Config, name: str, *, for_serving: bool = False):  # noqa: ANN201
    """Load model ``name`` from the train stage, checking its sha256 before unpickling.

    With ``for_serving`` and ``recommend.refit_on_all_data``, the copy refitted on every
    event is loaded; otherwise (and always for evaluation) the one fitted on the train split.
    """
    from recctl.errors import ArtifactError
    from recctl.models.base import Recommender

    train_dir, manifest = require_stage(cfg, "train")
    entry = manifest.summary.get("models", {}).get(name)
    if entry is None:
        trained = ", ".join(manifest.summary.get("models", {})) or "none"
        rerun = f"recctl train {cfg.source_path or 'CONFIG'}"
        raise ArtifactError(f"{train_dir}: no trained model '{name}' (trained: {trained}); run `{rerun}`.")
    file = entry["file"]
    if for_serving and cfg.recommend is not None and cfg.recommend.refit_on_all_data:
        if "serve_file" not in entry:
            raise ArtifactError(
                f"{train_dir}: '{name}' was not refitted on all data, but recommend.refit_on_all_data is set; "
                f"run `recctl train {cfg.source_path or 'CONFIG'}` again."
            )
        file = entry["serve_file"]
    record = manifest.output(file)
    return Recommender.load(train_dir / file, record.sha256)
