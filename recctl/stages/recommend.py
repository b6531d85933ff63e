"""The ``recommend`` stage: exactly K items for every customer, through the one list builder.

Flow for all customers (the nightly run):

1. load the serving models (main, fallback chain, A/B variants' models), the catalogue and the
   rules (:func:`load_serving`);
2. load the **audience** (:func:`load_audience`, :mod:`recctl.lists.audience`): every customer
   the inputs name (every user with an accepted event, every id of the customer file), with
   their full history from the ingested events; which users the models were trained on
   never removes anyone;
3. stream the audience through :class:`recctl.lists.ListBuilder` block by block (all cores)
   and append each block to ``recommendations.parquet`` (pyarrow ``ParquetWriter`` in the
   staging directory), so memory is bounded by the block size;
4. report lists shorter than K (fewer eligible items than K: a crawler, a tight allow list)
   in ``short_lists.parquet`` and the summary; they are not errors.

Output ``<workdir>/recommend/recommendations.parquet``: ``user_id, rank, item_id, score,
model, source`` (+ ``variant`` under an experiment, + ``assignments.parquet``), ordered by
user id (byte order) then rank; ``short_lists.parquet``: ``user_id, n_items, n_eligible``.
``recommend --users`` writes to ``<workdir>/recommend-users/`` instead, so an ad-hoc look never
replaces the nightly lists; ``--changed-since`` re-scores only the users whose lists can have
changed and copies the others' rows (the same builder, on a subset).

The interactive helpers :func:`recommend_for_items` (anonymous visitor: a few item ids) and
:func:`similar_items` ("customers also bought") go through the same builder.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp

from recctl.artifacts import Manifest, utc_now
from recctl.columns import Columns
from recctl.config import Config
from recctl.config.recommend import RecommendConfig
from recctl.data.positions import IdPositions
from recctl.errors import ArtifactError, ConfigError, DataError
from recctl.graph import read_stage
from recctl.lists import ListBuilder, Lists, Request, eligible_capacity, to_arrow
from recctl.lists.audience import ORIGINS, Audience, build_audience
from recctl.lists.builder import iter_blocks
from recctl.lists.checks import check_list_settings
from recctl.lists.fill import numpy_arrow, string_arrow
from recctl.progress import Progress, report
from recctl.ranking import block_rows_for
from recctl.rules import ItemRules, build_item_rules
from recctl.stages._common import StageRun, require_stage, timed_stage
from recctl.workdir import writes_workdir

__all__ = [
    "ASSIGNMENTS_FILE",
    "HOLDOUT",
    "RECOMMEND_FILE",
    "SHORT_FILE",
    "Serving",
    "as_records",
    "check_recommend_settings",
    "load_audience",
    "lists_frame",
    "load_serving",
    "read_user_lists",
    "recommend_for_items",
    "recommendation_schema",
    "serving_model_names",
    "run_recommend",
    "similar_items",
]

log = logging.getLogger(__name__)

RECOMMEND_FILE = "recommendations.parquet"
ASSIGNMENTS_FILE = "assignments.parquet"
SHORT_FILE = "short_lists.parquet"
HOLDOUT = "holdout"
#: rows buffered before a Parquet row group is written
_ROW_GROUP_ROWS = 256_000
#: short-list examples quoted in the summary
_EXAMPLES = 5


def recommendation_schema(with_variant: bool) -> pa.Schema:
    """Arrow schema of ``recommendations.parquet`` (Columns.Recommendations + source [+ variant])."""
    fields = [
        pa.field(Columns.User, pa.string(), nullable=False),
        pa.field(Columns.Rank, pa.int32(), nullable=False),
        pa.field(Columns.Item, pa.string(), nullable=False),
        pa.field(Columns.Score, pa.float32(), nullable=False),
        pa.field(Columns.Model, pa.string(), nullable=False),
        pa.field(Columns.Source, pa.string(), nullable=False),
    ]
    if with_variant:
        fields.append(pa.field(Columns.Variant, pa.string(), nullable=False))
    return pa.schema(fields)


def short_schema() -> pa.Schema:
    """Arrow schema of ``short_lists.parquet``: users whose list holds fewer than K items."""
    return pa.schema(
        [
            pa.field(Columns.User, pa.string(), nullable=False),
            pa.field("n_items", pa.int32(), nullable=False),
            pa.field("n_eligible", pa.int32(), nullable=False),
        ]
    )


def recommend_section(cfg: Config) -> RecommendConfig:
    """The ``recommend`` section, or a ConfigError saying how to add it."""
    if cfg.recommend is None:
        raise ConfigError(
            f"{cfg.source_path or 'config'}: recommend: section missing; add e.g. "
            "`recommend: {model: <a model in models>, k: 10, fallback: [popular]}`."
        )
    return cfg.recommend


def _chain_names(cfg: Config) -> list[str]:
    rc = recommend_section(cfg)
    return list(dict.fromkeys([rc.model, *rc.fallback]))


@dataclass
class Serving:
    """Everything the recommend paths load once: catalogue, rules, models, and builders over them.

    Attributes
    ----------
    item_ids
        polars String Series: catalogue index -> the shop's item id.
    items
        The catalogue (``items.parquet`` of the serving data), sorted by index.
    rules
        Item rules resolved against the catalogue.
    models
        Loaded models by name (main, fallback chain, A/B variants).
    users
        The models' id map (``user_id, user_idx``).
    data_dir
        Where the serving data lives (``preprocess/`` or the current ``update/``).
    inputs
        Files read (for the stage manifest).
    """

    cfg: Config
    rc: RecommendConfig
    data_dir: Path
    item_ids: pl.Series
    items: pl.DataFrame
    users: pl.DataFrame
    rules: ItemRules
    models: dict[str, Any]
    inputs: list[Path] = field(default_factory=list)
    _item_lookup: IdPositions | None = None

    @property
    def n_items(self) -> int:
        """Catalogue size."""
        return len(self.item_ids)

    def builder(self, main: str | None = None) -> ListBuilder:
        """The list builder with ``main`` (default ``recommend.model``) then the fallback chain."""
        main = main or self.rc.model
        chain = [main, *[name for name in self.rc.fallback if name != main]]
        return ListBuilder(
            [(name, self.models[name]) for name in chain],
            self.rules,
            self.rc.k,
            min_score=self.rc.min_score,
            candidates=self.rc.rules.candidates,
        )

    def item_index(self, ids: list[str]) -> np.ndarray:
        """Catalogue indices of item ids (``int64``; ``-1`` for unknown ids)."""
        if self._item_lookup is None:
            self._item_lookup = IdPositions(self.item_ids)
        return self._item_lookup.lookup(ids)


def serving_model_names(cfg: Config) -> list[str]:
    """The models serving needs: main, A/B variants' and the fallback chain, without repeats."""
    rc = recommend_section(cfg)
    names = [rc.model]
    if cfg.experiment is not None:
        names += [v.model for v in cfg.experiment.variants.values()]
    return list(dict.fromkeys(names + list(rc.fallback)))


