"""Build the serving bundle (:mod:`recctl.serving`) from the recommend stage's lists.

Called by ``serve-export`` after the nightly file is published; writes into the export
stage's staging directory, so the bundle is swapped in together with the export manifest.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from recctl.artifacts import library_versions
from recctl.columns import Columns
from recctl.config import Config
from recctl.ranking import select_top_k
from recctl.serving import write_bundle
from recctl.stages.recommend import HOLDOUT, ServingContext, cold_user_scores, load_context

__all__ = ["NEIGHBORS_PER_ITEM", "build_bundle"]

log = logging.getLogger(__name__)

#: similar items kept per item in the bundle
NEIGHBORS_PER_ITEM = 20


def _list_arrays(
    ctx: ServingContext, recs: pl.DataFrame, k: int
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, list[str]]:
    users = recs[Columns.User].unique(maintain_order=True)
    sources = sorted(recs[Columns.Source].unique().to_list())
    rows = pl.DataFrame({Columns.User: users, "__row": np.arange(len(users))})
    items = pl.DataFrame({Columns.Item: ctx.item_ids.astype(str), "__item": np.arange(ctx.n_items)})
    codes = pl.DataFrame({Columns.Source: sources, "__src": np.arange(len(sources), dtype=np.int8)})
    joined = recs.join(rows, on=Columns.User).join(items, on=Columns.Item).join(codes, on=Columns.Source)
    r = joined["__row"].to_numpy()
    c = joined[Columns.Rank].to_numpy().astype(np.int64) - 1
    user_items = np.full((len(users), k), -1, np.int32)
    user_scores = np.full((len(users), k), -np.inf, np.float32)
    user_sources = np.zeros((len(users), k), np.int8)
    ok = (c >= 0) & (c < k)
    user_items[r[ok], c[ok]] = joined["__item"].to_numpy()[ok]
    user_scores[r[ok], c[ok]] = joined[Columns.Score].to_numpy()[ok]
    user_sources[r[ok], c[ok]] = joined["__src"].to_numpy()[ok]
    return users.to_list(), user_items, user_scores, user_sources, sources


def _fallback_list(ctx: ServingContext, length: int) -> tuple[np.ndarray, np.ndarray, str | None]:
    # the first model of the chain that scores a user with no history (popularity, usually)
    for name in [*ctx.rc.fallback, ctx.rc.model]:
        s = cold_user_scores(ctx, name)
        if s is None:
            continue
        items, scores = select_top_k(s, min(length, ctx.n_items))
        keep = items[0] >= 0
        return items[0][keep], scores[0][keep], name
    return np.empty(0, np.int64), np.empty(0, np.float32), None


def _neighbors(ctx: ServingContext, length: int) -> tuple[tuple[np.ndarray, np.ndarray] | None, str | None]:
    for name in [ctx.rc.model, *ctx.rc.fallback]:
        model = ctx.models[name]
        if not model.supports_similar_items:
            continue
        n_masked = 0 if ctx.rules.item_mask is None else int((~ctx.rules.item_mask).sum())
        top = model.similar_items(np.arange(ctx.n_items), min(ctx.n_items, length + n_masked))
        items, scores = top.items.copy(), top.scores.copy()
        if ctx.rules.item_mask is not None:
            drop = (items >= 0) & ~ctx.rules.item_mask[np.where(items >= 0, items, 0)]
            items[drop], scores[drop] = -1, -np.inf
        # move the surviving neighbours to the front of each row, best first
        order = np.argsort(items < 0, axis=1, kind="stable")[:, :length]
        return (np.take_along_axis(items, order, axis=1), np.take_along_axis(scores, order, axis=1)), name
    return None, None


def _metrics(cfg: Config, name: str) -> dict[str, Any] | None:
    path = cfg.stage_dir("evaluate") / "metrics.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data.get("models", {}).get(name, {}).get("mean")
    except (OSError, ValueError, AttributeError):
        return None


def build_bundle(
    cfg: Config, recs: pl.DataFrame, directory: Path, *, assignments: pl.DataFrame | None, generated_at: str
) -> dict[str, Any]:
    """Write the serving bundle for the lists in ``recs`` into ``directory``.

    Parameters
    ----------
    cfg
        The experiment config.
    recs
        ``recommendations.parquet`` of the recommend stage.
    directory
        Target directory (inside the export stage's staging directory).
    assignments
        A/B assignments (holdout users get no list), or ``None``.
    generated_at
        When the lists were computed.

    Returns
    -------
    dict
        Summary for the stage manifest: file hashes, sizes, which models fill the gaps.
    """
    ctx = load_context(cfg, with_exclusions=False)
    k = ctx.rc.k
    users, user_items, user_scores, user_sources, sources = _list_arrays(ctx, recs, k)
    fb_items, fb_scores, fb_model = _fallback_list(ctx, max(200, 5 * k))
    neighbors, nb_model = _neighbors(ctx, max(NEIGHBORS_PER_ITEM, k))
    seen = None
    if ctx.rc.exclude_seen:
        from recctl.rules import build_exclusions

        excl = build_exclusions(ctx.rc.rules, ctx.preprocess_dir, ctx.n_users, ctx.n_items)
        rows = ctx.user_index(users)
        # rows of users the models do not know (none in the nightly run) stay empty
        import scipy.sparse as sp

        keep = sp.diags((rows >= 0).astype(np.int8), dtype=np.int8)
        sub = sp.csr_matrix(keep @ excl[np.where(rows >= 0, rows, 0)])
        sub.eliminate_zeros()
        seen = (sub.indptr, sub.indices)
    holdout = []
    if assignments is not None:
        holdout = assignments.filter(pl.col(Columns.Variant) == HOLDOUT)[Columns.User].to_list()
    main = ctx.models[ctx.rc.model]
    card = {
        "model": ctx.rc.model,
        "kind": main.kind,
        "params": main.get_config(),
        "fallback": list(ctx.rc.fallback),
        "fallback_from": fb_model,
        "neighbors_from": nb_model,
        "generated_at": generated_at,
        "experiment": cfg.experiment.name if cfg.experiment is not None else None,
        "metrics": _metrics(cfg, ctx.rc.model),
        "versions": library_versions(),
        "n_users": len(users),
        "n_items": ctx.n_items,
    }
    files = write_bundle(
        directory,
        user_ids=users,
        item_ids=list(ctx.item_ids.astype(str)),
        user_items=user_items,
        user_scores=user_scores,
        user_sources=user_sources,
        sources=sources,
        fallback_items=fb_items,
        fallback_scores=fb_scores,
        neighbors=neighbors,
        holdout=holdout,
        card=card,
        seen=seen,
    )
    log.info("serving bundle: %d users, %d items, neighbours from %s", len(users), ctx.n_items, nb_model)
    return {"files": files, "n_users": len(users), "fallback_from": fb_model, "neighbors_from": nb_model}
