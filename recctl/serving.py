"""The serving bundle: what a web application loads to answer one user in microseconds.

``serve-export`` writes ``<workdir>/export/bundle/`` next to the nightly file. It holds no
pickle, only JSON and ``.npy`` arrays (numpy's documented format: a small header and raw
little-endian data, readable from any language), so a service in another language can read it:

* ``bundle.json``        format name and version, K, the model card (model, kind, parameters,
  fallback chain, offline metrics when ``evaluate`` ran, library versions, generated_at),
  and the sha256 of every other file;
* ``users.json``, ``items.json``   id lists; row ``i`` of a user array is ``users[i]``;
* ``user_items.npy`` (int32, n_users x K, ``-1`` padded), ``user_scores.npy`` (float32),
  ``user_sources.npy`` (int8 codes into ``bundle.json["sources"]``): the nightly lists, exactly
  as exported (business rules and exclusions applied);
* ``fallback_items.npy`` / ``fallback_scores.npy``: the fallback chain's list for unknown
  users (item rules applied), longer than K so excluded items can be skipped;
* ``item_neighbors.npy`` / ``item_neighbor_scores.npy`` (n_items x L): each item's most
  similar items from the first model of the chain with item similarity (absent when none
  has it), for visitors known only by recent items and for "similar products";
* ``seen_indptr.npy`` / ``seen_indices.npy``: each known user's excluded items (their
  history under ``recommend.exclude_seen`` / ``exclude_events``) in CSR form, so the fallback
  never re-fills a list with an item the user already had;
* ``holdout.json``: users held out of an A/B experiment (they get an empty list).

Python API::

    from recctl.serving import load
    bundle = load("runs/quickstart/export/bundle")
    bundle.recommend("C10001", k=5, exclude=["P0210"])      # known user
    bundle.recommend(None, k=5, items=["P0210", "P0861"])    # anonymous visitor
    bundle.similar("P0210", k=5)
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recctl.artifacts import sha256_file, write_json_atomic
from recctl.errors import ArtifactError, DataError

__all__ = ["BUNDLE_FORMAT", "BUNDLE_VERSION", "Bundle", "load", "write_bundle"]

BUNDLE_FORMAT = "recctl-serving-bundle"
BUNDLE_VERSION = 1


def _save(directory: Path, name: str, array: np.ndarray, files: dict[str, str]) -> None:
    path = directory / name
    np.save(path, np.ascontiguousarray(array), allow_pickle=False)
    files[name] = sha256_file(path)


def _save_json(directory: Path, name: str, obj: Any, files: dict[str, str]) -> None:
    path = directory / name
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    files[name] = sha256_file(path)


def write_bundle(
    directory: Path,
    *,
    user_ids: list[str],
    item_ids: list[str],
    user_items: np.ndarray,
    user_scores: np.ndarray,
    user_sources: np.ndarray,
    sources: list[str],
    fallback_items: np.ndarray,
    fallback_scores: np.ndarray,
    neighbors: tuple[np.ndarray, np.ndarray] | None,
    holdout: list[str],
    card: dict[str, Any],
    seen: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, str]:
    """Write a bundle into ``directory`` (created; normally inside a stage's staging dir).

    Parameters
    ----------
    user_ids, item_ids
        Id lists; array rows / item indices refer to them.
    user_items, user_scores, user_sources
        (n_users x K) nightly lists, ``-1`` padded; sources are codes into ``sources``.
    fallback_items, fallback_scores
        The list for unknown users, best first.
    neighbors
        ``(items, scores)`` (n_items x L) similar items, or ``None``.
    holdout
        Users who must get no recommendation.
    seen
        ``(indptr, indices)``: CSR rows (aligned with ``user_ids``) of items each user must
        never get, or ``None``.
    card
        Model card fields merged into ``bundle.json``.

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
    _save(directory, "user_items.npy", user_items.astype(np.int32), files)
    _save(directory, "user_scores.npy", user_scores.astype(np.float32), files)
    _save(directory, "user_sources.npy", user_sources.astype(np.int8), files)
    _save(directory, "fallback_items.npy", fallback_items.astype(np.int32), files)
    _save(directory, "fallback_scores.npy", fallback_scores.astype(np.float32), files)
    if seen is not None:
        _save(directory, "seen_indptr.npy", seen[0].astype(np.int64), files)
        _save(directory, "seen_indices.npy", seen[1].astype(np.int32), files)
    if neighbors is not None:
        _save(directory, "item_neighbors.npy", neighbors[0].astype(np.int32), files)
        _save(directory, "item_neighbor_scores.npy", neighbors[1].astype(np.float32), files)
    meta = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "k": int(user_items.shape[1]),
        "sources": sources,
        **card,
        "files": files,
    }
    write_json_atomic(directory / "bundle.json", meta)
    return files