def load_serving(cfg: Config, *, model_names: list[str] | None = None) -> Serving:
    """Load the catalogue, rules and models that serve now (preprocess + train, or the update).

    Parameters
    ----------
    cfg
        The experiment config (needs a ``recommend`` section).
    model_names
        Models to load (default: main, A/B variants' and fallbacks).

    Raises
    ------
    ConfigError, ArtifactError
        Missing config section, upstream stage or model.
    """
    from recctl.incremental.current import load_serving_model, serving_source

    rc = recommend_section(cfg)
    source = serving_source(cfg)
    data_dir = source.data_dir
    users = pl.read_parquet(data_dir / "users.parquet", columns=[Columns.User, Columns.UserIdx])
    items = pl.read_parquet(data_dir / "items.parquet").sort(Columns.ItemIdx)
    inputs = [data_dir / "users.parquet", data_dir / "items.parquet"]
    item_features = None
    if rc.rules.diversity_lambda > 0 and not rc.rules.diversity_column and (data_dir / "item_features.npz").exists():
        item_features = sp.load_npz(data_dir / "item_features.npz").tocsr()
        inputs.append(data_dir / "item_features.npz")
    rules = build_item_rules(rc.rules, items, resolve=cfg.resolve, item_features=item_features)
    for key in ("allow_list", "deny_list"):
        value = getattr(rc.rules, key)
        if value:
            inputs.append(cfg.resolve(value))
    serving = Serving(
        cfg=cfg,
        rc=rc,
        data_dir=data_dir,
        item_ids=items[Columns.Item].cast(pl.String),
        items=items,
        users=users,
        rules=rules,
        models={},
        inputs=inputs,
    )
    for name in serving_model_names(cfg) if model_names is None else model_names:
        model = load_serving_model(cfg, name, source)
        if model.n_items != items.height or model.n_users != users.height:
            raise ArtifactError(
                f"{source.model_file(name)}: model '{name}' was trained on {model.n_users} users x "
                f"{model.n_items} items but the serving data has {users.height} x {items.height}; re-run "
                f"`recctl train {cfg.source_path or 'CONFIG'}`."
            )
        serving.models[name] = model
        serving.inputs.append(source.model_file(name))
    return serving


def load_audience(cfg: Config, serving: Serving, *, cache: bool = False) -> Audience:
    """Every customer the inputs name, with their full history (:mod:`recctl.lists.audience`).

    Reads ``ingest/interactions.parquet`` (every accepted event, appended batches included) and
    ``ingest/users.parquet`` (the customer file) after checking them against the ingest manifest.

    With ``cache``, the audience is kept in ``<workdir>/.recctl/cache/audience.npz``, keyed by
    the sha256 of everything it is built from (the ingested events and customer file, the
    serving id maps, the exclusion settings): ``recommend`` writes it and ``serve-export``
    reads it instead of building the same histories again. A cache whose key differs is
    rebuilt (and replaced); a cache that cannot be read is rebuilt too.
    """
    ingest_dir, ingest_manifest = require_stage(cfg, "ingest", ["interactions.parquet"])
    customers = None
    users_path = ingest_dir / "users.parquet"
    if users_path.exists():
        serving.inputs.append(users_path)
    serving.inputs.append(ingest_dir / "interactions.parquet")
    rc = serving.rc
    key = _audience_key(serving, ingest_manifest, users_path) if cache else None
    if key is not None:
        cached = _read_cached_audience(cfg, key)
        if cached is not None:
            return cached
    if users_path.exists():
        customers = pl.read_parquet(users_path, columns=[Columns.User])[Columns.User]
    audience = build_audience(
        pl.scan_parquet(ingest_dir / "interactions.parquet"),
        serving.users,
        serving.items.select(Columns.Item, Columns.ItemIdx),
        customers=customers,
        exclude_seen=rc.exclude_seen,
        exclude_events=rc.rules.exclude_events,
    )
    if key is not None:
        _write_cached_audience(cfg, key, audience)
    return audience


