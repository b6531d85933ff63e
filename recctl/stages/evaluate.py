"""The ``evaluate`` stage: every trained model and the baseline, on the same users and items.

Reads the train split (for exclusion of seen items, popularity and history length) and the
test split from ``preprocess``, the models from ``train``; writes into
``<workdir>/evaluate/``:

* ``metrics.json``: the protocol, each model's mean metrics, the comparison table (paired
  bootstrap CI, paired test, Holm, verdict), segment and popularity-band breakdowns;
* ``per_user.parquet``: one row per (model, evaluated user) with every per-user metric;
* ``report.html`` (optional): a self-contained report of the above.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl

from recctl.artifacts import Manifest, write_json_atomic, write_parquet_atomic, write_text_atomic
from recctl.columns import Columns
from recctl.config import Config
from recctl.data.dataset import Dataset, load_dataset, load_split_matrix
from recctl.errors import ConfigError
from recctl.evaluation.comparison import NO_DIFFERENCE, bootstrap_mean_ci, compare_models
from recctl.evaluation.decision import decide
from recctl.evaluation.metrics import auc_from_scores, evaluate_rankings
from recctl.evaluation.protocol import EvalProtocol, build_protocol
from recctl.evaluation.segments import band_breakdown, recommendation_popularity, segment_breakdown
from recctl.history import append_record, previous_record
from recctl.progress import Progress, report
from recctl.stages._common import StageRun, require_stage, timed_stage
from recctl.workdir import writes_workdir

#: ``rank(model, users, k, exclude, item_mask) -> (len(users), k)`` item indices (``-1`` padded)
RankFn = Callable[[Any, np.ndarray, int, Any, Any], np.ndarray]

__all__ = [
    "BUILTIN_BASELINE",
    "METRICS_FILE",
    "PER_USER_FILE",
    "REPORT_FILE",
    "evaluate_models",
    "run_evaluate",
]

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
#: version of metrics.json's shape (raised on incompatible changes; additions keep it)
METRICS_SCHEMA_VERSION = 1
PER_USER_FILE = "per_user.parquet"
REPORT_FILE = "report.html"
#: name of the popularity model fitted on the fly when ``evaluate.baseline`` is unset
BUILTIN_BASELINE = "popularity_baseline"


def _builtin_baseline(dataset: Dataset) -> Any:
    from recctl.models.popularity import PopularityModel

    return PopularityModel().fit(dataset)


def evaluate_models(
    models: dict[str, Any],
    protocol: EvalProtocol,
    *,
    baseline: str,
    primary: str,
    seed: int,
    n_bootstrap: int = 1000,
    alpha: float = 0.05,
    test: Literal["wilcoxon", "t"] = "wilcoxon",
    batch_size: int = 4096,
    n_jobs: int = -1,
    item_features: Any = None,
    user_ids: np.ndarray | None = None,
    item_titles: np.ndarray | None = None,
    item_ids: np.ndarray | None = None,
    progress: Progress | None = None,
    rank: RankFn | None = None,
) -> tuple[dict[str, Any], pl.DataFrame, dict[str, float]]:
    """Evaluate fitted models under one protocol and compare them.

    Parameters
    ----------
    models
        Name -> fitted model (the baseline among them).
    protocol
        Users, candidate items, exclusions, K and metrics shared by every model.
    baseline
        Name of the baseline model.
    primary
        ``metric@k`` that names the best model.
    seed, n_bootstrap, alpha, test
        Comparison settings (see :func:`recctl.evaluation.comparison.compare_models`).
    batch_size
        Users scored per block.
    n_jobs
        Worker threads of the ranking kernel (``-1``: all cores).
    item_features
        Item feature matrix, for intra-list diversity.
    user_ids
        Shop ids of all users (for the per-user table).
    item_titles, item_ids
        A readable name (the catalogue's title) and the shop id per item index, for the sample lists.
    progress
        Optional progress callback.
    rank
        ``rank(model, users, k, exclude, item_mask) -> (n, k) item indices`` when the ranking runs elsewhere
        (``engine: spark``: on the executors); default ``model.recommend`` here.

    Returns
    -------
    (metrics, per_user, seconds)
        The ``metrics.json`` content, the long per-user table, and the seconds each model took
        (kept out of ``metrics.json`` so that file is identical across runs).
    """
    ks, metrics = protocol.ks, protocol.metrics
    users = protocol.users
    target_rows = protocol.target[users]
    results = {}
    ranked_lists: dict[str, np.ndarray] = {}
    model_info: dict[str, Any] = {}
    # timings go to the manifest, not metrics.json, so that file is identical across runs
    timings: dict[str, float] = {}
    for i, (name, model) in enumerate(models.items()):
        report(progress, "evaluate", i, len(models))
        t0 = time.perf_counter()
        if rank is not None:
            top_items = rank(model, users, max(ks), protocol.exclude, protocol.candidates)
        else:
            top_items = model.recommend(
                users,
                max(ks),
                exclude=protocol.exclude,
                item_mask=protocol.candidates,
                batch_size=batch_size,
                n_jobs=n_jobs,
                progress=(lambda done, n=name: report(progress, f"rank {n}", done, len(users))) if progress else None,
            ).items
        auc = None
        if "auc" in metrics:
            auc = auc_from_scores(
                model.score,
                users,
                protocol.target,
                protocol.exclude,
                batch_size=min(batch_size, 1024),
            )
        res = evaluate_rankings(
            top_items,
            target_rows,
            ks,
            metrics,
            users=users,
            item_popularity=protocol.popularity,
            n_popularity_users=protocol.n_popularity_users,
            item_features=item_features,
            head_items=protocol.bands == "head",
            auc=auc,
        )
        results[name] = res
        ranked_lists[name] = top_items
        timings[name] = round(time.perf_counter() - t0, 3)
        model_info[name] = {
            "kind": getattr(model, "kind", type(model).__name__),
            "n_users": res.n_users,
            "mean": {k: _clean(v) for k, v in res.mean.items()},
            "recommendation_popularity": recommendation_popularity(top_items, protocol.popularity, protocol.bands),
        }
        log.info("evaluated %s on %d users in %.2fs", name, res.n_users, time.perf_counter() - t0)
    report(progress, "evaluate", len(models), len(models))

    per_user_cols = [c for c in results[baseline].per_user.columns if c != Columns.UserIdx]
    if primary in per_user_cols:
        # each model's own interval of the primary metric (runs are compared by it, unpaired)
        for i, (name, res) in enumerate(results.items()):
            low, high = bootstrap_mean_ci(
                res.per_user[primary].to_numpy(), n_bootstrap=n_bootstrap, alpha=alpha, seed=[seed, 10_000 + i]
            )
            model_info[name]["interval"] = {primary: [_clean(float(low[0])), _clean(float(high[0]))]}
    means = {name: res.mean.get(primary, float("nan")) for name, res in results.items()}
    finite = {n: v for n, v in means.items() if np.isfinite(v)}
    best = max(finite, key=lambda n: (finite[n], n == baseline)) if finite else None
    comparisons = compare_models(
        {name: res.per_user.select(per_user_cols).to_numpy() for name, res in results.items()},
        per_user_cols,
        baseline=baseline,
        best=best,
        n_bootstrap=n_bootstrap,
        alpha=alpha,
        test=test,
        seed=seed,
    )
    kmax = max(ks)
    segments = {
        "users": {
            name: segment_breakdown(res.per_user, protocol.user_segments, per_user_cols)
            for name, res in results.items()
        },
        "item_bands": {
            name: band_breakdown(res.items, target_rows, protocol.bands, kmax) for name, res in results.items()
        },
    }
    verdicts = {
        name: {c.metric: c.verdict for c in comparisons if c.model == name and c.role == "baseline"}
        for name in results
        if name != baseline
    }
    metrics_json = {
        "protocol": protocol.describe(),
        "baseline": baseline,
        # metrics.json is written with sorted keys: this list keeps the display order
        "model_order": list(models),
        "best": best,
        "primary_metric": primary,
        "statistics": {
            "test": "Wilcoxon signed-rank (paired)" if test == "wilcoxon" else "paired t-test",
            "interval": f"paired bootstrap percentile {1 - alpha:.0%} CI of the mean difference "
            "(not adjusted for multiplicity)",
            "correction": "Holm over the comparisons on the same metric@k (every model vs baseline and vs best)",
            "n_bootstrap": n_bootstrap,
            "alpha": alpha,
            "seed": seed,
            "verdicts": ["better", "worse", NO_DIFFERENCE, "higher", "lower"],
        },
        "models": model_info,
        "comparisons": [c.to_dict() for c in comparisons],
        "verdicts_vs_baseline": verdicts,
        "segments": segments,
        "samples": sample_lists(protocol, ranked_lists, user_ids, item_titles, item_ids=item_ids),
    }
    per_user = _long_per_user(results, protocol, user_ids)
    return metrics_json, per_user, timings


#: users shown with their lists in the report, and list length shown
_N_SAMPLE_USERS, _SAMPLE_K = 3, 5
#: catalogue columns tried, in order, as an item's readable name in the report
TITLE_COLUMNS = ("title", "name", "product_name", "description")


def sample_lists(
    protocol: EvalProtocol,
    top_items: dict[str, np.ndarray],
    user_ids: np.ndarray | None,
    item_titles: np.ndarray | None,
    *,
    item_ids: np.ndarray | None = None,
) -> dict[str, Any]:
    """A few evaluated users with their history, held-out items and every model's top items, titled.

    Users are picked at the 25th, 50th and 75th percentile of training-history length (ties by
    index), so the sample shows a light, a typical and a heavy user, the same ones every run.
    """
    users = protocol.users
    if len(users) == 0:
        return {"users": [], "k": _SAMPLE_K}
    train = protocol.exclude
    lengths = np.diff(train.indptr)[users] if train is not None else np.zeros(len(users), dtype=np.int64)
    order = np.lexsort((users, lengths))
    picks = sorted({int(order[int(q * (len(order) - 1))]) for q in (0.25, 0.5, 0.75)})[:_N_SAMPLE_USERS]

    def item(j: int) -> dict[str, Any]:
        ident = str(item_ids[j]) if item_ids is not None else str(j)
        title = None if item_titles is None else item_titles[j]
        return {"item_id": ident, "title": None if title is None else str(title)}

    shown = []
    for row in picks:
        u = int(users[row])
        relevant = set(protocol.target[u].indices.tolist())
        history: list[int] = []
        if train is not None:
            start, end = train.indptr[u], train.indptr[u + 1]
            weights = train.data[start:end]
            history = train.indices[start:end][np.argsort(-weights, kind="stable")][:_SAMPLE_K].tolist()
        shown.append(
            {
                "user_id": str(user_ids[u]) if user_ids is not None else str(u),
                "n_train_items": int(lengths[row]),
                "history": [item(j) for j in history],
                "relevant": [item(j) for j in sorted(relevant)[:_SAMPLE_K]],
                "n_relevant": len(relevant),
                "lists": {
                    name: [{**item(int(j)), "hit": int(j) in relevant} for j in items[row][:_SAMPLE_K] if j >= 0]
                    for name, items in top_items.items()
                },
            }
        )
    return {"users": shown, "k": _SAMPLE_K}


def _clean(value: float) -> float | None:
    return float(value) if value is not None and np.isfinite(value) else None


def _long_per_user(results: dict[str, Any], protocol: EvalProtocol, user_ids: np.ndarray | None) -> pl.DataFrame:
    frames = []
    users = protocol.users
    n_test = np.diff(protocol.target.indptr)[users]
    n_train = np.diff(protocol.exclude.indptr)[users] if protocol.exclude is not None else np.zeros(len(users), int)
    for name, res in results.items():
        head = {
            Columns.Model: [name] * res.n_users,
            Columns.UserIdx: users,
            Columns.User: (user_ids[users].astype(str) if user_ids is not None else users.astype(str)),
            "segment": protocol.user_segments[users].astype(str),
            "n_train_items": n_train.astype(np.int64),
            "n_test_items": n_test.astype(np.int64),
        }
        frames.append(pl.DataFrame(head).hstack(res.per_user.drop(Columns.UserIdx)))
    return pl.concat(frames, how="vertical")


def _spark_rank(cfg: Config) -> RankFn:
    """Rank on the executors of ``cfg.engine`` (:func:`recctl.engine.spark.ranking.rank_on_spark`)."""
    from recctl.engine.spark.ranking import rank_on_spark
    from recctl.engine.spark.session import get_spark

    spark = get_spark(cfg.engine)
    return lambda model, users, k, exclude, mask: rank_on_spark(spark, cfg, model, users, k, exclude, mask)


@writes_workdir
@timed_stage
def run_evaluate(cfg: Config, *, report: bool | None = None, progress: Progress | None = None) -> Manifest:
    """Evaluate every configured model and the baseline on the test split.

    Parameters
    ----------
    cfg
        The experiment config (section ``evaluate``).
    report
        Write ``report.html`` too; ``None`` follows ``evaluate.report``.
    progress
        Optional progress callback.

    Returns
    -------
    Manifest
        The evaluate stage's manifest; ``summary`` holds the mean metrics, the best model and
        the verdicts against the baseline.

    Raises
    ------
    ArtifactError
        When preprocess or train outputs are missing or changed (naming the command to run).
    ConfigError
        When a metric needs data that was not prepared (diversity without item features).
    """
    ecfg = cfg.evaluate
    pre_dir, pre_manifest = require_stage(
        cfg, "preprocess", ["users.parquet", "items.parquet", "train.parquet", "test.parquet"]
    )
    # models trained under another `models:` section would be evaluated silently stale
    train_dir, train_manifest = require_stage(cfg, "train")
    from recctl.stages.train import load_trained_model

    names = list(ecfg.models or cfg.models)
    # tune.apply: the model tune picked and every tuned model's configured-parameters copy too,
    # so metrics.json shows defaults vs tuned on test
    tuning = train_manifest.summary.get("tuning") or {}
    for entry in tuning.get("models", {}).values():
        if entry["tuned"] in names and entry["default"] not in names:
            names.append(entry["default"])
    if tuning and "tuned" in train_manifest.summary.get("models", {}) and "tuned" not in names:
        names.append("tuned")
    if ecfg.baseline is not None and ecfg.baseline not in names:
        names.insert(0, ecfg.baseline)
    dataset = load_dataset(pre_dir, "train")
    if "diversity" in ecfg.metrics and dataset.item_features is None:
        raise ConfigError(
            f"{cfg.source_path or 'config'}: evaluate.metrics: 'diversity' needs item features; "
            "declare them under preprocess.features (e.g. item_categorical: [category]) and "
            "re-run `recctl preprocess`, "
            "or drop 'diversity'."
        )
    test = load_split_matrix(pre_dir, "test", dataset.n_users, dataset.n_items)
    protocol = build_protocol(
        test,
        dataset.interactions,
        ecfg.k,
        list(ecfg.metrics),
        exclude_seen=ecfg.exclude_seen,
        candidates=ecfg.candidates,
        allowed=allowed_items(cfg, dataset),
        split_info=split_statement(pre_manifest.summary),
    )
    if len(protocol.users) == 0:
        from recctl.errors import DataError

        raise DataError(
            f"{pre_dir / 'test.parquet'}: no user has a test item outside their training items, "
            "so there is "
            "nothing to evaluate; check preprocess.split (test_fraction / strategy)."
        )

    models: dict[str, Any] = {}
    baseline = ecfg.baseline or BUILTIN_BASELINE
    if ecfg.baseline is None:
        while baseline in names:  # never shadow a configured model of the same name
            baseline = f"{baseline}_builtin"
        models[baseline] = _builtin_baseline(dataset)
    for name in names:
        models[name] = load_trained_model(cfg, name)
    # the baseline is always the first row of every table
    models = {baseline: models[baseline], **{n: m for n, m in models.items() if n != baseline}}

    inputs = [pre_dir / n for n in ("users.parquet", "items.parquet", "train.parquet", "test.parquet")]
    inputs += [train_dir / train_manifest.summary["models"][n]["file"] for n in names]
    if "diversity" in ecfg.metrics:
        inputs.append(pre_dir / "item_features.npz")
    with StageRun(cfg, "evaluate", sections=["evaluate"], inputs=inputs) as run:
        metrics_json, per_user, timings = evaluate_models(
            models,
            protocol,
            baseline=baseline,
            primary=ecfg.primary(),
            seed=cfg.seed,
            n_bootstrap=ecfg.n_bootstrap,
            alpha=ecfg.alpha,
            test=ecfg.test,
            batch_size=ecfg.batch_size,
            n_jobs=ecfg.n_jobs,
            item_features=dataset.item_features,
            user_ids=dataset.user_ids,
            item_titles=_item_titles(dataset),
            item_ids=dataset.item_ids,
            progress=progress,
            rank=_spark_rank(cfg) if cfg.engine.is_spark else None,
        )
        if cfg.engine.is_spark:
            run.summary["engine"] = {"kind": "spark", "ranking": "executors"}
        metrics_json["experiment"] = cfg.name
        if tuning:
            metrics_json["tuning"] = _tuning_table(tuning, metrics_json["models"], ecfg.primary())
        metrics_json["schema_version"] = METRICS_SCHEMA_VERSION
        context = report_context(cfg, metrics_json, timings, train_manifest.summary)
        decision = decide(metrics_json, context)
        write_json_atomic(run.dir / METRICS_FILE, metrics_json)
        run.add_output(run.dir / METRICS_FILE)
        write_parquet_atomic(per_user, run.dir / PER_USER_FILE)
        run.add_output(run.dir / PER_USER_FILE, rows=per_user.height)
        if ecfg.report if report is None else report:
            from recctl.evaluation.report import render_report

            write_text_atomic(run.dir / REPORT_FILE, render_report(metrics_json, {**context, "decision": decision}))
            run.add_output(run.dir / REPORT_FILE)
        run.summary.update(
            baseline=baseline,
            best=metrics_json["best"],
            primary_metric=metrics_json["primary_metric"],
            n_users=int(len(protocol.users)),
            seconds=timings,
            models={n: m["mean"] for n, m in metrics_json["models"].items()},
            verdicts_vs_baseline={
                n: v.get(metrics_json["primary_metric"]) for n, v in metrics_json["verdicts_vs_baseline"].items()
            },
            decision={k: decision[k] for k in ("action", "ship", "headline", "reasons", "warnings")},
        )
        for warning in decision["warnings"]:
            log.warning(warning)
    # recorded once the run's outputs are in place: a failed run leaves no history line
    append_record(
        cfg.workdir_path, history_record(run.manifest, metrics_json, context, decision), keep=cfg.history.keep
    )
    return run.manifest


def _tuning_table(tuning: dict[str, Any], models: dict[str, Any], primary: str) -> dict[str, Any]:
    """Defaults vs tuned, on validation (from tune) and on test (from this evaluation)."""
    rows = {}
    for name, entry in tuning.get("models", {}).items():
        tuned = models.get(entry["tuned"], {}).get("mean", {})
        default = models.get(entry["default"], {}).get("mean", {})
        rows[name] = {
            "default_model": entry["default"],
            "params": entry["params"],
            "valid_default": entry.get("valid_default"),
            "valid_tuned": entry.get("valid_tuned"),
            "valid_p_value": entry.get("p_value"),
            "test_default": default.get(primary),
            "test_tuned": tuned.get(primary),
        }
    return {
        "metric": primary,
        "winner": tuning.get("winner"),
        "served_as": "tuned",
        "note": "tuned parameters are kept only when they beat the configured ones on validation for real; "
        "models whose tuning changed nothing are not listed",
        "models": rows,
    }


def allowed_items(cfg: Config, dataset: Dataset) -> np.ndarray | None:
    """``evaluate.candidates: allow_list``: the listed items' indices (unknown ids are ignored)."""
    if cfg.evaluate.candidates != "allow_list" or cfg.evaluate.candidate_list is None:
        return None
    from recctl.rules import read_id_list

    ids = read_id_list(cfg.resolve(cfg.evaluate.candidate_list), "evaluate.candidate_list")
    idx = dataset.item_index(ids)
    if not (idx >= 0).any():
        raise ConfigError(
            f"{cfg.source_path or 'config'}: evaluate.candidate_list: none of its {len(ids)} ids is a known item "
            f"(e.g. {', '.join(map(str, ids[:3]))}); list catalogue item ids."
        )
    return idx[idx >= 0]


def split_statement(preprocess_summary: dict[str, Any]) -> dict[str, Any]:
    """How the splits were made, from the preprocess summary, for the protocol in ``metrics.json``."""
    split = preprocess_summary.get("split", {})
    keys = ("strategy", "test_rule", "valid_strategy", "valid_rule", "test_start", "valid_start", "events", "pairs")
    out = {k: split[k] for k in keys if k in split}
    for key in ("cold_test_users", "valid_events_moved_to_tune_train", "test_pairs_not_in_data"):
        if key in split:
            out[key] = split[key]
    weights = preprocess_summary.get("weights", {})
    if "decay" in weights:
        out["decay"] = weights["decay"]
    return out


def _item_titles(dataset: Dataset) -> np.ndarray | None:
    """The catalogue column that names items best (:data:`TITLE_COLUMNS`), aligned with the item index."""
    items = dataset.items
    if items is None:
        return None
    column = next((c for c in TITLE_COLUMNS if c in items.columns), None)
    if column is None:
        return None
    ordered = items.sort(Columns.ItemIdx) if Columns.ItemIdx in items.columns else items
    return ordered[column].cast(pl.String).to_numpy()


def report_context(
    cfg: Config, metrics: dict[str, Any], timings: dict[str, float], train_summary: dict[str, Any]
) -> dict[str, Any]:
    """What the report and the decision need besides ``metrics.json``: serving model, history, costs, tuning.

    Parameters
    ----------
    cfg
        The experiment config.
    metrics
        This run's ``metrics.json`` content.
    timings
        Seconds each model took to rank (and score) the evaluated users.
    train_summary
        The train stage's manifest summary (fit seconds per model).

    Returns
    -------
    dict
        ``serving_model``, ``previous`` (last history record or None), ``costs``, ``tuning``
        (the tune summary, or None) and ``population`` (who was and was not evaluated).
    """
    fitted = train_summary.get("models", {})
    costs = {
        name: {"fit_seconds": fitted.get(name, {}).get("fit_seconds"), "score_seconds": timings.get(name)}
        for name in metrics["models"]
    }
    return {
        "serving_model": cfg.recommend.model if cfg.recommend is not None else None,
        "previous": previous_record(cfg.workdir_path),
        "costs": costs,
        "tuning": _tuning(cfg),
        "population": _population(cfg, metrics),
    }


def _tuning(cfg: Config) -> dict[str, Any] | None:
    from recctl.artifacts import read_manifest

    try:
        summary = dict(read_manifest(cfg.stage_dir("tune"), stage="tune").summary)
    except Exception:  # no tuning run (or an unreadable one): the report says nothing about tuning
        return None
    name = summary.get("model")
    if name not in cfg.models or not summary.get("best_params"):
        return summary
    configured = cfg.models[name]
    summary["tuned_in_use"] = all(configured.get(k) == v for k, v in summary["best_params"].items())
    return summary


def _population(cfg: Config, metrics: dict[str, Any]) -> dict[str, Any]:
    """Who was evaluated and who was not, from the protocol and the preprocess summary."""
    from recctl.artifacts import read_manifest

    proto = metrics["protocol"]
    population = {
        "users_in_train": proto["n_users_total"],
        "with_test_items": proto["n_users_with_test_items"],
        "evaluated": proto["n_users_evaluated"],
    }
    try:
        pre = read_manifest(cfg.stage_dir("preprocess"), stage="preprocess").summary
    except Exception:  # evaluate checked preprocess already; a summary without these keys is fine
        pre = {}
    split = pre.get("split", {})
    if split.get("cold_test_users_dropped"):
        population["cold_test_users_dropped"] = split.get("cold_test_users")
    if pre.get("filter", {}).get("events_dropped"):
        population["events_dropped_by_min_counts"] = pre["filter"]["events_dropped"]
    return population


def history_record(
    manifest: Manifest, metrics: dict[str, Any], context: dict[str, Any], decision: dict[str, Any]
) -> dict[str, Any]:
    """The run-history record of an evaluate run (see :mod:`recctl.history`)."""
    test = next((r.sha256 for r in manifest.inputs if r.path.endswith("test.parquet")), None)
    costs = context.get("costs", {})
    return {
        "experiment": metrics.get("experiment"),
        "finished_at": manifest.finished_at,
        "config_hash": manifest.config_hash,
        "test_sha256": test,
        "n_users": metrics["protocol"]["n_users_evaluated"],
        "primary_metric": metrics["primary_metric"],
        "baseline": metrics["baseline"],
        "best": metrics["best"],
        "serving_model": context.get("serving_model"),
        "decision": {k: decision[k] for k in ("action", "ship", "headline")},
        "models": {
            name: {
                "mean": info["mean"],
                "interval": info.get("interval", {}),
                **{k: v for k, v in costs.get(name, {}).items() if v is not None},
            }
            for name, info in metrics["models"].items()
        },
    }


def read_metrics(cfg: Config) -> dict[str, Any]:
    """Load ``metrics.json`` of the finished evaluate stage (hash checked)."""
    import json

    stage_dir, manifest = require_stage(cfg, "evaluate", [METRICS_FILE])
    return json.loads(Path(stage_dir / METRICS_FILE).read_text(encoding="utf-8"))
