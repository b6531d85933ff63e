"""The serving bundle: what a web application loads to answer one user in well under a millisecond.

``serve-export`` writes ``<workdir>/export/bundle/`` next to the nightly file. It holds no
pickle, only JSON and ``.npy`` arrays (numpy's documented format: a small header and raw
little-endian data, readable from any language), so a service in another language can read it:

* ``bundle.json``        format name and version, K, the source names, the list rules (cap,
  MMR weight, candidates), the model card (model, kind, parameters, fallback chain, offline
  metrics when ``evaluate`` ran, library versions, generated_at), and the sha256 of every
  other file;
* ``users.json``, ``items.json``   id lists; row ``i`` of a user array is ``users[i]``; every
  customer of the nightly file is there, whether the models knew them or not;
* ``user_items.npy`` (int32, n_users x K, ``-1`` padded), ``user_scores.npy`` (float32),
  ``user_sources.npy`` (int8 codes into ``bundle.json["sources"]``): the nightly lists, exactly
  as exported;
* ``seen_indptr.npy`` / ``seen_indices.npy``: each user's excluded items (their history under
  ``recommend.exclude_seen`` / ``exclude_events``) in CSR form;
* ``cold_scores.npy`` (float32, n_cold x n_items): the scores, for a user without history, of
  each model of the chain that serves such users (``bundle.json["cold_sources"]``), whole: the
  list of a new id is computed exactly as the list builder computes it;
* ``item_mask.npy`` (bool), ``cap_codes.npy``, ``mmr_codes.npy`` / ``mmr_vectors.npy``: the
  item and list rules, so every refill obeys them;
* ``item_neighbors.npy`` / ``item_neighbor_scores.npy`` (n_items x L): each item's most similar
  allowed items (raw similarity, rules masked first) from the first model of the chain with
  item similarity, for visitors known only by recent items; not written when that model keeps
  a stored top-N similarity (item kNN, RP3beta) the bundle holds anyway as its live state
  (``bundle.json["neighbors"] == {"live": <model>, "length": L}``): ``load`` derives the
  table from those rows (:func:`recctl.models.neighbors.stored_neighbors`, the model's own
  ``similar_items``);
* ``similar_items.npy`` / ``similar_scores.npy`` / ``similar_sources.npy`` (n_items x K): the
  finished "similar products" lists (what ``recommend --similar-to`` answers); not written
  when they are exactly the first K neighbours (no list rules re-rank them:
  ``bundle.json["similar"] == "neighbors"``, and ``load`` takes them from there);
* ``holdout.json``: users held out of an A/B experiment (they get an empty list).

Every answer goes through :func:`recctl.lists.fill_lists`, the fill step of the one list
builder, with the bundle's arrays as the sources, so a bundle answer obeys the same rules in
the same way: for a user of the nightly file it *is* their nightly list; for an id without
history it equals the list builder's; with ``exclude`` the gap is refilled from the cold
sources, skipping the user's history, within caps.

Python API::

    from recctl.serving import load
    bundle = load("runs/quickstart/export/bundle")
    bundle.recommend("C10001", k=5, exclude=["P0210"])      # known user
    bundle.recommend(None, k=5, items=["P0210", "P0861"])    # anonymous visitor
    bundle.similar("P0210", k=5)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recctl.artifacts import sha256_file, write_json_atomic
from recctl.data.positions import IdPositions
from recctl.errors import ArtifactError, DataError
from recctl.lists.fill import Lists, fill_lists
from recctl.lists.live import LiveScorer, LiveState, live_scorer
from recctl.models.neighbors import stored_neighbors
from recctl.ranking import mask_scores, select_top_k
from recctl.rules import ItemRules

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
    "Bundle",
    "DerivedNeighbors",
    "load",
    "published_bundle_dir",
    "rules_arrays",
    "write_bundle",
]

BUNDLE_FORMAT = "recctl-serving-bundle"
BUNDLE_VERSION = 3
#: versions this recctl reads (2: the neighbour table always stored)
READS_VERSIONS = (2, 3)


@dataclass(frozen=True)
class DerivedNeighbors:
    """A neighbour table the bundle does not store: ``load`` derives it from a live similarity.

    Attributes
    ----------
    live
        The serving model (a key of ``write_bundle``'s ``live``, kind ``similarity``) whose
        stored top-N rows give the table: each item's ``length`` best allowed stored neighbours
        (:func:`recctl.models.neighbors.stored_neighbors`), exactly its ``similar_items``.
    length
        Neighbours per item (L).
    similar_sources
        When the similar-item lists are the table's first ``similar_k`` columns: their source
        names (code 0 is ``live``); ``None`` when they are stored (list rules re-rank them).
    similar_k
        See ``similar_sources``.
    """

    live: str
    length: int
    similar_sources: list[str] | None = None
    similar_k: int | None = None


def _save(directory: Path, name: str, array: np.ndarray, files: dict[str, str]) -> None:
    path = directory / name
    array = np.ascontiguousarray(array)
    np.save(path, array, allow_pickle=False)
    # hashed from memory: the file is the .npy header, then the array's bytes in C order
    with open(path, "rb") as handle:
        digest = hashlib.sha256(handle.read(path.stat().st_size - array.nbytes))
    digest.update(array.reshape(-1).view(np.uint8).data)
    files[name] = digest.hexdigest()


def _save_json(directory: Path, name: str, obj: Any, files: dict[str, str]) -> None:
    path = directory / name
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    files[name] = sha256_file(path)


def rules_arrays(rules: ItemRules) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The rules as bundle arrays and ``bundle.json`` fields (inverse of :meth:`Bundle.rules`)."""
    arrays: dict[str, np.ndarray] = {}
    if rules.item_mask is not None:
        arrays["item_mask.npy"] = np.asarray(rules.item_mask, bool)
    if rules.cap_codes is not None:
        arrays["cap_codes.npy"] = np.asarray(rules.cap_codes, np.int32)
    if rules.mmr_codes is not None:
        arrays["mmr_codes.npy"] = np.asarray(rules.mmr_codes, np.int32)
    if rules.mmr_vectors is not None:
        arrays["mmr_vectors.npy"] = np.asarray(rules.mmr_vectors, np.float32)
    return arrays, {"cap": rules.cap, "mmr_lambda": float(rules.mmr_lambda)}


def write_bundle(
    directory: Path,
    *,
    user_ids: list[str],
    item_ids: list[str],
    lists: Lists,
    seen: sp.csr_matrix | None,
    cold: tuple[list[str], np.ndarray],
    rules: ItemRules,
    candidates: int | None,
    min_score: float | None,
    neighbors: tuple[np.ndarray, np.ndarray] | DerivedNeighbors | None,
    similar: Lists | None,
    holdout: list[str],
    card: dict[str, Any],
    exclusions: dict[str, Any] | None = None,
    history: sp.csr_matrix | None = None,
    live: dict[str, LiveState] | None = None,
) -> dict[str, str]:
    """Write a bundle into ``directory`` (created; normally inside a stage's staging dir).

    Parameters
    ----------
    user_ids, item_ids
        Id lists; array rows / item indices refer to them.
    lists
        ``(n_users, K)`` nightly lists; ``lists.source_names`` become ``bundle.json["sources"]``.
    seen
        CSR rows (aligned with ``user_ids``) of items each user must never get, or ``None``.
    cold
        ``(names, scores)``: the no-history scores (``n_cold x n_items``) of the chain's models
        that serve users without history, in chain order.
    rules
        Item and list rules.
    candidates
        ``recommend.rules.candidates`` (``None``: the default, ``3 k + 20`` with list rules).
    min_score
        ``recommend.min_score`` (applies to the main model's source).
    neighbors
        ``(items, scores)`` (n_items x L) raw similar items, or a :class:`DerivedNeighbors` (not
        stored: derived at load from one of the ``live`` similarities), or ``None``.
    similar
        Finished similar-item lists (n_items x K), or ``None`` (none, or the derived
        neighbours' head: :attr:`DerivedNeighbors.similar_k`).
    holdout
        Users who must get no recommendation.
    card
        Model card fields merged into ``bundle.json``.
    exclusions
        ``{"exclude_seen": bool, "exclude_events": [...] | None}``, stored under ``rules`` so a
        service applies the same exclusions to events that arrive after the bundle.
    history
        CSR rows (aligned with ``user_ids``) of every item each user had an event with (the
        list builder's basket), for re-scoring a user with new events; stored once when it
        equals ``seen``.
    live
        Per model name, what re-scores a user without the model (:func:`recctl.lists.live.export_live`).

    Returns
    -------
    dict
        File name -> sha256 (also recorded in ``bundle.json``).
    """
    directory.mkdir(parents=True, exist_ok=True)
    files: dict[str, str] = {}
    _save_json(directory, "users.json", [str(u) for u in user_ids], files)
    _save_json(directory, "items.json", [str(i) for i in item_ids], files)
    _save_json(directory, "holdout.json", [str(u) for u in holdout], files)
    _save(directory, "user_items.npy", lists.items.astype(np.int32, copy=False), files)
    _save(directory, "user_scores.npy", lists.scores.astype(np.float32, copy=False), files)
    _save(directory, "user_sources.npy", lists.sources.astype(np.int8, copy=False), files)
    if seen is not None:
        seen = sp.csr_matrix(seen)
        _save(directory, "seen_indptr.npy", seen.indptr.astype(np.int64, copy=False), files)
        _save(directory, "seen_indices.npy", seen.indices.astype(np.int32, copy=False), files)
    history_kind = None
    if history is not None:
        history = sp.csr_matrix(history)
        history.sort_indices()
        if seen is not None and _same_pattern(history, seen):
            history_kind = "seen"
        else:
            history_kind = "own"
            _save(directory, "history_indptr.npy", history.indptr.astype(np.int64, copy=False), files)
            _save(directory, "history_indices.npy", history.indices.astype(np.int32, copy=False), files)
    live_meta: dict[str, Any] = {}
    for i, (name, state) in enumerate(sorted((live or {}).items())):
        prefix = f"live{i}_"
        for array_name, array in state.flat_arrays().items():
            _save(directory, f"{prefix}{array_name}.npy", array, files)
        live_meta[name] = {"prefix": prefix, **state.describe()}
    cold_names, cold_scores = cold
    _save(directory, "cold_scores.npy", np.asarray(cold_scores, np.float32).reshape(len(cold_names), -1), files)
    arrays, rule_fields = rules_arrays(rules)
    for name, array in arrays.items():
        _save(directory, name, array, files)
    neighbors_meta: dict[str, Any] | None = None
    similar_sources: list[str] = []
    similar_kind = None
    similar_k = None if similar is None else int(similar.items.shape[1])
    if isinstance(neighbors, DerivedNeighbors):
        source = (live or {}).get(neighbors.live)
        if source is None or source.kind != "similarity":
            raise ValueError(f"neighbours derived from live[{neighbors.live!r}], which holds no similarity")
        neighbors_meta = {"live": neighbors.live, "length": int(neighbors.length)}
        if neighbors.similar_k is not None and similar is None:
            similar_kind, similar_k = "neighbors", int(neighbors.similar_k)
            similar_sources = list(neighbors.similar_sources or [neighbors.live])
        neighbors = None
    elif neighbors is not None:
        _save(directory, "item_neighbors.npy", neighbors[0].astype(np.int32, copy=False), files)
        _save(directory, "item_neighbor_scores.npy", neighbors[1].astype(np.float32, copy=False), files)
    if similar is not None:
        similar_sources = list(similar.source_names)
        if _neighbors_head(similar, neighbors):  # the same bytes again: not written twice
            similar_kind = "neighbors"
        else:
            _save(directory, "similar_items.npy", similar.items.astype(np.int32, copy=False), files)
            _save(directory, "similar_scores.npy", similar.scores.astype(np.float32, copy=False), files)
            _save(directory, "similar_sources.npy", similar.sources.astype(np.int8, copy=False), files)
    meta = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "k": int(lists.k),
        "sources": list(lists.source_names),
        "cold_sources": list(cold_names),
        "similar_sources": similar_sources,
        "similar": similar_kind,
        **({"similar_k": similar_k} if similar_kind else {}),
        "neighbors": neighbors_meta,
        "rules": {**rule_fields, "candidates": candidates, "min_score": min_score, **(exclusions or {})},
        "history": history_kind,
        "live": live_meta,
        **card,
        "files": files,
    }
    write_json_atomic(directory / "bundle.json", meta)
    return files


