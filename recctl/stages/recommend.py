"""The ``recommend`` stage: exactly K items for every user, with business rules and fallbacks.

Flow for all users (the nightly run):

1. load the preprocess id maps and catalogue, the trained models named in ``recommend``
   (main model, fallback chain, and the A/B variants' models when ``experiment`` is set);
2. resolve the rules (:mod:`recctl.rules`): an item mask, the per-user exclusions (the full
   known history, train *and* test events, or only the events in ``exclude_events``), caps;
3. stream users through the shared top-K kernel block by block (all cores), apply list
   rules, backfill short lists from the fallback chain, and append each block to
   ``recommendations.parquet`` (pyarrow ``ParquetWriter`` in the staging directory), so
   memory is bounded by the block size, not by the number of users;
4. users the models do not know (``--users`` with a new id) get the fallback chain's
   anonymous list (models with ``supports_cold_users``).

Output ``<workdir>/recommend/recommendations.parquet``: ``user_id, rank, item_id, score,
model, source`` (+ ``variant`` under an experiment, + ``assignments.parquet``), ordered by
user (the order of ``users.parquet``) then rank. ``recommend --users`` writes to
``<workdir>/recommend-users/`` instead, so an ad-hoc look never replaces the nightly lists.

The interactive helpers :func:`recommend_for_items` (anonymous visitor: a few item ids) and
:func:`similar_items` ("customers also bought") answer from the models directly.
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
from recctl.data.dataset import IdIndex
from recctl.errors import ConfigError, DataError
from recctl.progress import Progress, report
from recctl.ranking import TopK, iter_top_k, select_top_k
from recctl.rules import ItemRules, apply_list_rules, backfill, build_exclusions, build_item_rules, candidate_count
from recctl.stages._common import StageRun, require_stage

__all__ = [
    "ASSIGNMENTS_FILE",
    "HOLDOUT",
    "RECOMMEND_FILE",
    "ServingContext",
    "cold_user_scores",
    "as_records",
    "load_context",
    "read_user_lists",
    "recommend_for_items",
    "recommendation_schema",
    "run_recommend",
    "similar_items",
]

log = logging.getLogger(__name__)

RECOMMEND_FILE = "recommendations.parquet"
ASSIGNMENTS_FILE = "assignments.parquet"
HOLDOUT = "holdout"
#: rows buffered before a Parquet row group is written
_ROW_GROUP_ROWS = 256_000


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


def recommend_section(cfg: Config) -> RecommendConfig:
    """The ``recommend`` section, or a ConfigError saying how to add it."""
    if cfg.recommend is None:
        raise ConfigError(
            f"{cfg.source_path or 'config'}: recommend: section missing; add e.g. "
            "`recommend: {model: <a model in models>, k: 10, fallback: [popular]}`."
        )
    return cfg.recommend


@dataclass
class ServingContext(IdIndex):
    """Everything the recommend paths load once: ids, catalogue, rules, models.

    Attributes
    ----------
    user_ids, item_ids
        Object arrays mapping indices to the shop's ids.
    items
        The catalogue (``items.parquet``).
    exclusions
        (n_users x n_items) items each user must not get, or ``None``.
    rules
        Item rules resolved against the catalogue.
    models
        Loaded models by name (main, fallback chain, A/B variants).
    inputs
        Files read (for the stage manifest).
    """

    cfg: Config
    rc: RecommendConfig
    preprocess_dir: Path
    user_ids: np.ndarray
    item_ids: np.ndarray
    items: pl.DataFrame
    exclusions: sp.csr_matrix | None
    rules: ItemRules
    models: dict[str, Any]
    inputs: list[Path] = field(default_factory=list)
    _user_lookup: dict[str, int] | None = None
    _item_lookup: dict[str, int] | None = None

    def model_names(self) -> list[str]:
        """Main model, then the A/B variants' models, then the fallback chain (no repeats)."""
        names = [self.rc.model]
        if self.cfg.experiment is not None:
            names += [v.model for v in self.cfg.experiment.variants.values()]
        names += list(self.rc.fallback)
        return list(dict.fromkeys(names))