#: bump when build_audience's result for the same inputs changes
_AUDIENCE_CACHE_VERSION = 1


def _audience_cache_path(cfg: Config) -> Path:
    from recctl.workdir import STATE_DIR

    return cfg.workdir_path / STATE_DIR / "cache" / "audience.npz"


def _audience_key(serving: Serving, ingest_manifest: Manifest, users_path: Path) -> str | None:
    """sha256 over what :func:`build_audience` reads; ``None`` when an input's hash is unknown."""
    import hashlib
    import json

    from recctl.artifacts import sha256_file

    try:
        events_sha = ingest_manifest.output("interactions.parquet").sha256  # verified by require_stage
    except ArtifactError:
        return None
    if not events_sha:
        return None
    rc = serving.rc
    parts = {
        "version": _AUDIENCE_CACHE_VERSION,
        "events": events_sha,
        # the customer file and the serving id maps (small files: hashed here)
        "customers": sha256_file(users_path) if users_path.exists() else None,
        "users": sha256_file(serving.data_dir / "users.parquet"),
        "items": sha256_file(serving.data_dir / "items.parquet"),
        "exclude_seen": rc.exclude_seen,
        "exclude_events": rc.rules.exclude_events,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _read_cached_audience(cfg: Config, key: str) -> Audience | None:
    import zipfile

    path = _audience_cache_path(cfg)
    try:
        # opened here, not by np.load: it leaves its own handle open when the file is damaged
        with open(path, "rb") as handle, np.load(handle, allow_pickle=False) as data:
            if str(data["key"]) != key:
                return None
            return Audience.from_arrays({name: data[name] for name in data.files})
    except FileNotFoundError:
        return None
    # a damaged cache (cut short: BadZipFile / EOFError) is rebuilt, never trusted
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        log.warning("%s: unreadable audience cache, rebuilding it (%s)", path, exc)
        return None


def _write_cached_audience(cfg: Config, key: str, audience: Audience) -> None:
    from recctl.artifacts import atomic_path

    path = _audience_cache_path(cfg)
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            arrays: dict[str, Any] = {"key": np.array(key), **audience.to_arrays()}
            np.savez(handle, **arrays)
    except OSError as exc:  # a cache is an optimisation: failing to write it fails nothing
        log.warning("%s: could not write the audience cache (%s)", path, exc)


def check_recommend_settings(cfg: Config, data_dir: Path, configs: dict[str, Any] | None = None) -> None:
    """Refuse impossible ``recommend`` settings before training (K above what the rules leave, ...).

    ``configs`` maps model names to the model configs train is about to fit, when they are not
    (only) the config's own: ``tuned`` with ``tune.apply`` (the model tune picked).

    Raises
    ------
    ConfigError
        See :func:`recctl.lists.checks.check_list_settings`.
    """
    from recctl.models.registry import create_model

    rc = recommend_section(cfg)
    items = pl.read_parquet(data_dir / "items.parquet").sort(Columns.ItemIdx)
    rules = build_item_rules(rc.rules, items, resolve=cfg.resolve)
    known = configs or {}
    chain = [(name, create_model(known.get(name) or cfg.model_config_for(name))) for name in _chain_names(cfg)]
    check_list_settings(rc.k, rules, items.height, chain)
    related = cfg.export.related
    if related is not None:
        main = create_model(known.get(related.model) or cfg.model_config_for(related.model))
        if not main.supports_similar_items:
            raise ConfigError(
                f"export.related.model: model '{related.model}' (kind {main.kind}) has no item similarity; "
                "choose a model that has (item_knn, ease, lightfm, content, rp3beta, als)."
            )
        for i, name in enumerate(related.fallback):
            model = create_model(known.get(name) or cfg.model_config_for(name))
            if not (model.supports_similar_items or (model.supports_cold_users and model.supports_item_history)):
                raise ConfigError(
                    f"export.related.fallback.{i}: model '{name}' (kind {model.kind}) has neither item similarity "
                    "nor a list for no history (popularity); it cannot fill related products."
                )


# -- writing lists -----------------------------------------------------------------------
@dataclass
class _Stats:
    """What the summary says about the lists written."""

    k: int
    rows: int = 0
    users: int = 0
    by_source: dict[str, int] = field(default_factory=dict)
    short: list[pa.Table] = field(default_factory=list)
    n_short: int = 0
    n_empty: int = 0

    def add(
        self, lists: Lists, user_ids: pl.Series, exclude: sp.csr_matrix | None, rules: ItemRules, n_items: int
    ) -> None:
        names = lists.source_names
        valid = lists.items >= 0
        codes, counts = np.unique(lists.sources[valid], return_counts=True)
        by_source = {names[code]: int(count) for code, count in zip(codes, counts, strict=True)}
        self.record(lists.lengths, by_source, user_ids, exclude, rules, n_items)

    def record(
        self,
        lengths: np.ndarray,
        by_source: dict[str, int],
        user_ids: pl.Series,
        exclude: sp.csr_matrix | None,
        rules: ItemRules,
        n_items: int,
    ) -> None:
        """Count a block of lists from their lengths and rows per source (the Spark path has no ``Lists``)."""
        self.users += len(lengths)
        for name, count in by_source.items():
            self.by_source[name] = self.by_source.get(name, 0) + count
        short = np.flatnonzero(lengths < self.k)
        if len(short):
            sub = None if exclude is None else exclude[short]
            eligible = eligible_capacity(rules, sub, len(short), n_items)
            self.short.append(
                pa.table(
                    {
                        Columns.User: user_ids.gather(short).to_arrow(),
                        "n_items": numpy_arrow(lengths[short].astype(np.int32)),
                        "n_eligible": numpy_arrow(eligible.astype(np.int32)),
                    },
                    schema=short_schema(),
                )
            )
            self.n_short += len(short)
            self.n_empty += int((lengths[short] == 0).sum())


class _StreamWriter:
    """Appends tables to one Parquet file, flushing row groups of bounded size."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        self.path = path
        self.schema = schema
        self.writer = pq.ParquetWriter(path, schema, compression="zstd")
        self.buffer: list[pa.Table] = []
        self.buffered = 0
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        self.buffer.append(table)
        self.buffered += table.num_rows
        if self.buffered >= _ROW_GROUP_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            table = pa.concat_tables(self.buffer)
            self.writer.write_table(table, row_group_size=max(1, table.num_rows))
            self.rows += table.num_rows
            self.buffer, self.buffered = [], 0

    def close(self) -> None:
        self.flush()
        self.writer.close()


@dataclass
class _Plan:
    """Who is served by which builder: one builder, or one per A/B variant model."""

    audience: Audience
    builders: list[ListBuilder]
    builder_of_user: np.ndarray  # int code into builders, per audience row
    model_names: list[str]  # the `model` column value per builder
    variants: pl.Series | None  # per audience row, under an experiment
    sources: list[str]  # every source name, in a stable order


def _plan(serving: Serving, audience: Audience, variants: pl.Series | None, main: str | None = None) -> _Plan:
    rc = serving.rc
    exp = serving.cfg.experiment
    if variants is None or exp is None:
        mains = [main or rc.model]
        code = np.zeros(len(audience), np.int16)
    else:
        model_of_variant = {name: spec.model for name, spec in exp.variants.items()}
        mains = list(dict.fromkeys(model_of_variant[v] for v in exp.variants))
        code_of = {v: mains.index(model_of_variant[v]) for v in exp.variants}
        code = np.array([code_of[v] for v in variants.to_list()], np.int16)
    builders = [serving.builder(main) for main in mains]
    sources = list(dict.fromkeys([*mains, *rc.fallback]))
    return _Plan(audience, builders, code, mains, variants, sources)


def _build_block(plan: _Plan, start: int, stop: int) -> Lists:
    """Lists for audience rows ``start:stop``, each user through their builder."""
    request = plan.audience.request(start, stop)
    if len(plan.builders) == 1:
        lists = plan.builders[0].build(request)
        return _recode(lists, plan.sources)
    codes = plan.builder_of_user[start:stop]
    out = Lists.empty(stop - start, plan.builders[0].k, plan.sources)
    for code, builder in enumerate(plan.builders):
        sel = np.flatnonzero(codes == code)
        if len(sel):
            part = _recode(builder.build(_take(request, sel)), plan.sources)
            out.items[sel], out.scores[sel], out.sources[sel] = part.items, part.scores, part.sources
    return out


def _take(request: Request, rows: np.ndarray) -> Request:
    return Request(
        request.rows[rows],
        None if request.basket is None else request.basket[rows],
        None if request.exclude is None else request.exclude[rows],
    )


def _recode(lists: Lists, names: list[str]) -> Lists:
    """Source codes of ``lists`` re-expressed in ``names``."""
    if lists.source_names == names:
        return lists
    table = np.array([names.index(n) for n in lists.source_names] + [-1], np.int8)
    return Lists(lists.items, lists.scores, table[lists.sources], names)


def _iter_tables(serving: Serving, plan: _Plan) -> Iterator[tuple[int, Lists, pa.Table]]:
    """``(start, lists, rows)`` per block of the plan's audience, in order, built on all cores."""
    rc = serving.rc
    audience = plan.audience
    model_col = string_arrow(plan.model_names)
    rows_per_block = block_rows_for(serving.n_items, rc.batch_size, int(rc.max_block_mb * 2**20))
    item_ids = serving.item_ids.to_arrow()
    # score blocks are small (16 MB of scores: ~200 users at 20,000 items); their rows are
    # turned into Arrow tables a batch (recommend.batch_size users) at a time, so the per-call
    # cost of the conversion and of writing is paid once per batch, not once per block
    pending: list[Lists] = []
    pending_users = first = 0
    for start, lists in iter_blocks(lambda a, b: _build_block(plan, a, b), len(audience), rows_per_block, rc.n_jobs):
        if not pending:
            first = start
        pending.append(lists)
        pending_users += len(lists)
        if pending_users >= rc.batch_size:
            merged = _concat_lists(pending)
            pending, pending_users = [], 0
            yield first, merged, _lists_table(plan, merged, first, item_ids, model_col)
    if pending:
        merged = _concat_lists(pending)
        yield first, merged, _lists_table(plan, merged, first, item_ids, model_col)


def _concat_lists(parts: list[Lists]) -> Lists:
    """Consecutive blocks' lists as one (same sources: every block is recoded to the plan's)."""
    if len(parts) == 1:
        return parts[0]
    return Lists(
        np.concatenate([p.items for p in parts]),
        np.concatenate([p.scores for p in parts]),
        np.concatenate([p.sources for p in parts]),
        parts[0].source_names,
    )


def lists_frame(serving: Serving, audience: Audience, *, main: str | None = None) -> pl.DataFrame:
    """The lists of ``audience`` as one frame, built exactly as :func:`run_recommend` builds the file.

    For the Python API (``recctl.Experiment.recommend``): nothing is written to the workdir.

    Parameters
    ----------
    serving
        From :func:`load_serving`.
    audience
        From :func:`load_audience` (``.select(ids)`` for some users).
    main
        Serve every user with this model first (then ``recommend.fallback``) instead of
        ``recommend.model``, ignoring A/B variants. Default: exactly the nightly file's lists
        (under an ``experiment:`` each user's variant; held-out users get no rows).

    Returns
    -------
    polars.DataFrame
        ``user_id, rank, item_id, score, model, source`` (+ ``variant``), users in the
        audience's order, then rank.
    """
    variants = None
    if main is None:
        audience, variants, _ = _assign(serving.cfg, audience)
    plan = _plan(serving, audience, variants, main=main)
    schema = recommendation_schema(plan.variants is not None)
    tables = [table.select(schema.names).cast(schema) for _, _, table in _iter_tables(serving, plan)]
    frame = pl.from_arrow(pa.concat_tables(tables) if tables else pa.Table.from_batches([], schema=schema))
    assert isinstance(frame, pl.DataFrame)
    return frame


def _write_lists(serving: Serving, plan: _Plan, path: Path, short_path: Path, *, progress: Progress | None) -> _Stats:
    """Build every list of the plan into ``path`` (and the short ones into ``short_path``)."""
    rc = serving.rc
    audience = plan.audience
    stats = _Stats(rc.k)
    with_variant = plan.variants is not None
    schema = recommendation_schema(with_variant)
    writer = _StreamWriter(path, schema)
    total = len(audience)
    try:
        if serving.cfg.engine.is_spark:
            _write_on_spark(serving, plan, writer, stats, progress)
        else:
            for start, lists, table in _iter_tables(serving, plan):
                stop = start + len(lists)
                user_ids = audience.user_ids.slice(start, stop - start)
                writer.write(table.select(schema.names).cast(schema))
                exclude = None if audience.exclude is None else audience.exclude[start:stop]
                stats.add(lists, user_ids, exclude, serving.rules, serving.n_items)
                report(progress, "recommend", stop, total)
    finally:
        writer.close()
    stats.rows = writer.rows
    # (an empty table from batches: Schema.empty_table() makes pyarrow import pandas, ~1 CPU s)
    short = pa.concat_tables(stats.short) if stats.short else pa.Table.from_batches([], schema=short_schema())
    pq.write_table(short, short_path, compression="zstd")
    return stats


def _lists_table(plan: _Plan, lists: Lists, start: int, item_ids: pa.Array, model_col: pa.Array) -> pa.Table:
    """Long rows of the lists of audience rows ``start:start + len(lists)`` (both engines)."""
    stop = start + len(lists)
    per_row: dict[str, Any] = {
        Columns.Model: model_col.take(numpy_arrow(plan.builder_of_user[start:stop].astype(np.int64)))
    }
    if plan.variants is not None:
        per_row[Columns.Variant] = plan.variants.slice(start, stop - start)
    return to_arrow(lists, plan.audience.user_ids.slice(start, stop - start), item_ids, per_row=per_row)


def _spark_list_task(payload: tuple[_Plan, pa.Array, pa.Schema, int], positions: np.ndarray) -> Any:
    """What each Spark task runs (``engine: spark``): the list builder on its run of audience rows."""
    plan, item_ids, schema, rows_per_block = payload
    model_col = string_arrow(plan.model_names)
    first, last = int(positions[0]), int(positions[-1]) + 1  # a range partition's positions are contiguous
    for start in range(first, last, rows_per_block):
        lists = _build_block(plan, start, min(last, start + rows_per_block))
        yield _lists_table(plan, lists, start, item_ids, model_col).select(schema.names).cast(schema)


def _write_on_spark(
    serving: Serving, plan: _Plan, writer: _StreamWriter, stats: _Stats, progress: Progress | None
) -> None:
    """Build every list on the executors with the same builder; write them in audience order.

    The plan (list builders with their models and rules, the audience with its histories) is
    broadcast once; audience rows are range-partitioned, so the partitions' results, read back in
    order, are in audience order. Each task builds its rows block by block on one thread (Spark
    runs a task per executor core). The statistics are counted here, from the rows.
    """
    from recctl.engine.spark.partitions import map_user_partitions
    from recctl.engine.spark.session import get_spark

    audience = plan.audience
    schema = writer.schema
    rc = serving.rc
    rows_per_block = block_rows_for(serving.n_items, rc.batch_size, int(rc.max_block_mb * 2**20))
    payload = (plan, serving.item_ids.to_arrow(), schema, rows_per_block)
    spark = get_spark(serving.cfg.engine)
    done = 0
    for table in map_user_partitions(
        spark, serving.cfg, len(audience), payload, _spark_list_task, schema, name="recommend"
    ):
        writer.write(table)
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        # the partition's audience rows: those after the last one counted, up to its last user
        users = frame[Columns.User].unique(maintain_order=True)
        stop = done + len(users) if users.len() else done
        if users.len():
            last = audience.user_ids.slice(done).index_of(users[-1])
            stop = done + int(last) + 1 if last is not None else stop
        ids = audience.user_ids.slice(done, stop - done)
        lengths = ids.to_frame().join(
            frame.group_by(Columns.User).len(), on=Columns.User, how="left", maintain_order="left"
        )
        by_source = {str(k): int(v) for k, v in frame[Columns.Source].value_counts().iter_rows()}
        exclude = None if audience.exclude is None else audience.exclude[done:stop]
        stats.record(lengths["len"].fill_null(0).to_numpy(), by_source, ids, exclude, serving.rules, serving.n_items)
        done = stop
        report(progress, "recommend", done, len(audience))
    if done < len(audience):  # trailing users with empty lists (nothing eligible): counted as short
        ids = audience.user_ids.slice(done)
        exclude = None if audience.exclude is None else audience.exclude[done:]
        stats.record(np.zeros(ids.len(), np.int64), {}, ids, exclude, serving.rules, serving.n_items)


def _summary(serving: Serving, plan: _Plan, stats: _Stats, short_path: Path) -> dict[str, Any]:
    rc = serving.rc
    audience = plan.audience
    short = pl.read_parquet(short_path)
    examples = [
        f"{u} ({n} of {rc.k} items, {e} eligible)"
        for u, n, e in short.head(_EXAMPLES).select(Columns.User, "n_items", "n_eligible").iter_rows()
    ]
    if stats.n_short:
        log.warning(
            "%d user(s) have fewer than %d eligible items and got all of them (e.g. %s); see %s",
            stats.n_short,
            rc.k,
            "; ".join(examples),
            short_path.name,
        )
    origin = audience.origin
    rules = serving.rules
    return {
        "k": rc.k,
        "model": rc.model,
        "fallback": list(rc.fallback),
        "n_users": len(audience),
        "n_rows": stats.rows,
        "users_by_origin": {
            name: int(n) for name, n in zip(ORIGINS, np.bincount(origin, minlength=len(ORIGINS)), strict=True)
        },
        "n_short_lists": stats.n_short,
        "n_empty_lists": stats.n_empty,
        "short_list_examples": examples,
        "rows_by_source": stats.by_source,
        "rule_exclusions": rules.excluded,
        "n_eligible_items": int(rules.item_mask.sum()) if rules.item_mask is not None else serving.n_items,
        "exclusions": "none"
        if audience.exclude is None
        else (
            f"events {rc.rules.exclude_events} (full history)"
            if rc.rules.exclude_events
            else "every item in the full history"
        ),
    }


def _assign(cfg: Config, audience: Audience) -> tuple[Audience, pl.Series | None, pl.DataFrame | None]:
    """A/B variants per user; held-out users leave the audience (they get no list)."""
    if cfg.experiment is None:
        return audience, None, None
    from recctl.abtest.assign import assign_variants

    assigned = pl.Series(Columns.Variant, assign_variants(audience.user_ids.to_list(), cfg.experiment), pl.String)
    assignments = pl.DataFrame({Columns.User: audience.user_ids, Columns.Variant: assigned})
    keep = np.flatnonzero((assigned != HOLDOUT).to_numpy())
    return audience.take(keep), assigned.gather(keep), assignments


@writes_workdir
@timed_stage
def run_recommend(
    cfg: Config, *, users: list[str] | None = None, changed_since: str | None = None, progress: Progress | None = None
) -> Manifest:
    """Write top-K lists for every customer (or ``users``) with rules and fallbacks applied.

    Parameters
    ----------
    cfg
        The experiment config (``recommend`` section required).
    users
        Only these user ids (ids the shop never named get the no-history list). The result
        then goes to ``<workdir>/recommend-users/`` so the nightly ``recommend/`` output is kept.
    changed_since
        ``last-update`` or an ISO time: re-score only the users whose lists can have changed
        since (new events, new items) and keep the others' rows from the previous run.
    progress
        ``progress(task, done, total)``.

    Returns
    -------
    Manifest
        ``summary`` holds ``k``, ``n_users``, ``n_rows``, ``users_by_origin`` (``model``,
        ``fallback``, ``customer_file``), ``n_short_lists`` with examples, rows per
        ``source``, rule exclusion counts and ``generated_at``.

    Raises
    ------
    ConfigError, ArtifactError, DataError
    """
    if changed_since is not None:
        return _recommend_changed(cfg, changed_since, progress=progress)
    serving = load_serving(cfg)
    check_list_settings(serving.rc.k, serving.rules, serving.n_items, list(serving.builder().chain))
    audience = load_audience(cfg, serving, cache=users is None)
    if users is not None:
        ids = list(dict.fromkeys(str(u).strip() for u in users if str(u).strip()))
        if not ids:
            raise DataError("--users: no user ids given; pass e.g. --users u1,u2")
        audience = audience.select(ids)
    audience, variants, assignments = _assign(cfg, audience)
    plan = _plan(serving, audience, variants)
    stage = "recommend" if users is None else "recommend-users"
    generated_at = utc_now()
    with StageRun(cfg, stage, sections=["recommend", "experiment"], inputs=serving.inputs) as run:
        stats = _write_lists(serving, plan, run.dir / RECOMMEND_FILE, run.dir / SHORT_FILE, progress=progress)
        run.add_output(run.dir / RECOMMEND_FILE, stats.rows)
        run.add_output(run.dir / SHORT_FILE, stats.n_short)
        if assignments is not None:
            path = run.dir / ASSIGNMENTS_FILE
            assignments.write_parquet(path, compression="zstd")
            run.add_output(path, assignments.height)
        run.summary.update(
            **_summary(serving, plan, stats, run.dir / SHORT_FILE),
            n_holdout=int((assignments[Columns.Variant] == HOLDOUT).sum()) if assignments is not None else 0,
            generated_at=generated_at,
            users_requested=users is not None,
        )
    return run.manifest


def _recommend_changed(cfg: Config, since: str, *, progress: Progress | None = None) -> Manifest:
    """``recommend --changed-since``: re-score the changed users, copy everyone else's rows."""
    from recctl.incremental.changes import CHANGED_USERS_FILE, changed_positions
    from recctl.incremental.current import UPDATE_STAGE, current_update

    rc = recommend_section(cfg)
    rerun = f"run `recctl recommend {cfg.source_path or 'CONFIG'}` once in full first"
    try:
        # the previous lists are a base to keep rows from, not an input that must be fresh
        prev_dir, prev_manifest = read_stage(cfg, "recommend", [RECOMMEND_FILE])
    except ArtifactError as exc:
        raise ArtifactError(f"--changed-since needs the previous lists: {exc}; {rerun}.") from exc
    previous = pl.read_parquet(prev_dir / RECOMMEND_FILE)
    serving = load_serving(cfg)
    full = load_audience(cfg, serving)
    ingest_dir = cfg.stage_dir("ingest")
    changed = changed_positions(
        full,
        since,
        previous,
        model=serving.models[rc.model],
        main=rc.model,
        k=rc.k,
        item_mask=serving.rules.item_mask,
        events=pl.scan_parquet(ingest_dir / "interactions.parquet"),
        update=current_update(cfg),
        progress=progress,
    )
    audience, variants, _ = _assign(cfg, full.take(changed.positions))
    assignments = _assign(cfg, full)[2]
    plan = _plan(serving, audience, variants)
    generated_at = utc_now()
    with StageRun(cfg, "recommend", sections=["recommend", "experiment"], inputs=serving.inputs) as run:
        fresh_path, fresh_short = run.dir / ".rescored.parquet", run.dir / ".rescored_short.parquet"
        stats = _write_lists(serving, plan, fresh_path, fresh_short, progress=progress)
        fresh = pl.read_parquet(fresh_path)
        rescored = pl.DataFrame({Columns.User: full.user_ids.gather(changed.positions)})
        everyone = pl.DataFrame({Columns.User: full.user_ids})

        def carried(frame: pl.DataFrame) -> pl.DataFrame:
            # previous rows of users neither re-scored nor gone from the inputs
            return frame.join(rescored, on=Columns.User, how="anti").join(everyone, on=Columns.User, how="semi")

        kept = carried(previous)
        merged = pl.concat([kept, fresh.cast(kept.schema)], how="vertical").sort(Columns.User, Columns.Rank)
        prev_short = prev_dir / SHORT_FILE
        short = pl.read_parquet(fresh_short)
        if prev_short.exists():
            short = pl.concat([carried(pl.read_parquet(prev_short)), short]).sort(Columns.User)
        fresh_path.unlink()
        fresh_short.unlink()
        short.write_parquet(run.dir / SHORT_FILE, compression="zstd")
        run.add_output(run.dir / SHORT_FILE, short.height)
        path = run.dir / RECOMMEND_FILE
        merged.write_parquet(path, compression="zstd")
        run.add_output(path, merged.height)
        frame = changed.frame(full.user_ids)
        frame.write_parquet(run.dir / CHANGED_USERS_FILE, compression="zstd")
        run.add_output(run.dir / CHANGED_USERS_FILE, frame.height)
        if assignments is not None:
            assignments.write_parquet(run.dir / ASSIGNMENTS_FILE, compression="zstd")
            run.add_output(run.dir / ASSIGNMENTS_FILE, assignments.height)
        lengths = merged.group_by(Columns.User).agg(pl.len().alias("n"))
        by_source = dict(merged.group_by(Columns.Source).agg(pl.len()).iter_rows())
        stats.n_short, stats.n_empty = short.height, int((short["n_items"] == 0).sum())
        summary = _summary(serving, _plan(serving, full, None), stats, run.dir / SHORT_FILE)
        summary.update(
            n_users=int(lengths.height),
            n_rows=merged.height,
            rows_by_source={name: int(n) for name, n in by_source.items()},
            n_holdout=int((assignments[Columns.Variant] == HOLDOUT).sum()) if assignments is not None else 0,
            generated_at=generated_at,
            users_requested=False,
            changed_since=since,
            n_rescored=len(audience),
            n_kept=int(kept[Columns.User].n_unique()),
            n_changed_with_events=changed.n_with_events,
            n_changed_by_new_items=changed.n_new_item_effect,
            n_new_customers=changed.n_new_customers,
            serving=UPDATE_STAGE if current_update(cfg) is not None else "train",
            previous_generated_at=prev_manifest.summary.get("generated_at"),
        )
        run.summary.update(summary)
    log.info("recommend --changed-since %s: %d users re-scored, %d kept", since, len(audience), kept.height)
    return run.manifest


# -- interactive answers -----------------------------------------------------------------
def _lookup_items(serving: Serving, item_ids: list[str], option: str) -> np.ndarray:
    ids = [str(i).strip() for i in item_ids if str(i).strip()]
    if not ids:
        raise DataError(f"{option}: no item ids given.")
    idx = serving.item_index(ids)
    missing = [i for i, j in zip(ids, idx, strict=True) if j < 0]
    if missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise DataError(
            f"{option}: unknown item id(s): {shown}. They are not in the catalogue of this run "
            f"({serving.data_dir / 'items.parquet'}); check the ids or re-run ingest/preprocess with the "
            "new catalogue."
        )
    return idx


def _answer_frame(serving: Serving, lists: Lists) -> pl.DataFrame:
    valid = lists.items[0] >= 0
    it = lists.items[0][valid]
    frame = pl.DataFrame(
        {
            Columns.Rank: np.arange(1, int(valid.sum()) + 1, dtype=np.int32),
            Columns.Item: serving.item_ids.gather(it),
            Columns.Score: lists.scores[0][valid].astype(np.float32),
            Columns.Source: pl.Series(lists.source_names, dtype=pl.String).gather(lists.sources[0][valid]),
        }
    )
    extra = [c for c in ("title", "category") if c in serving.items.columns]
    if extra:
        frame = frame.with_columns(serving.items[extra][it.tolist()].cast(pl.String))
    return frame


def recommend_for_items(
    cfg: Config, item_ids: list[str], k: int | None = None, *, serving: Serving | None = None
) -> pl.DataFrame:
    """Recommendations for an anonymous visitor known by a few item ids (session, basket).

    The visitor goes through the list builder like a user the models do not know, with the
    items as their history: each model of the chain (``recommend.model``, then
    ``recommend.fallback``) that recommends from items fills in turn; the given items and
    rule-excluded items are left out and the list rules apply.

    Parameters
    ----------
    cfg
        The experiment config.
    item_ids
        Item ids the visitor interacted with.
    k
        List length (default ``recommend.k``).
    serving
        Already loaded serving models (:func:`load_serving`), to answer many calls quickly.

    Returns
    -------
    polars.DataFrame
        ``rank, item_id, score, source`` (+ ``title``/``category`` when the catalogue has them).

    Raises
    ------
    DataError
        For unknown item ids (exit 4).
    ConfigError
        When no model in the chain can recommend from items.
    """
    serving = serving or load_serving(cfg, model_names=_chain_names(cfg))
    idx = _lookup_items(serving, item_ids, "--items")
    builder = serving.builder()
    if not any(m.supports_item_history for _, m in builder.chain):
        raise ConfigError(
            f"recommend: none of the models {builder.names} can recommend from a list of items; add a model "
            "with that capability (item_knn, content, lightfm or popularity) to recommend.fallback."
        )
    return _answer_frame(serving, builder.for_items(idx, k))


def similar_items(cfg: Config, item_id: str, k: int | None = None, *, serving: Serving | None = None) -> pl.DataFrame:
    """Items most similar to ``item_id`` ("customers also bought", "similar products").

    The first model of the chain (``recommend.model``, then ``recommend.fallback``) with
    ``supports_similar_items`` answers; later ones fill in. Item rules (out of stock, denied)
    are masked before the neighbours are selected, and the list rules (caps, MMR) apply.

    Parameters
    ----------
    cfg
        The experiment config.
    item_id
        The reference item.
    k
        List length (default ``recommend.k``).
    serving
        Already loaded serving models (:func:`load_serving`).

    Returns
    -------
    polars.DataFrame
        ``rank, item_id, score, source`` (+ ``title``/``category`` when present).

    Raises
    ------
    DataError
        For an unknown item id (exit 4).
    ConfigError
        When no model in the chain has item similarity.
    """
    serving = serving or load_serving(cfg, model_names=_chain_names(cfg))
    idx = _lookup_items(serving, [item_id], "--similar-to")
    builder = serving.builder()
    if not any(m.supports_similar_items for _, m in builder.chain):
        raise ConfigError(
            f"recommend: none of the models {builder.names} has item similarity; add an item_knn, content or "
            "lightfm model to recommend.fallback to answer --similar-to."
        )
    return _answer_frame(serving, builder.similar(idx, k))


def read_user_lists(cfg: Config, *, requested: bool = True) -> pl.DataFrame:
    """Read the lists written by :func:`run_recommend` (``requested``: the ``--users`` run)."""
    stage = "recommend-users" if requested else "recommend"
    stage_dir, _ = require_stage(cfg, stage, [RECOMMEND_FILE])
    return pl.read_parquet(stage_dir / RECOMMEND_FILE)


def as_records(frame: pl.DataFrame) -> list[dict[str, Any]]:
    """Rows of a result frame as plain dicts (scores rounded for display and JSON)."""
    if Columns.Score in frame.columns:
        frame = frame.with_columns(pl.col(Columns.Score).cast(pl.Float64).round(6))
    return frame.to_dicts()
