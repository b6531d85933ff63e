"""Build the serving bundle (:mod:`recctl.serving`) from the recommend stage's lists.

Called by ``serve-export`` before the nightly file is published; writes into the export
stage's staging directory, so the bundle is swapped in together with the export manifest.
Every array comes from the one list builder (:mod:`recctl.lists`): the nightly lists as
exported, the no-history scores of the chain's cold models, the similar-item lists.
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
from recctl.data.positions import IdPositions
from recctl.lists import ListBuilder, Lists
from recctl.lists.audience import Audience
from recctl.lists.live import LiveState, export_live
from recctl.models.neighbors import stored_rows_rank
from recctl.serving import DerivedNeighbors, write_bundle
from recctl.stages.recommend import Serving

__all__ = [
    "NEIGHBORS_PER_ITEM",
    "build_bundle",
    "derived_neighbors",
    "item_neighbors",
    "lists_from_frame",
    "live_states",
    "similar_lists",
]

log = logging.getLogger(__name__)

#: raw similar items kept per item in the bundle (for visitors' baskets)
NEIGHBORS_PER_ITEM = 20


def lists_from_frame(recs: pl.DataFrame, user_ids: pl.Series, item_ids: pl.Series, k: int, sources: list[str]) -> Lists:
    """Long rows (``user_id, rank, item_id, score, source``) as ``(n_users, k)`` lists aligned with ``user_ids``.

    Ids are found with :class:`~recctl.data.positions.IdPositions` (as text, never converted to
    numpy strings); users once per run of equal ids (the file holds each user's rows together),
    and not at all when the runs are exactly ``user_ids`` in order (``recommendations.parquet``
    as written for the whole audience). Rows of unknown users, items or sources, or with a rank
    outside ``1..k``, are dropped.
    """
    row = _user_rows(recs[Columns.User], user_ids)
    items = IdPositions(item_ids)
    item_code = items.lookup(recs[Columns.Item], dtype=items.narrow_dtype)
    source_code = IdPositions(sources).lookup(recs[Columns.Source], dtype=np.int8)
    col = recs[Columns.Rank].to_numpy() - 1
    scores = recs[Columns.Score].to_numpy()
    out = Lists.empty(len(user_ids), k, sources)
    # one flat position per row, values put straight from polars' buffers: few fresh copies
    flat = row.astype(np.int64) * k + col
    ok = (col >= 0) & (col < k) & (row >= 0) & (item_code >= 0) & (source_code >= 0)
    if not ok.all():
        flat, item_code, scores, source_code = flat[ok], item_code[ok], scores[ok], source_code[ok]
    np.put(out.items, flat, item_code)
    np.put(out.scores, flat, scores)
    np.put(out.sources, flat, source_code)
    return out


def _user_rows(wanted: pl.Series, user_ids: pl.Series) -> np.ndarray:
    """The position in ``user_ids`` of each row's user (``-1`` when unknown), one look-up per run of equal ids."""
    run = wanted.rle_id()
    first = wanted.filter(run.is_first_distinct())
    same = len(first) == len(user_ids) and bool(
        (first.cast(pl.String) == user_ids.cast(pl.String)).fill_null(False).all()
    )
    if same:
        return run.to_numpy()  # every user, in order: a run's number is its position
    return IdPositions(user_ids).lookup(first, dtype=np.int64)[run.to_numpy()]


def item_neighbors(
    builder: ListBuilder, length: int, n_jobs: int
) -> tuple[tuple[np.ndarray, np.ndarray] | None, str | None]:
    """Each item's ``length`` most similar *allowed* items from the chain's first model with similarity.

    The item rules are masked before selection (asking for ``length`` gives ``length`` allowed
    items): the former way asked every item for ``length`` + the number of masked items and
    dropped masked ones afterwards, which costs far more when many items are out of stock.
    """
    for name, model in builder.chain:
        if model.supports_similar_items:
            top = model.similar_items(
                np.arange(builder.n_items), min(builder.n_items, length), item_mask=builder.item_mask, n_jobs=n_jobs
            )
            return (top.items, top.scores), name
    return None, None


def derived_neighbors(builder: ListBuilder, live: dict[str, LiveState], length: int, k: int) -> DerivedNeighbors | None:
    """The neighbour table as a reference to a live similarity the bundle holds anyway, or ``None``.

    When the chain's first model with item similarity keeps a stored top-N similarity (item-kNN,
    RP3beta: :meth:`recctl.models.base.Recommender.stored_similarity`, whose rows its
    ``similar_items`` reads with :func:`recctl.models.neighbors.stored_neighbors`) and that
    similarity is in ``live``, the table is those rows' masked top-``length``: ``load`` derives
    it, and it is neither computed nor written here. The similar-item lists are then its first
    ``k`` columns when no list rule re-ranks them and every item has ``k`` allowed neighbours
    (or no other model could fill a shorter list): what :func:`similar_lists` would return.
    """
    capable = [(name, m) for name, m in builder.chain if m.supports_similar_items]
    if not capable:
        return None
    name, model = capable[0]
    state = live.get(name)
    sim = model.stored_similarity()
    if (
        state is None
        or state.kind != "similarity"
        or sim is None
        or sim.dtype != np.float32
        or not stored_rows_rank(state.arrays["sim_data"])
    ):
        return None
    allowed = builder.n_items if builder.item_mask is None else int(builder.item_mask.sum())
    head = not builder.rules.reranks and length >= k and (allowed - 1 >= k or len(capable) == 1)
    return DerivedNeighbors(
        live=name,
        length=length,
        similar_sources=[n for n, _ in capable] if head else None,
        similar_k=k if head else None,
    )


def similar_lists(
    builder: ListBuilder, k: int, neighbors: tuple[np.ndarray, np.ndarray] | None, neighbors_from: str | None
) -> Lists | None:
    """The finished similar-item list of every item (what ``--similar-to`` answers), or ``None``.

    Without list rules the list is the first ``k`` raw neighbours of the first model with
    similarity (exactly what the builder would select); with caps or MMR, the builder runs.
    """
    capable = [name for name, m in builder.chain if m.supports_similar_items]
    if not capable:
        return None
    if neighbors is not None and not builder.rules.reranks and neighbors[0].shape[1] >= k:
        items, scores = neighbors[0][:, :k].astype(np.int64), neighbors[1][:, :k].astype(np.float32)
        sources = np.where(items >= 0, 0, -1).astype(np.int8)
        if (items >= 0).all() or len(capable) == 1:
            return Lists(items, scores, sources, capable)
    parts = [lists for _, lists in builder.iter_similar(np.arange(builder.n_items), k)]
    return Lists(
        np.concatenate([p.items for p in parts]),
        np.concatenate([p.scores for p in parts]),
        np.concatenate([p.sources for p in parts]),
        parts[0].source_names,
    )


def live_states(serving: Serving, audience: Audience) -> dict[str, LiveState]:
    """What re-scores a user with new events without the model, for every serving model that has it.

    Main model, A/B variants' and the fallback chain (:func:`recctl.lists.live.export_live`);
    per-user arrays aligned with the bundle's users (``audience``).
    """
    out = {}
    for name, model in serving.models.items():
        state = export_live(model, audience.rows)
        if state is not None:
            out[name] = state
    return out


def _data_until(cfg: Config, serving: Serving) -> tuple[str | None, str | None]:
    """Latest event time the serving models learnt from, and the latest the histories hold (ISO, UTC)."""

    def iso(value: Any) -> str | None:
        return None if value is None else value.isoformat().replace("+00:00", "Z")

    learnt = None
    events = serving.data_dir / "events.parquet"
    if events.exists():
        frame = pl.scan_parquet(events)
        if not serving.rc.refit_on_all_data and "split" in frame.collect_schema().names():
            frame = frame.filter(pl.col("split") != "test")
        learnt = frame.select(pl.col(Columns.Timestamp).max()).collect().item()
    ingested = cfg.stage_dir("ingest") / "interactions.parquet"
    seen = None
    if ingested.exists():
        seen = pl.scan_parquet(ingested).select(pl.col(Columns.Timestamp).max()).collect().item()
    return iso(learnt), iso(seen)


def _metrics(cfg: Config, name: str) -> dict[str, Any] | None:
    path = cfg.stage_dir("evaluate") / "metrics.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data.get("models", {}).get(name, {}).get("mean")
    except (OSError, ValueError, AttributeError):
        return None


def build_bundle(
    cfg: Config,
    serving: Serving,
    audience: Audience,
    recs: pl.DataFrame,
    directory: Path,
    *,
    holdout: list[str],
    generated_at: str,
) -> dict[str, Any]:
    """Write the serving bundle for the lists in ``recs`` into ``directory``.

    Parameters
    ----------
    cfg
        The experiment config.
    serving
        Loaded catalogue, rules and models.
    audience
        The customers of the file (A/B holdout removed), with their exclusions.
    recs
        ``recommendations.parquet`` of the recommend stage.
    directory
        Target directory (inside the export stage's staging directory).
    holdout
        A/B held-out users (they get no list).
    generated_at
        When the lists were computed.

    Returns
    -------
    dict
        Summary for the stage manifest: file hashes, sizes, which models fill the gaps.
    """
    rc = serving.rc
    builder = serving.builder()
    k = rc.k
    sources = sorted(recs[Columns.Source].unique().cast(pl.String).to_list())
    lists = lists_from_frame(recs, audience.user_ids, serving.item_ids, k, sources)
    cold_names = [name for name, m in builder.chain if m.supports_cold_users and m.supports_item_history]
    cold = (
        np.stack([builder.cold_scores(name) for name in cold_names]) if cold_names else np.empty((0, builder.n_items))
    )
    main = serving.models[rc.model]
    live = live_states(serving, audience)
    length = max(NEIGHBORS_PER_ITEM, k)
    derived = derived_neighbors(builder, live, min(builder.n_items, length), k)
    neighbors: tuple[np.ndarray, np.ndarray] | DerivedNeighbors | None
    nb_model: str | None
    if derived is not None:  # the table is the live similarity's masked top rows: derived at load
        neighbors, nb_model = derived, derived.live
        similar = None if derived.similar_k is not None else similar_lists(builder, k, None, None)
    else:
        neighbors, nb_model = item_neighbors(builder, length, rc.n_jobs)
        similar = similar_lists(builder, k, neighbors, nb_model)
    data_until, history_until = _data_until(cfg, serving)
    card = {
        "model": rc.model,
        "kind": main.kind,
        "params": main.get_config(),
        "fallback": list(rc.fallback),
        "fallback_from": cold_names[0] if cold_names else None,
        "neighbors_from": nb_model,
        "generated_at": generated_at,
        "experiment": cfg.experiment.name if cfg.experiment is not None else None,
        # the whole definition, so a service assigns a new user exactly as the file did
        "experiment_definition": None if cfg.experiment is None else cfg.experiment.model_dump(mode="json"),
        "data_until": data_until,
        "history_until": history_until,
        "metrics": _metrics(cfg, rc.model),
        "versions": library_versions(),
        "n_users": len(audience),
        "n_items": serving.n_items,
    }
    files = write_bundle(
        directory,
        user_ids=audience.user_ids.to_list(),
        item_ids=serving.item_ids.to_list(),
        lists=lists,
        seen=audience.exclude,
        cold=(cold_names, cold),
        rules=serving.rules,
        candidates=rc.rules.candidates,
        min_score=rc.min_score,
        neighbors=neighbors,
        similar=similar,
        holdout=holdout,
        card=card,
        exclusions={"exclude_seen": rc.exclude_seen, "exclude_events": rc.rules.exclude_events},
        history=audience.history,
        live=live,
    )
    log.info("serving bundle: %d users, %d items, neighbours from %s", len(audience), serving.n_items, nb_model)
    return {
        "files": files,
        "n_users": len(audience),
        "fallback_from": card["fallback_from"],
        "neighbors_from": nb_model,
        "live": {name: state.kind for name, state in live.items()},
    }