def load_context(cfg: Config, *, with_exclusions: bool = True, model_names: list[str] | None = None) -> ServingContext:
    """Load ids, catalogue, rules and models for recommending.

    Parameters
    ----------
    cfg
        The experiment config (needs a ``recommend`` section).
    with_exclusions
        Build the per-user exclusion matrix (not needed for item-based answers).
    model_names
        Models to load (default: main, variants and fallbacks).

    Raises
    ------
    ConfigError, ArtifactError
        Missing config section, upstream stage or model.
    """
    from recctl.incremental.current import load_serving_model, serving_source

    rc = recommend_section(cfg)
    # preprocess + train, or the current `recctl update` (grown id maps + updated models)
    source = serving_source(cfg)
    pre_dir, train_dir = source.data_dir, source.models_dir
    users = pl.read_parquet(pre_dir / "users.parquet").sort(Columns.UserIdx)
    items = pl.read_parquet(pre_dir / "items.parquet").sort(Columns.ItemIdx)
    inputs = [pre_dir / "users.parquet", pre_dir / "items.parquet"]
    item_features = None
    if rc.rules.diversity_lambda > 0 and not rc.rules.diversity_column and (pre_dir / "item_features.npz").exists():
        item_features = sp.load_npz(pre_dir / "item_features.npz").tocsr()
        inputs.append(pre_dir / "item_features.npz")
    rules = build_item_rules(rc.rules, items, resolve=cfg.resolve, item_features=item_features)
    for key in ("allow_list", "deny_list"):
        value = getattr(rc.rules, key)
        if value:
            inputs.append(cfg.resolve(value))
    exclusions = None
    if with_exclusions and rc.exclude_seen:
        exclusions = build_exclusions(rc.rules, pre_dir, users.height, items.height, exclude_seen=rc.exclude_seen)
        history = ["events"] if rc.rules.exclude_events else ["train", "test"]
        inputs += [pre_dir / f"{name}.parquet" for name in history]
    ctx = ServingContext(
        cfg=cfg,
        rc=rc,
        preprocess_dir=pre_dir,
        user_ids=users[Columns.User].cast(pl.String).to_numpy().astype(object),
        item_ids=items[Columns.Item].cast(pl.String).to_numpy().astype(object),
        items=items,
        exclusions=exclusions,
        rules=rules,
        models={},
        inputs=inputs,
    )
    for name in model_names or ctx.model_names():
        model = load_serving_model(cfg, name, source)
        if model.n_items != ctx.n_items or model.n_users != ctx.n_users:
            from recctl.errors import ArtifactError

            raise ArtifactError(
                f"{train_dir / (name + '.pkl')}: model '{name}' was trained on {model.n_users} users x "
                f"{model.n_items} items but preprocess now has {ctx.n_users} x {ctx.n_items}; re-run "
                f"`recctl train {cfg.source_path or 'CONFIG'}`."
            )
        ctx.models[name] = model
        ctx.inputs.append(source.model_file(name))
    return ctx


# -- building lists ----------------------------------------------------------------------
@dataclass
class ListBlock:
    """Finished lists for a block of users (index space), ``-1`` padded."""

    users: np.ndarray  # user indices, -1 for unknown users
    user_ids: np.ndarray
    items: np.ndarray
    scores: np.ndarray
    sources: np.ndarray  # int codes into the caller's source names
    models: np.ndarray  # int codes: which model produced the list
    variants: np.ndarray | None = None