@dataclass
class Bundle:
    """A loaded serving bundle (see the module docstring); answers from memory, no model code."""

    meta: dict[str, Any]
    user_ids: list[str]
    item_ids: list[str]
    user_items: np.ndarray
    user_scores: np.ndarray
    user_sources: np.ndarray
    fallback_items: np.ndarray
    fallback_scores: np.ndarray
    neighbors: np.ndarray | None
    neighbor_scores: np.ndarray | None
    holdout: frozenset[str]
    seen_indptr: np.ndarray | None = None
    seen_indices: np.ndarray | None = None

    def __post_init__(self) -> None:
        self._user_row = {u: i for i, u in enumerate(self.user_ids)}
        self._item_col = {it: i for i, it in enumerate(self.item_ids)}
        self._sources = list(self.meta.get("sources", []))

    @property
    def k(self) -> int:
        """Length of the nightly lists."""
        return int(self.meta["k"])

    def _item_indices(self, ids: Iterable[str], what: str, strict: bool) -> list[int]:
        out = []
        for i in ids:
            j = self._item_col.get(str(i))
            if j is None:
                if strict:
                    raise DataError(f"{what}: unknown item id '{i}' (not in this bundle's catalogue)")
                continue
            out.append(j)
        return out

    def _answer(self, rows: list[tuple[int, float, str]], k: int) -> list[dict[str, Any]]:
        return [
            {"item_id": self.item_ids[i], "rank": r + 1, "score": float(s), "source": src}
            for r, (i, s, src) in enumerate(rows[:k])
        ]

    def _fill(self, rows: list[tuple[int, float, str]], banned: set[int], k: int) -> list[tuple[int, float, str]]:
        """Append the fallback list (skipping banned and present items) up to ``k``."""
        present = {i for i, _, _ in rows} | banned
        source = str(self.meta.get("fallback_from") or "fallback")
        for i, s in zip(self.fallback_items.tolist(), self.fallback_scores.tolist(), strict=True):
            if len(rows) >= k:
                break
            if i >= 0 and i not in present:
                rows.append((i, s, source))
                present.add(i)
        return rows

    def recommend(
        self, user_id: str | None, k: int | None = None, *, exclude: Iterable[str] = (), items: Iterable[str] = ()
    ) -> list[dict[str, Any]]:
        """Top-``k`` items for one user (known, unknown, or anonymous with recent ``items``).

        Parameters
        ----------
        user_id
            The shop's user id, or ``None`` for an anonymous visitor.
        k
            List length (default: the bundle's K). A known user's list is the nightly list,
            with excluded items dropped and the gap filled from the fallback list.
        exclude
            Item ids never to return (e.g. the basket, or items bought since the nightly run).
        items
            Recent item ids of a visitor the nightly run did not know: scored through the
            item neighbour lists (summed similarities), then the fallback list.

        Returns
        -------
        list of dict
            ``{"item_id", "rank", "score", "source"}``, best first; empty for held-out users.
        """
        k = self.k if k is None else int(k)
        if k <= 0:
            return []
        banned = set(self._item_indices(exclude, "exclude", strict=False))
        if user_id is not None and str(user_id) in self.holdout:
            return []
        row = self._user_row.get(str(user_id)) if user_id is not None else None
        recent = self._item_indices(items, "items", strict=False)
        if row is not None and self.seen_indptr is not None:
            # the user's history: a fallback item they already had must not fill the gap
            banned |= set(self.seen_indices[self.seen_indptr[row] : self.seen_indptr[row + 1]].tolist())
        if row is not None:
            listed = zip(
                self.user_items[row].tolist(),
                self.user_scores[row].tolist(),
                self.user_sources[row].tolist(),
                strict=True,
            )
            rows = [
                (i, s, self._sources[c] if c < len(self._sources) else "")
                for i, s, c in listed
                if i >= 0 and i not in banned
            ]
        elif recent and self.neighbors is not None:
            rows = self._from_items(recent, banned | set(recent), k)
        else:
            rows = []
        return self._answer(self._fill(rows, banned | set(recent), k), k)

    def _from_items(self, recent: list[int], banned: set[int], k: int) -> list[tuple[int, float, str]]:
        cand = self.neighbors[recent].ravel()
        score = self.neighbor_scores[recent].ravel()
        ok = (cand >= 0) & np.isfinite(score)
        cand, score = cand[ok], score[ok]
        if not len(cand):
            return []
        uniq, inverse = np.unique(cand, return_inverse=True)
        total = np.zeros(len(uniq), np.float64)
        np.add.at(total, inverse, score)
        order = np.lexsort((uniq, -total))
        source = str(self.meta.get("neighbors_from", "neighbors"))
        rows = [(int(uniq[j]), float(total[j]), source) for j in order if int(uniq[j]) not in banned]
        return rows[:k]

    def similar(self, item_id: str, k: int = 10) -> list[dict[str, Any]]:
        """The ``k`` items most similar to ``item_id`` (empty when the bundle has no neighbours).

        Raises
        ------
        DataError
            For an item id not in the bundle's catalogue.
        """
        j = self._item_indices([item_id], "similar", strict=True)[0]
        if self.neighbors is None:
            return []
        source = str(self.meta.get("neighbors_from", "neighbors"))
        pairs = zip(self.neighbors[j].tolist(), self.neighbor_scores[j].tolist(), strict=True)
        rows = [(i, s, source) for i, s in pairs if i >= 0 and np.isfinite(s)]
        return self._answer(rows, k)


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
    if meta.get("format") != BUNDLE_FORMAT or meta.get("version") != BUNDLE_VERSION:
        raise ArtifactError(
            f"{meta_path}: format {meta.get('format')!r} version {meta.get('version')!r}; this recctl reads "
            f"{BUNDLE_FORMAT} version {BUNDLE_VERSION}."
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

    return Bundle(
        meta=meta,
        user_ids=js("users.json"),
        item_ids=js("items.json"),
        user_items=arr("user_items.npy"),
        user_scores=arr("user_scores.npy"),
        user_sources=arr("user_sources.npy"),
        fallback_items=arr("fallback_items.npy"),
        fallback_scores=arr("fallback_scores.npy"),
        neighbors=arr("item_neighbors.npy"),
        neighbor_scores=arr("item_neighbor_scores.npy"),
        holdout=frozenset(js("holdout.json")),
        seen_indptr=arr("seen_indptr.npy"),
        seen_indices=arr("seen_indices.npy"),
    )
