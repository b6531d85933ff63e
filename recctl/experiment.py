"""``recctl.Experiment``: one object for a notebook, the same stages and lists as the command line.

An ``Experiment`` is a config (a YAML path or a :class:`~recctl.config.Config`) plus the workdir
it names. It runs stages (``run``, ``train``, ...; the same functions the CLI calls) and answers
with shop ids and polars frames:

>>> import recctl                                                   # doctest: +SKIP
>>> exp = recctl.Experiment("configs/quickstart.yaml")              # doctest: +SKIP
>>> exp.run()                                                       # doctest: +SKIP
>>> exp.recommend(["C10001", "C10002"])          # user_id, rank, item_id, ... # doctest: +SKIP

:meth:`Experiment.recommend` goes through the one list builder (:mod:`recctl.lists`) exactly as
``recctl recommend`` does: ``recommend.model`` then the fallback chain, the business rules, each
customer's full history excluded, A/B variants and holdout, exactly K items where K are
eligible. So its rows equal the nightly file's for the same users. ``Recommender.recommend``
(a model alone) is the lower level: internal indices, no rules, no fallback.

Loaded models and histories are kept between calls and reloaded when a stage has run since
(its ``manifest.json`` changed), so a notebook can retrain and ask again.

Layering: this module sits with :mod:`recctl.pipeline`, above ``recctl.stages``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from recctl.config import Config, load_config

if TYPE_CHECKING:
    import polars as pl

    from recctl.artifacts import Manifest
    from recctl.data.dataset import Dataset
    from recctl.models.base import Recommender
    from recctl.pipeline import RunReport
    from recctl.progress import Progress

__all__ = ["Experiment", "history_view", "load_dataset"]

#: catalogue columns added to answers when ``details`` is on (as ``recctl recommend --items`` does)
_DETAIL_COLUMNS = ("title", "category")
#: stages whose outputs the serving models, catalogue and histories come from
_SERVING_STAGES = ("ingest", "preprocess", "train", "update")


def load_dataset(cfg: Config, split: str = "train") -> Dataset:
    """The dataset models train on, from the experiment's finished ``preprocess`` stage.

    Takes a :class:`~recctl.config.Config` like every public function (``load_trained_model``,
    ``run_train``, ...); :func:`recctl.data.dataset.load_dataset` is the lower level, taking a
    preprocess directory.

    Parameters
    ----------
    cfg
        The experiment config.
    split
        ``train`` (what evaluated models fit), ``tune_train`` (tuning) or ``all`` (every event).

    Returns
    -------
    Dataset
        Interaction matrix, id maps and features.

    Raises
    ------
    ArtifactError
        The preprocess stage has not run or is stale (the message names the command to run).
    """
    from recctl.data.dataset import load_dataset as load_from_dir
    from recctl.stages._common import require_stage

    pre_dir, _ = require_stage(cfg, "preprocess")
    return load_from_dir(pre_dir, split)


def history_view(cfg: Config, last: int = 10) -> dict[str, Any]:
    """The workdir's run history: evaluations, runs and publications, the newest ``last`` of each.

    Reads what the stages keep and does not copy it: ``<workdir>/history/evaluate.jsonl`` (one
    record per finished evaluate: each model's primary metric with its interval, the best and the
    serving model, the decision), ``history/run.jsonl`` (one per ``recctl run``: what ran, why,
    how long, the error of a failed run) and the published versions ``recctl rollback`` keeps
    (:func:`recctl.stages.rollback.versions_table`).

    Parameters
    ----------
    cfg
        The experiment config.
    last
        How many of each to return (oldest first).

    Returns
    -------
    dict
        ``workdir``, ``evaluations``, ``runs``, ``publications`` (lists, oldest first) and
        ``change``: how the serving model's primary metric moved between the last two
        evaluations (:func:`recctl.history.compare_last_runs`), or ``None``.
    """
    from recctl.history import compare_last_runs, read_history
    from recctl.stages.rollback import versions_table

    evaluations = read_history(cfg.workdir_path, "evaluate", limit=last)
    return {
        "workdir": str(cfg.workdir_path),
        "evaluations": evaluations,
        "runs": read_history(cfg.workdir_path, "run", limit=last),
        "publications": versions_table(cfg)[-last:],
        "change": compare_last_runs(evaluations),
    }


class Experiment:
    """A shop's experiment: its config, its workdir, its stages and its lists.

    Parameters
    ----------
    config
        Path of the YAML config, or an already loaded :class:`~recctl.config.Config`.
    overrides
        ``KEY=VALUE`` changes, like the CLI's ``--set`` (only with a path), e.g.
        ``["workdir=/tmp/shop", "models.lightfm_warp.epochs=5"]``.

    Raises
    ------
    ConfigError
        The config is invalid (every problem, each naming its YAML key).

    Examples
    --------
    >>> exp = Experiment("configs/quickstart.yaml", overrides=["workdir=/tmp/qs"])  # doctest: +SKIP
    >>> exp.run()                                                        # doctest: +SKIP
    >>> exp.metrics_table(k=10)                                          # doctest: +SKIP
    >>> exp.recommend("C10001", k=5)                                     # doctest: +SKIP
    """

    def __init__(self, config: str | os.PathLike[str] | Config, *, overrides: Sequence[str] = ()) -> None:
        if isinstance(config, Config):
            if overrides:
                raise TypeError("overrides apply to a config file; change the Config object directly instead")
            self.config = config
        else:
            self.config = load_config(config, overrides=overrides)
        self._cache: dict[tuple[str, ...], tuple[Any, Any]] = {}

    def __repr__(self) -> str:
        return f"Experiment({self.config.name!r}, workdir={str(self.workdir)!r})"

    @property
    def workdir(self) -> Path:
        """Where the stages write."""
        return self.config.workdir_path

    # -- stages ------------------------------------------------------------------------------
    def run(self, *, force: bool = False, skip: Sequence[str] = (), progress: Progress | None = None) -> RunReport:
        """Run every configured stage, skipping unchanged ones (``recctl run``)."""
        from recctl.pipeline import run_all

        return run_all(self.config, force=force, skip=tuple(skip), progress=progress)

    def ingest(self, *, append: Sequence[str | os.PathLike[str]] = (), progress: Progress | None = None) -> Manifest:
        """Read the raw exports (``recctl ingest``; ``append``: add files as new batches)."""
        from recctl.stages.ingest import run_ingest

        files = [Path(p) for p in append] or None
        return run_ingest(self.config, append=files, progress=progress)

    def preprocess(self, *, progress: Progress | None = None) -> Manifest:
        """Weights, filters, id maps, splits, features (``recctl preprocess``)."""
        from recctl.stages.preprocess import run_preprocess

        return run_preprocess(self.config, progress=progress)

    def train(self, models: Sequence[str] | None = None, *, progress: Progress | None = None) -> Manifest:
        """Fit the configured models, or only ``models`` (``recctl train``)."""
        from recctl.stages.train import run_train

        return run_train(self.config, models=list(models) if models else None, progress=progress)

    def evaluate(self, *, report: bool | None = None, progress: Progress | None = None) -> Manifest:
        """Every model against the baseline on the test split (``recctl evaluate``)."""
        from recctl.stages.evaluate import run_evaluate

        return run_evaluate(self.config, report=report, progress=progress)

    def tune(self, *, n_trials: int | None = None, progress: Progress | None = None) -> Manifest:
        """Search parameters on the validation split (``recctl tune``)."""
        from recctl.stages.tune import run_tune

        return run_tune(self.config, n_trials=n_trials, progress=progress)

    def recommend_all(self, *, progress: Progress | None = None) -> Manifest:
        """Write every customer's list to ``<workdir>/recommend/`` (``recctl recommend``)."""
        from recctl.stages.recommend import run_recommend

        return run_recommend(self.config, progress=progress)

    def serve_export(self, *, date: str | None = None, progress: Progress | None = None) -> Manifest:
        """Publish the nightly file (``recctl serve-export``)."""
        from recctl.stages.export import run_serve_export

        return run_serve_export(self.config, date=date, progress=progress)

    # -- results -----------------------------------------------------------------------------
    def metrics(self) -> dict[str, Any]:
        """``metrics.json`` of the finished evaluate stage (protocol, means, comparisons)."""
        from recctl.stages.evaluate import read_metrics

        return read_metrics(self.config)

    def metrics_table(self, k: int | None = None) -> pl.DataFrame:
        """Mean metrics, one row per model (baseline first), one column per ``metric@k``.

        Parameters
        ----------
        k
            Only the metrics at this cut-off (and those without one, like ``auc``).
        """
        import polars as pl

        metrics = self.metrics()
        order = list(metrics.get("model_order") or metrics["models"])
        rows = []
        for name in order:
            means = metrics["models"][name]["mean"]
            keep = {m: v for m, v in means.items() if k is None or "@" not in m or m.endswith(f"@{k}")}
            rows.append({"model": name, **keep})
        return pl.DataFrame(rows)

    def history(self, last: int = 10) -> dict[str, Any]:
        """The last runs' evaluations, run summaries and publications (see :func:`history_view`)."""
        return history_view(self.config, last)

    def model(self, name: str, *, for_serving: bool = False) -> Recommender:
        """The trained model ``name`` (hash checked). ``for_serving``: the copy lists come from."""
        from recctl.model_store import load_trained_model

        return load_trained_model(self.config, name, for_serving=for_serving)

    def dataset(self, split: str = "train") -> Dataset:
        """The training data of the models (see :func:`load_dataset`)."""
        return load_dataset(self.config, split)

    # -- lists by shop ids ---------------------------------------------------------------------
    def recommend(
        self,
        users: str | Sequence[str],
        *,
        k: int | None = None,
        model: str | None = None,
        details: bool = True,
    ) -> pl.DataFrame:
        """Lists for these customers, exactly as the nightly file has them.

        Parameters
        ----------
        users
            Shop user ids (one or several). An id the shop never named gets the list for a
            user without history (the fallback chain), as in ``recctl recommend --users``.
        k
            List length (default ``recommend.k``).
        model
            Serve everyone with this model first (then ``recommend.fallback``), ignoring A/B
            variants; to compare models' lists. Default: ``recommend.model`` or each user's
            variant, as the file.
        details
            Add the catalogue's ``title`` and ``category`` when it has them.

        Returns
        -------
        polars.DataFrame
            ``user_id, rank, item_id, score, model, source`` (+ ``variant`` under an
            experiment) (+ ``title``, ``category``), users in the given order, then rank. Order
            by ``rank``: a backfilled item's ``score`` is its own model's, not comparable.

        Raises
        ------
        ConfigError, ArtifactError
            No ``recommend`` section; a stage has not run or is stale (the message says which
            command to run).
        """
        from recctl.errors import DataError
        from recctl.stages.recommend import lists_frame

        given = [users] if isinstance(users, str) else list(users)
        ids = list(dict.fromkeys(str(u).strip() for u in given if str(u).strip()))
        if not ids:
            raise DataError("recommend: no user ids given; pass e.g. exp.recommend(['C10001', 'C10002'])")
        serving, audience = self._serving(model)
        if k is not None:
            serving = replace(serving, rc=serving.rc.model_copy(update={"k": k}))
        frame = lists_frame(serving, audience.select(ids), main=model)
        return self._details(frame, serving) if details else frame

    def recommend_for_items(self, items: Sequence[str], *, k: int | None = None) -> pl.DataFrame:
        """Lists for an anonymous visitor who interacted with ``items`` (``recctl recommend --items``)."""
        from recctl.stages.recommend import recommend_for_items

        serving, _ = self._serving(None)
        return recommend_for_items(self.config, [str(i) for i in items], k, serving=serving)

    def similar_items(self, item: str, *, k: int | None = None) -> pl.DataFrame:
        """Items most similar to ``item`` (``recctl recommend --similar-to``)."""
        from recctl.stages.recommend import similar_items

        serving, _ = self._serving(None)
        return similar_items(self.config, str(item), k, serving=serving)

    # -- caching -------------------------------------------------------------------------------
    def _fingerprint(self) -> tuple[Any, ...]:
        # a stage that ran since changed its manifest: reload what serves
        stamps: list[tuple[str, int | None, int | None]] = []
        for stage in _SERVING_STAGES:
            path = self.workdir / stage / "manifest.json"
            try:
                stat = path.stat()
                stamps.append((stage, stat.st_mtime_ns, stat.st_size))
            except OSError:
                stamps.append((stage, None, None))
        return tuple(stamps)

    def _serving(self, model: str | None) -> tuple[Any, Any]:
        from recctl.stages.recommend import load_audience, load_serving, recommend_section

        key = ("serving", model or "")
        fingerprint = self._fingerprint()
        cached = self._cache.get(key)
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        names = None
        if model is not None:
            rc = recommend_section(self.config)
            names = list(dict.fromkeys([model, *rc.fallback]))
        serving = load_serving(self.config, model_names=names)
        audience = load_audience(self.config, serving)
        self._cache[key] = (fingerprint, (serving, audience))
        return serving, audience

    @staticmethod
    def _details(frame: pl.DataFrame, serving: Any) -> pl.DataFrame:
        import polars as pl

        from recctl.columns import Columns

        extra = [c for c in _DETAIL_COLUMNS if c in serving.items.columns and c not in frame.columns]
        if not extra:
            return frame
        catalogue = serving.items.select(
            pl.col(Columns.Item).cast(pl.String), *[pl.col(c).cast(pl.String) for c in extra]
        )
        # keep the list order (users as given, then rank) whatever the join does
        joined = frame.with_row_index("__row").join(catalogue, on=Columns.Item, how="left")
        return joined.sort("__row").drop("__row")