def _finish_block(
    ctx: ServingContext, top: TopK, k: int, sources: list[str], fallback_codes: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """List rules then backfill from the fallback chain; returns (items, scores, source codes)."""
    cand_items, cand_scores = top.items, top.scores
    if ctx.rc.min_score is not None:
        # "no evidence" scores (e.g. 0 from item-kNN) leave the slot to the fallback chain
        weak = cand_scores <= ctx.rc.min_score
        cand_items, cand_scores = np.where(weak, -1, cand_items), np.where(weak, -np.inf, cand_scores)
    items, scores = apply_list_rules(cand_items, cand_scores, k, ctx.rules)
    src = np.zeros(items.shape, np.int16)
    short = np.flatnonzero((items >= 0).sum(axis=1) < k)
    n_cand = candidate_count(ctx.rc.rules, k, ctx.n_items) + k
    for name, code in zip(ctx.rc.fallback, fallback_codes, strict=True):
        if not len(short):
            break
        fb = ctx.models[name]
        cand = fb.recommend(
            top.users[short], min(n_cand, ctx.n_items), exclude=ctx.exclusions, item_mask=ctx.rules.item_mask, n_jobs=1
        )
        backfill(items, scores, src, short, cand.items, cand.scores, code, ctx.rules)
        short = short[(items[short] >= 0).sum(axis=1) < k]
    return items, scores, src


def cold_user_scores(ctx: ServingContext, name: str) -> np.ndarray | None:
    """Model ``name``'s ``(1, n_items)`` scores for a user with no history, allow-list applied; None if it cannot."""
    model = ctx.models[name]
    if not (model.supports_cold_users and model.supports_item_history):
        return None
    scores = np.asarray(model.score_from_items(np.empty(0, np.int64)), np.float32).reshape(1, -1).copy()
    if ctx.rules.item_mask is not None:
        scores[:, ~ctx.rules.item_mask] = -np.inf
    return scores


def _anonymous_list(
    ctx: ServingContext, k: int, fallback_codes: list[int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One list for users no model knows: the fallback chain's cold-user scores."""
    items = np.full((1, k), -1, np.int64)
    scores = np.full((1, k), -np.inf, np.float32)
    src = np.zeros((1, k), np.int16)
    n_cand = candidate_count(ctx.rc.rules, k, ctx.n_items)
    for name, code in zip(ctx.rc.fallback, fallback_codes, strict=True):
        s = cold_user_scores(ctx, name)
        if s is None:
            continue
        c_items, c_scores = select_top_k(s, n_cand)
        c_items, c_scores = apply_list_rules(c_items, c_scores, n_cand, ctx.rules)
        backfill(items, scores, src, np.array([0]), c_items, c_scores, code, ctx.rules)
        if (items >= 0).all():
            break
    return items, scores, src


def _composite_score(ctx: ServingContext, variant_of_user: np.ndarray, variant_models: list[str]):  # noqa: ANN202
    """Score function that scores each user with their A/B variant's model."""
    models = [ctx.models[name] for name in variant_models]

    def score(users: np.ndarray) -> np.ndarray:
        out = np.empty((len(users), ctx.n_items), np.float32)
        codes = variant_of_user[users]
        for code, model in enumerate(models):
            sel = np.flatnonzero(codes == code)
            if len(sel):
                out[sel] = model.score(users[sel])
        return out

    return score


def iter_list_blocks(
    ctx: ServingContext,
    user_ids: np.ndarray,
    *,
    variants: np.ndarray | None = None,
    progress: Progress | None = None,
) -> Iterator[tuple[ListBlock, list[str], list[str]]]:
    """Yield finished list blocks for ``user_ids`` (known users in order, then unknown ones).

    Parameters
    ----------
    ctx
        Loaded serving context.
    user_ids
        Users to recommend for (holdout users already removed).
    variants
        Variant name per user under an A/B experiment, else ``None``.
    progress
        ``progress(task, done, total)``.

    Yields
    ------
    (ListBlock, source_names, model_names)
        ``ListBlock.sources`` / ``.models`` are codes into these lists.
    """
    rc = ctx.rc
    k = rc.k
    idx = ctx.user_index(user_ids)
    known = np.flatnonzero(idx >= 0)
    unknown = np.flatnonzero(idx < 0)
    exp = ctx.cfg.experiment
    primary = [exp.variants[v].model for v in exp.variants] if exp is not None and variants is not None else [rc.model]
    primary = list(dict.fromkeys(primary))
    sources = list(dict.fromkeys(primary + list(rc.fallback)))
    fallback_codes = [sources.index(name) for name in rc.fallback]
    n_cand = candidate_count(rc.rules, k, ctx.n_items)
    total = len(user_ids)
    kwargs = {
        "exclude": ctx.exclusions,
        "item_mask": ctx.rules.item_mask,
        "batch_size": rc.batch_size,
        "n_jobs": rc.n_jobs,
        "max_block_bytes": int(rc.max_block_mb * 2**20),
    }
    done = 0
    if len(known):
        pos_of = known  # positions into user_ids, in order
        kidx = idx[known]
        if variants is not None and exp is not None:
            vmodel = np.array([exp.variants[v].model for v in variants[known]], dtype=object)
            code_of_model = {name: i for i, name in enumerate(primary)}
            variant_of_user = np.full(ctx.n_users, -1, np.int16)
            variant_of_user[kidx] = [code_of_model[m] for m in vmodel]
            score = _composite_score(ctx, variant_of_user, primary)
            blocks = iter_top_k(score, kidx, n_cand, n_items=ctx.n_items, **kwargs)
        else:
            variant_of_user = None
            blocks = ctx.models[rc.model].iter_recommend(kidx, n_cand, **kwargs)
        start = 0
        for top in blocks:
            items, scores, src = _finish_block(ctx, top, k, sources, fallback_codes)
            if variant_of_user is not None:
                model_codes = variant_of_user[top.users].astype(np.int16)
                src = np.where(src == 0, model_codes[:, None], src).astype(np.int16)
            else:
                model_codes = np.zeros(len(top), np.int16)
            pos = pos_of[start : start + len(top)]
            start += len(top)
            done += len(top)
            report(progress, "recommend", done, total)
            yield (
                ListBlock(
                    users=top.users,
                    user_ids=np.asarray(user_ids, dtype=object)[pos],
                    items=items,
                    scores=scores,
                    sources=src,
                    models=model_codes,
                    variants=None if variants is None else variants[pos],
                ),
                sources,
                primary,
            )
    if len(unknown):
        items, scores, src = _anonymous_list(ctx, k, fallback_codes)
        n = len(unknown)
        done += n
        report(progress, "recommend", done, total)
        log.info("%d user(s) unknown to the models get the fallback chain's list", n)
        yield (
            ListBlock(
                users=np.full(n, -1, np.int64),
                user_ids=np.asarray(user_ids, dtype=object)[unknown],
                items=np.repeat(items, n, axis=0),
                scores=np.repeat(scores, n, axis=0),
                sources=np.repeat(src, n, axis=0),
                models=np.zeros(n, np.int16),
                variants=None if variants is None else variants[unknown],
            ),
            sources,
            primary,
        )


def block_to_table(block: ListBlock, ctx: ServingContext, sources: list[str], models: list[str]) -> pa.Table:
    """Turn a list block into long rows (one per user and rank), padding dropped."""
    n, k = block.items.shape
    valid = block.items >= 0
    rows, ranks = np.nonzero(valid)
    item_idx = block.items[rows, ranks]
    data = {
        Columns.User: pa.array(block.user_ids[rows].astype(str), pa.string()),
        Columns.Rank: pa.array((ranks + 1).astype(np.int32)),
        Columns.Item: pa.array(ctx.item_ids[item_idx].astype(str), pa.string()),
        Columns.Score: pa.array(block.scores[rows, ranks].astype(np.float32)),
        Columns.Model: pa.array(np.asarray(models, dtype=object)[block.models[rows]].astype(str), pa.string()),
        Columns.Source: pa.array(
            np.asarray(sources, dtype=object)[block.sources[rows, ranks]].astype(str), pa.string()
        ),
    }
    if block.variants is not None:
        data[Columns.Variant] = pa.array(np.asarray(block.variants, dtype=object)[rows].astype(str), pa.string())
    return pa.table(data, schema=recommendation_schema(block.variants is not None))


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


def run_recommend(
    cfg: Config, *, users: list[str] | None = None, changed_since: str | None = None, progress: Progress | None = None
) -> Manifest:
    """Write top-K lists for every user (or ``users``) with rules and fallbacks applied.

    Parameters
    ----------
    cfg
        The experiment config (``recommend`` section required).
    users
        Only these user ids (unknown ids get the fallback list). The result then goes to
        ``<workdir>/recommend-users/`` so the nightly ``recommend/`` output is kept.
    changed_since
        ``last-update`` or an ISO time: re-score only the users whose lists can have changed
        since (new events, new items) and keep the others' rows from the previous run
        (:func:`recctl.incremental.changes.recommend_changed`).
    progress
        ``progress(task, done, total)``.

    Returns
    -------
    Manifest
        ``summary`` holds ``k``, ``n_users``, ``n_rows``, ``n_short_lists``, rows per
        ``source``, rule exclusion counts and ``generated_at``.

    Raises
    ------
    ConfigError, ArtifactError, DataError
    """
    if changed_since is not None:
        from recctl.incremental.changes import recommend_changed

        return recommend_changed(cfg, changed_since, progress=progress)
    rc = recommend_section(cfg)
    ctx = load_context(cfg)
    if users is not None:
        user_ids = np.array([str(u).strip() for u in users if str(u).strip()], dtype=object)
        if not len(user_ids):
            raise DataError("--users: no user ids given; pass e.g. --users u1,u2")
    else:
        user_ids = ctx.user_ids
    variants = None
    assignments = None
    if cfg.experiment is not None:
        from recctl.abtest.assign import assign_variants

        assigned = np.asarray(assign_variants(list(user_ids), cfg.experiment), dtype=object)
        assignments = pl.DataFrame({Columns.User: user_ids.astype(str), Columns.Variant: assigned.astype(str)})
        keep = assigned != HOLDOUT
        user_ids, variants = user_ids[keep], assigned[keep]
    stage = "recommend" if users is None else "recommend-users"
    generated_at = utc_now()
    with StageRun(cfg, stage, sections=["recommend", "experiment"], inputs=ctx.inputs) as run:
        path = run.dir / RECOMMEND_FILE
        writer = _StreamWriter(path, recommendation_schema(variants is not None))
        n_short = 0
        by_source: dict[str, int] = {}
        try:
            for block, sources, models in iter_list_blocks(ctx, user_ids, variants=variants, progress=progress):
                lengths = (block.items >= 0).sum(axis=1)
                n_short += int((lengths < rc.k).sum())
                valid = block.items >= 0
                codes, counts = np.unique(block.sources[valid], return_counts=True)
                for c, cnt in zip(codes, counts, strict=True):
                    by_source[sources[c]] = by_source.get(sources[c], 0) + int(cnt)
                writer.write(block_to_table(block, ctx, sources, models))
        finally:
            writer.close()
        run.add_output(path, writer.rows)
        if assignments is not None:
            write = run.dir / ASSIGNMENTS_FILE
            assignments.write_parquet(write, compression="zstd")
            run.add_output(write, assignments.height)
        if n_short:
            log.warning(
                "%d user(s) got fewer than %d items: the rules leave too few eligible items and the "
                "fallback chain (%s) could not fill them",
                n_short,
                rc.k,
                ", ".join(rc.fallback) or "empty",
            )
        run.summary.update(
            k=rc.k,
            model=rc.model,
            fallback=list(rc.fallback),
            n_users=int(len(user_ids)),
            n_rows=writer.rows,
            n_short_lists=n_short,
            rows_by_source=by_source,
            rule_exclusions=ctx.rules.excluded,
            n_eligible_items=int(ctx.rules.item_mask.sum()) if ctx.rules.item_mask is not None else ctx.n_items,
            exclusions="none"
            if ctx.exclusions is None
            else (f"events {rc.rules.exclude_events}" if rc.rules.exclude_events else "all train+test interactions"),
            n_holdout=int((assignments[Columns.Variant] == HOLDOUT).sum()) if assignments is not None else 0,
            generated_at=generated_at,
            users_requested=users is not None,
        )
    return run.manifest


# -- interactive answers -----------------------------------------------------------------
def _lookup_items(ctx: ServingContext, item_ids: list[str], option: str) -> np.ndarray:
    ids = [str(i).strip() for i in item_ids if str(i).strip()]
    if not ids:
        raise DataError(f"{option}: no item ids given.")
    idx = ctx.item_index(ids)
    missing = [i for i, j in zip(ids, idx, strict=True) if j < 0]
    if missing:
        shown = ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else "")
        raise DataError(
            f"{option}: unknown item id(s): {shown}. They are not in the catalogue of this run "
            f"({ctx.preprocess_dir / 'items.parquet'}); check the ids or re-run ingest/preprocess with the "
            "new catalogue."
        )
    return idx


def _answer_frame(
    ctx: ServingContext, items: np.ndarray, scores: np.ndarray, src: np.ndarray, sources: list[str]
) -> pl.DataFrame:
    valid = items[0] >= 0
    it = items[0][valid]
    frame = pl.DataFrame(
        {
            Columns.Rank: np.arange(1, int(valid.sum()) + 1, dtype=np.int32),
            Columns.Item: ctx.item_ids[it].astype(str),
            Columns.Score: scores[0][valid].astype(np.float32),
            Columns.Source: np.asarray(sources, dtype=object)[src[0][valid]].astype(str),
        }
    )
    extra = [c for c in ("title", "category") if c in ctx.items.columns]
    if extra:
        frame = frame.with_columns(ctx.items.sort(Columns.ItemIdx)[extra][it.tolist()].cast(pl.String))
    return frame


def _chain(ctx: ServingContext) -> list[str]:
    return [ctx.rc.model, *ctx.rc.fallback]


def recommend_for_items(cfg: Config, item_ids: list[str], k: int | None = None) -> pl.DataFrame:
    """Recommendations for an anonymous visitor known by a few item ids (session, basket).

    Each model of the chain (``recommend.model``, then ``recommend.fallback``) that can score
    from a list of items (``supports_item_history``) fills the list in turn; the given items
    themselves and rule-excluded items are left out.

    Parameters
    ----------
    cfg
        The experiment config.
    item_ids
        Item ids the visitor interacted with.
    k
        List length (default ``recommend.k``).

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
    ctx = load_context(cfg, with_exclusions=False, model_names=_chain_names(cfg))
    k = k or ctx.rc.k
    idx = _lookup_items(ctx, item_ids, "--items")
    chain = [n for n in _chain(ctx) if ctx.models[n].supports_item_history]
    if not chain:
        raise ConfigError(
            f"recommend: none of the models {_chain(ctx)} can recommend from a list of items; add a model "
            "with that capability (item_knn, content, lightfm or popularity) to recommend.fallback."
        )
    items = np.full((1, k), -1, np.int64)
    scores = np.full((1, k), -np.inf, np.float32)
    src = np.zeros((1, k), np.int16)
    n_cand = candidate_count(ctx.rc.rules, k, ctx.n_items) + len(idx)
    for code, name in enumerate(chain):
        s = np.asarray(ctx.models[name].score_from_items(idx), np.float32).reshape(1, -1).copy()
        s[:, idx] = -np.inf
        if ctx.rules.item_mask is not None:
            s[:, ~ctx.rules.item_mask] = -np.inf
        c_items, c_scores = select_top_k(s, min(n_cand, ctx.n_items))
        if code == 0:
            c_items, c_scores = apply_list_rules(c_items, c_scores, min(n_cand, ctx.n_items), ctx.rules)
        backfill(items, scores, src, np.array([0]), c_items, c_scores, code, ctx.rules)
        if (items >= 0).all():
            break
    return _answer_frame(ctx, items, scores, src, chain)


def similar_items(cfg: Config, item_id: str, k: int | None = None) -> pl.DataFrame:
    """Items most similar to ``item_id`` ("customers also bought", "similar products").

    The first model of the chain (``recommend.model``, then ``recommend.fallback``) with
    ``supports_similar_items`` answers; later ones backfill. Rule-excluded items (out of
    stock, denied) are left out, and category caps apply.

    Parameters
    ----------
    cfg
        The experiment config.
    item_id
        The reference item.
    k
        List length (default ``recommend.k``).

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
    ctx = load_context(cfg, with_exclusions=False, model_names=_chain_names(cfg))
    k = k or ctx.rc.k
    idx = _lookup_items(ctx, [item_id], "--similar-to")
    chain = [n for n in _chain(ctx) if ctx.models[n].supports_similar_items]
    if not chain:
        raise ConfigError(
            f"recommend: none of the models {_chain(ctx)} has item similarity; add an item_knn, content or "
            "lightfm model to recommend.fallback to answer --similar-to."
        )
    items = np.full((1, k), -1, np.int64)
    scores = np.full((1, k), -np.inf, np.float32)
    src = np.zeros((1, k), np.int16)
    n_masked = 0 if ctx.rules.item_mask is None else int((~ctx.rules.item_mask).sum())
    n_cand = min(ctx.n_items, candidate_count(ctx.rc.rules, k, ctx.n_items) + n_masked + 1)
    for code, name in enumerate(chain):
        top = ctx.models[name].similar_items(idx, n_cand)
        c_items, c_scores = top.items.copy(), top.scores.copy()
        if ctx.rules.item_mask is not None:
            drop = (c_items >= 0) & ~ctx.rules.item_mask[np.where(c_items >= 0, c_items, 0)]
            c_items[drop], c_scores[drop] = -1, -np.inf
        c_items, c_scores = apply_list_rules(c_items, c_scores, c_items.shape[1], ctx.rules)
        backfill(items, scores, src, np.array([0]), c_items, c_scores, code, ctx.rules)
        if (items >= 0).all():
            break
    return _answer_frame(ctx, items, scores, src, chain)


def _chain_names(cfg: Config) -> list[str]:
    rc = recommend_section(cfg)
    return list(dict.fromkeys([rc.model, *rc.fallback]))


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