def _neighbors_head(similar: Lists, neighbors: tuple[np.ndarray, np.ndarray] | None) -> bool:
    """Whether the similar lists are exactly the first K neighbours, all from one source (code 0)."""
    if neighbors is None or len(similar.source_names) != 1:
        return False
    k = similar.items.shape[1]
    items, scores = neighbors
    if items.shape[0] != similar.items.shape[0] or items.shape[1] < k:
        return False
    head = items[:, :k]
    return bool(
        np.array_equal(similar.items, head)
        and np.array_equal(similar.scores.astype(np.float32, copy=False), scores[:, :k].astype(np.float32, copy=False))
        and np.array_equal(similar.sources, np.where(head >= 0, 0, -1))
    )


def _same_pattern(a: sp.csr_matrix, b: sp.csr_matrix) -> bool:
    b = sp.csr_matrix(b)
    b.sort_indices()
    return a.shape == b.shape and np.array_equal(a.indptr, b.indptr) and np.array_equal(a.indices, b.indices)


class _OrderSource:
    """A score vector over the catalogue, pre-sorted once: the first ``m`` allowed, unexcluded items."""

    def __init__(
        self, name: str, order: np.ndarray, scores: np.ndarray, exclude: sp.csr_matrix | None, min_score: float | None
    ) -> None:
        self.name, self.order, self.scores, self.exclude = name, order, scores, exclude
        self.min_score = min_score

    def candidates(self, rows: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        items = np.full((len(rows), m), -1, np.int64)
        scores = np.full((len(rows), m), -np.inf, np.float32)
        ex = self.exclude
        for j, row in enumerate(rows):
            n_ex = 0 if ex is None else int(ex.indptr[row + 1] - ex.indptr[row])
            head = self.order[: m + n_ex]
            if ex is not None and n_ex:
                head = head[~np.isin(head, ex.indices[ex.indptr[row] : ex.indptr[row + 1]])]
            head = head[:m]
            items[j, : len(head)] = head
            scores[j, : len(head)] = self.scores[head]
        if self.min_score is not None:
            weak = scores <= self.min_score
            items[weak], scores[weak] = -1, -np.inf
        return items, scores


class _NeighborSource:
    """A visitor's basket scored by summed neighbour similarities."""

    def __init__(self, name: str, neighbors: np.ndarray, scores: np.ndarray, basket: list[int]) -> None:
        self.name = name
        cand = neighbors[basket].ravel()
        score = scores[basket].ravel().astype(np.float64)
        ok = (cand >= 0) & np.isfinite(score)
        uniq, inverse = np.unique(cand[ok], return_inverse=True)
        total = np.zeros(len(uniq), np.float64)
        np.add.at(total, inverse, score[ok])
        order = np.lexsort((uniq, -total))
        self.items, self.totals = uniq[order].astype(np.int64), total[order].astype(np.float32)

    def candidates(self, rows: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        width = max(m, len(self.items))
        items = np.full((len(rows), width), -1, np.int64)
        scores = np.full((len(rows), width), -np.inf, np.float32)
        items[:, : len(self.items)] = self.items
        scores[:, : len(self.items)] = self.totals
        return items, scores


class _VectorSource:
    """One user's scores over the catalogue (a model re-scored from the bundle's arrays).

    Exclusions and the item rules are masked before selection, as the list builder's model
    sources do, so asking for ``m`` candidates gives ``m`` eligible ones.
    """

    def __init__(
        self,
        name: str,
        scores: np.ndarray,
        exclude: sp.csr_matrix,
        excluded_cols: np.ndarray | None,
        min_score: float | None,
    ) -> None:
        self.name, self.scores, self.exclude = name, scores, exclude
        self.excluded_cols, self.min_score = excluded_cols, min_score

    def candidates(self, rows: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
        block = np.array(self.scores, np.float32, copy=True).reshape(1, -1)
        mask_scores(block, self.exclude, None, excluded_cols=self.excluded_cols)
        items, top = select_top_k(block, m)
        if self.min_score is not None:
            weak = top <= self.min_score
            items[weak], top[weak] = -1, -np.inf
        return np.repeat(items, len(rows), axis=0), np.repeat(top, len(rows), axis=0)


@dataclass
class Bundle:
    """A loaded serving bundle (see the module docstring); answers from memory, no model code."""

    meta: dict[str, Any]
    user_ids: list[str]
    item_ids: list[str]
    user_items: np.ndarray
    user_scores: np.ndarray
    user_sources: np.ndarray
    cold_scores: np.ndarray
    neighbors: np.ndarray | None
    neighbor_scores: np.ndarray | None
    holdout: frozenset[str]
    seen_indptr: np.ndarray | None = None
    seen_indices: np.ndarray | None = None
    similar_items: np.ndarray | None = None
    similar_scores: np.ndarray | None = None
    similar_sources: np.ndarray | None = None
    item_mask: np.ndarray | None = None
    cap_codes: np.ndarray | None = None
    mmr_codes: np.ndarray | None = None
    mmr_vectors: np.ndarray | None = None
    history_indptr: np.ndarray | None = None
    history_indices: np.ndarray | None = None
    live: dict[str, LiveState] = field(default_factory=dict)

    def __post_init__(self) -> None:
        #: id -> row / column of this bundle (single ids: the service warms them at load)
        self.user_positions = IdPositions(self.user_ids)
        self.item_positions = IdPositions(self.item_ids)
        self._sources = list(self.meta.get("sources", []))
        rule_meta = self.meta.get("rules", {})
        self.rules = ItemRules(
            item_mask=self.item_mask,
            cap_codes=None if self.cap_codes is None else self.cap_codes.astype(np.int64),
            cap=rule_meta.get("cap"),
            mmr_lambda=float(rule_meta.get("mmr_lambda", 0.0)),
            mmr_vectors=self.mmr_vectors,
            mmr_codes=None if self.mmr_codes is None else self.mmr_codes.astype(np.int64),
        )
        self._candidates = rule_meta.get("candidates")
        self._min_score = rule_meta.get("min_score")
        self._main = str(self.meta.get("model", ""))
        # each cold source's items, best first (ties by lower index), allowed by the item rules
        self._cold_order = []
        for vector in np.asarray(self.cold_scores, np.float32).reshape(-1, len(self.item_ids)):
            # what the top-K kernel may select: not -inf (masked), not NaN
            ok = (vector > -np.inf) & ~np.isnan(vector)
            if self.item_mask is not None:
                ok &= self.item_mask
            idx = np.flatnonzero(ok)
            self._cold_order.append((idx[np.lexsort((idx, -vector[idx]))], vector))
        self._excluded_cols = None if self.item_mask is None else np.flatnonzero(~np.asarray(self.item_mask, bool))
        self._scorers: dict[str, LiveScorer] = {}
        self._exclude_seen = bool(rule_meta.get("exclude_seen", True))
        events = rule_meta.get("exclude_events")
        self._exclude_events = None if events is None else frozenset(str(e) for e in events)

    @property
    def k(self) -> int:
        """Length of the nightly lists."""
        return int(self.meta["k"])

    @property
    def n_items(self) -> int:
        """Catalogue size."""
        return len(self.item_ids)

    def _n_candidates(self, k: int) -> int:
        # as ListBuilder.n_candidates: more than k only when list rules may drop candidates
        if not self.rules.reranks:
            return k
        return int(min(max(self._candidates or 3 * k + 20, k), self.n_items))

    def _item_indices(self, ids: Iterable[str], what: str, strict: bool) -> list[int]:
        ids = list(ids)
        if not ids:  # the usual request: nothing to look up
            return []
        found = self.item_positions.lookup(ids).tolist()
        if strict and -1 in found:
            raise DataError(f"{what}: unknown item id '{ids[found.index(-1)]}' (not in this bundle's catalogue)")
        return [j for j in found if j >= 0]

    def _answer(self, lists: Lists, k: int) -> list[dict[str, Any]]:
        items, scores, codes = lists.items[0], lists.scores[0], lists.sources[0]
        names = lists.source_names
        return [
            {"item_id": self.item_ids[int(i)], "rank": r + 1, "score": float(s), "source": names[int(c)]}
            for r, (i, s, c) in enumerate(zip(items[:k].tolist(), scores[:k].tolist(), codes[:k].tolist(), strict=True))
            if i >= 0
        ]

    def _cold_sources(self, exclude: sp.csr_matrix | None) -> list[Any]:
        return [
            _OrderSource(name, order, vector, exclude, self._min_score if name == self._main else None)
            for name, (order, vector) in zip(self.meta.get("cold_sources", []), self._cold_order, strict=True)
        ]

    def recommend(
        self,
        user_id: str | None,
        k: int | None = None,
        *,
        exclude: Iterable[str] = (),
        items: Iterable[str] = (),
        events: Iterable[tuple[str, str]] = (),
        model: str | None = None,
    ) -> list[dict[str, Any]]:
        """Top-``k`` items for one user (known, unknown, or anonymous with recent ``items``).

        Parameters
        ----------
        user_id
            The shop's user id, or ``None`` for an anonymous visitor.
        k
            List length (default: the bundle's K). A user of the nightly file gets their
            nightly list, with excluded items dropped and the gap filled from the cold
            sources (skipping their history, within the caps).
        exclude
            Item ids never to return (e.g. the basket, or items bought since the nightly run).
        items
            Recent item ids of a visitor the nightly run did not know: scored like a user the
            models never trained on whose history is these items (:meth:`recommend_live`);
            never returned.
        events
            The user's events since the bundle, oldest first, as ``(item_id, event)``: the
            list is re-scored from them (:meth:`recommend_live`). Empty: the nightly list.
        model
            The model serving this user (an A/B variant's), default the bundle's main model;
            only used when ``events`` or ``items`` re-score the list.

        Returns
        -------
        list of dict
            ``{"item_id", "rank", "score", "source"}``, best first; empty for held-out users.
        """
        k = self.k if k is None else int(k)
        if k <= 0:
            return []
        if user_id is not None and str(user_id) in self.holdout:
            return []
        banned = self._item_indices(exclude, "exclude", strict=False)
        found = self.user_positions.position(user_id) if user_id is not None else -1
        row = found if found >= 0 else None
        events = list(events)
        recent = self._item_indices(items, "items", strict=False) if row is None else []
        if events or recent:
            lists = self._live_lists(row, k, banned, events, recent, model)
            return self._answer(lists, k)
        if row is not None and not banned and k <= self.k and self.user_items[row, k - 1] >= 0:
            # the hot path (a known user, nothing new, nothing excluded): the nightly list's head
            # is exactly what the fill step below returns (it obeys the rules and the
            # user's exclusions already), without building an exclusion matrix per request
            names = self._sources
            items, scores, codes = self.user_items[row, :k], self.user_scores[row, :k], self.user_sources[row, :k]
            ids = self.item_ids
            return [
                {"item_id": ids[i], "rank": r + 1, "score": s, "source": names[c]}
                for r, (i, s, c) in enumerate(zip(items.tolist(), scores.tolist(), codes.tolist(), strict=True))
            ]
        never = set(banned)
        if row is not None:
            never.update(self._seen_of(row).tolist())
        excl = self._exclusion_row(never)
        # the nightly list, minus what must not be shown, compacted: already obeys the rules
        prefill = None if row is None else self._nightly_minus(row, never)
        lists = fill_lists(
            1,
            k,
            self._cold_sources(excl),
            self.rules,
            exclude=excl,
            n_candidates=self._n_candidates(k),
            n_items=self.n_items,
            prefill=prefill,
        )
        return self._answer(lists, k)

    # -- a user's events since the bundle ------------------------------------------------------
    def excludes(self, event: str) -> bool:
        """Whether an event of this type takes its item out of the user's lists (the file's rules).

        ``recommend.exclude_seen`` on and ``rules.exclude_events`` unset: every event; with
        ``exclude_events``: only those events; ``exclude_seen`` off: none.
        """
        if not self._exclude_seen:
            return False
        return self._exclude_events is None or event in self._exclude_events

    def _seen_of(self, row: int) -> np.ndarray:
        if self.seen_indptr is None or self.seen_indices is None:
            return np.empty(0, np.int64)
        return self.seen_indices[self.seen_indptr[row] : self.seen_indptr[row + 1]].astype(np.int64)

    def history_of(self, row: int) -> np.ndarray:
        """Item indices of bundle user ``row``'s full history (sorted): what a re-score starts from.

        Bundles written before the history was stored fall back to the excluded items.
        """
        if self.meta.get("history") == "own" and self.history_indptr is not None and self.history_indices is not None:
            items = self.history_indices[self.history_indptr[row] : self.history_indptr[row + 1]]
        else:
            items = self._seen_of(row)
        return np.unique(np.asarray(items, np.int64))

    def _exclusion_row(self, never: set[int]) -> sp.csr_matrix:
        cols = np.fromiter(sorted(never), np.int64, len(never))
        return sp.csr_matrix(
            (np.ones(len(cols), np.float32), cols, np.array([0, len(cols)], np.int64)), shape=(1, self.n_items)
        )

    def scorer(self, model: str) -> LiveScorer | None:
        """The live scorer of ``model`` (built on first use), or ``None`` when the bundle has none."""
        scorer = self._scorers.get(model)
        if scorer is None and model in self.live:
            scorer = self._scorers[model] = live_scorer(self.live[model], self.n_items)
        return scorer

    def chain(self, model: str | None = None) -> list[str]:
        """The models serving a user, in order: ``model`` (default the main one) then the fallbacks."""
        main = model or self._main
        return [main, *[str(f) for f in self.meta.get("fallback", []) if f != main]]

    def _live_lists(
        self,
        row: int | None,
        k: int,
        banned: list[int],
        events: list[tuple[str, str]],
        visitor_items: list[int],
        model: str | None,
    ) -> Lists:
        """A list re-scored from the user's history plus their new items (see :meth:`recommend`).

        Each model of the chain, in order, offers candidates: re-scored from its bundle arrays
        (:mod:`recctl.lists.live`) when it has them, else its no-history scores when it serves
        users without history; a main model with neither is replaced by the neighbours of the
        user's items (or, without neighbours, by the user's nightly list). Then the list
        builder's fill step, with exclusions = the user's excluded history + the new items the
        rules exclude + ``banned``.
        """
        new: list[int] = []
        never = set(banned)
        found = self.item_positions.lookup([item_id for item_id, _ in events]).tolist()
        for (_, event), j in zip(events, found, strict=True):
            if j < 0:  # an item the bundle does not know can be neither scored nor shown
                continue
            new.append(j)
            if self.excludes(str(event)):
                never.add(j)
        for j in visitor_items:  # a visitor's basket is scored from and never shown
            new.append(j)
            never.add(j)
        history = np.empty(0, np.int64) if row is None else self.history_of(row)
        if row is not None:
            never.update(self._seen_of(row).tolist())
        excl = self._exclusion_row(never)
        fresh = np.asarray(new, np.int64)
        cold = dict(zip(self.meta.get("cold_sources", []), self._cold_order, strict=True))
        sources: list[Any] = []
        prefill = None
        for pos, name in enumerate(self.chain(model)):
            min_score = self._min_score if pos == 0 else None  # the main model's "no evidence"
            scorer = self.scorer(name)
            if scorer is not None:
                scores = scorer.scores(-1 if row is None else row, history, fresh)
                sources.append(_VectorSource(name, scores, excl, self._excluded_cols, min_score))
            elif name in cold:
                order, vector = cold[name]
                sources.append(_OrderSource(name, order, vector, excl, min_score))
            elif pos == 0:
                basket = np.union1d(history, fresh)
                if self.neighbors is not None and self.neighbor_scores is not None and len(basket):
                    label = str(self.meta.get("neighbors_from") or name)
                    sources.append(_NeighborSource(label, self.neighbors, self.neighbor_scores, basket.tolist()))
                elif row is not None:  # nothing to re-score with: the nightly list, minus what left it
                    prefill = self._nightly_minus(row, never)
        return fill_lists(
            1,
            k,
            sources,
            self.rules,
            exclude=excl,
            n_candidates=self._n_candidates(k),
            n_items=self.n_items,
            prefill=prefill,
        )

    def _nightly_minus(self, row: int, never: set[int]) -> Lists:
        """User ``row``'s nightly list without ``never``, compacted (it obeys the rules already)."""
        listed = self.user_items[row].astype(np.int64)
        keep = (listed >= 0) & ~np.isin(listed, np.fromiter(never, np.int64, len(never)))
        return Lists(
            listed[keep][None, :],
            self.user_scores[row][keep][None, :].astype(np.float32),
            self.user_sources[row][keep][None, :].astype(np.int8),
            self._sources,
        )

    def similar(self, item_id: str, k: int | None = None) -> list[dict[str, Any]]:
        """The ``k`` items most similar to ``item_id`` (``recommend --similar-to``'s list).

        Empty when no model of the chain has item similarity.

        Raises
        ------
        DataError
            For an item id not in the bundle's catalogue.
        """
        j = self._item_indices([item_id], "similar", strict=True)[0]
        if self.similar_items is None or self.similar_scores is None or self.similar_sources is None:
            return []
        k = self.k if k is None else int(k)
        names = list(self.meta.get("similar_sources", []))
        lists = Lists(
            self.similar_items[j : j + 1].astype(np.int64),
            self.similar_scores[j : j + 1],
            self.similar_sources[j : j + 1],
            names,
        )
        return self._answer(lists, k)


def published_bundle_dir(workdir: str | Path) -> Path:
    """The directory of the bundle published now: ``<workdir>/export/bundle``.

    ``serve-export`` and ``recctl rollback`` both swap the export stage in whole, so this path
    is stable; a service polls ``bundle.json`` there for changes (its ``files`` digests, or the
    file's own sha256) and reloads.
    """
    return Path(workdir) / "export" / "bundle"


def load(path: str | Path, *, verify: bool = True) -> Bundle:
    """Load a serving bundle directory.

    Parameters
    ----------
    path
        The bundle directory (``<workdir>/export/bundle``).
    verify
        Check every file's sha256 against ``bundle.json`` first (on by default).

    Raises
    ------
    ArtifactError
        Missing or unreadable ``bundle.json``, wrong format or version, a missing file or a
        sha256 mismatch.
    """
    d = Path(path)
    meta_path = d / "bundle.json"
    if not meta_path.exists():
        raise ArtifactError(f"{meta_path}: no serving bundle here; run `recctl serve-export CONFIG`.")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ArtifactError(f"{meta_path}: unreadable ({exc}); run `recctl serve-export CONFIG` again.") from exc
    if meta.get("format") != BUNDLE_FORMAT or meta.get("version") not in READS_VERSIONS:
        raise ArtifactError(
            f"{meta_path}: format {meta.get('format')!r} version {meta.get('version')!r}; this recctl reads "
            f"{BUNDLE_FORMAT} versions {', '.join(map(str, READS_VERSIONS))}; run `recctl serve-export CONFIG` again."
        )
    files: dict[str, str] = meta.get("files", {})
    for name, digest in files.items():
        p = d / name
        if not p.exists():
            raise ArtifactError(f"{p}: listed in bundle.json but missing; run `recctl serve-export CONFIG` again.")
        if verify and sha256_file(p) != digest:
            raise ArtifactError(f"{p}: sha256 does not match bundle.json; the bundle was changed after it was written.")

    def arr(name: str) -> np.ndarray | None:
        return np.load(d / name, allow_pickle=False) if name in files else None

    def js(name: str) -> list[str]:
        return json.loads((d / name).read_text(encoding="utf-8")) if name in files else []

    def need(name: str) -> np.ndarray:
        value = arr(name)
        if value is None:
            raise ArtifactError(f"{d / 'bundle.json'}: lists no {name}; run `recctl serve-export CONFIG` again.")
        return value

    live = _live_states(meta, arr)
    item_mask = arr("item_mask.npy")
    neighbors, neighbor_scores = arr("item_neighbors.npy"), arr("item_neighbor_scores.npy")
    if isinstance(meta.get("neighbors"), dict):
        neighbors, neighbor_scores = _derived_neighbors(meta_path, meta["neighbors"], live, item_mask)
    similar = (arr("similar_items.npy"), arr("similar_scores.npy"), arr("similar_sources.npy"))
    if meta.get("similar") == "neighbors":  # written once: the first K neighbours (views, no copy)
        if neighbors is None or neighbor_scores is None:
            raise ArtifactError(f"{meta_path}: similar lists from neighbours, but no item_neighbors.npy is listed.")
        k = int(meta.get("similar_k", meta["k"]))
        head = neighbors[:, :k]
        similar = (head, neighbor_scores[:, :k], np.where(head >= 0, 0, -1).astype(np.int8))
    return Bundle(
        meta=meta,
        user_ids=js("users.json"),
        item_ids=js("items.json"),
        user_items=need("user_items.npy"),
        user_scores=need("user_scores.npy"),
        user_sources=need("user_sources.npy"),
        cold_scores=need("cold_scores.npy"),
        neighbors=neighbors,
        neighbor_scores=neighbor_scores,
        holdout=frozenset(js("holdout.json")),
        seen_indptr=arr("seen_indptr.npy"),
        seen_indices=arr("seen_indices.npy"),
        similar_items=similar[0],
        similar_scores=similar[1],
        similar_sources=similar[2],
        item_mask=item_mask,
        cap_codes=arr("cap_codes.npy"),
        mmr_codes=arr("mmr_codes.npy"),
        mmr_vectors=arr("mmr_vectors.npy"),
        history_indptr=arr("history_indptr.npy"),
        history_indices=arr("history_indices.npy"),
        live=live,
    )


def _derived_neighbors(
    meta_path: Path, entry: dict[str, Any], live: dict[str, LiveState], item_mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """The neighbour table a bundle did not store (``bundle.json["neighbors"]``), from its live similarity.

    The same function and arguments as the writer's model used (its ``similar_items`` over the
    whole catalogue with the item rules), so the table is the one it would have stored.
    """
    state = live.get(str(entry.get("live")))
    if state is None or state.kind != "similarity":
        raise ArtifactError(
            f"{meta_path}: neighbours derived from live[{entry.get('live')!r}], which the bundle does not hold "
            "as a similarity; run `recctl serve-export CONFIG` again."
        )
    a = state.arrays
    n = len(a["sim_indptr"]) - 1
    sim = sp.csr_matrix((a["sim_data"], a["sim_indices"], a["sim_indptr"]), shape=(n, n))
    return stored_neighbors(sim, np.arange(n), min(n, int(entry["length"])), item_mask, index_dtype=np.int32)


def _live_states(meta: dict[str, Any], arr: Any) -> dict[str, LiveState]:
    out = {}
    for name, entry in (meta.get("live") or {}).items():
        prefix = entry["prefix"]
        names = _array_names(entry)
        arrays = {n: arr(f"{prefix}{n}.npy") for n in names}
        missing = [n for n, a in arrays.items() if a is None]
        if missing:
            raise ArtifactError(f"bundle.json: live[{name!r}] lists arrays not in files: {missing}")
        out[str(name)] = LiveState.from_entry(entry, arrays)
    return out


def _array_names(entry: dict[str, Any], prefix: str = "") -> list[str]:
    names = [f"{prefix}{n}" for n in entry.get("arrays", [])]
    for i, sub in enumerate(entry.get("parts") or []):
        if sub is not None:
            names += _array_names(sub, f"{prefix}c{i}_")
    return names
