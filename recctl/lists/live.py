"""A user's new events reflected at once, without the model: what the serving bundle keeps per kind.

The nightly lists come from trained models. A user who acts after the nightly run (a view, a
purchase posted to ``recctl serve``) should see a list that takes it into account at once,
without retraining. The serving bundle (:mod:`recctl.serving`) holds no model code and no
pickle, so each model of the serving chain that can re-score a user from their history is
exported as plain arrays (:func:`export_live`), and :func:`live_scorer` scores from them:

* ``als``, ``spark_als`` (item factors): the ALS user solve over (history + new items) with the
  item factors fixed, the model's own per-user step;
* ``lightfm`` (item representations and biases; each user's trained representation, bias and
  number of trained items; the median user norm): the trained vector and the fold-in of the new
  items, weighted by how many items each stands for (a user it never trained: the fold-in of
  history + new, the model's ``score_from_items``);
* ``item_knn``, ``rp3beta`` (the stored top-N similarity, CSR): ``(history + new) @ S``, the
  model's own score;
* ``ease`` up to :data:`EASE_DENSE_MAX_ITEMS` trained items (B): ``(history + new) @ B``;
* ``sasrec`` (the network's weights, each user's last ``max_len`` items): the numpy forward pass
  over the user's sequence with the new items appended;
* ``blend`` (its components' arrays): the blend's own combination of their live scores;
* other kinds: nothing; :mod:`recctl.serving` scores them from the neighbours of the items (or
  the no-history scores, for popularity).

"history" is the user's full history as the bundle knows it (every item with an event, the
list builder's basket); "new" are the items of the events since, oldest first. For a user the
models did not train on, every scorer computes exactly the model's ``score_from_items`` over
(history + new): what the list builder computes for such a user, so a bundle answer equals the
builder's. For a user they trained on, the factor and sequence kinds start from the trained
state (vector, sequence) rather than from the raw history; the similarity kinds score the
history itself, as for an unknown user (their trained row is a subset of it).

Why not ship the models: a pickle runs code at load, ties the reader to Python and to library
versions, and drags training state (LightFM's optimiser, ALS's user factors of every trained
user) into a web process; these arrays are what answering needs and nothing more.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = [
    "EASE_DENSE_MAX_ITEMS",
    "LiveScorer",
    "LiveState",
    "export_live",
    "live_scorer",
]

#: EASE's B is exported whole (dense float32) up to this many trained items (3,000: 36 MB)
EASE_DENSE_MAX_ITEMS = 3000


@dataclass
class LiveState:
    """What one model needs in the bundle to re-score a user: plain arrays and JSON parameters.

    Attributes
    ----------
    kind
        The scoring rule (``als``, ``lightfm``, ``similarity``, ``ease``, ``sequence``, ``blend``).
    params
        JSON-able parameters of the rule.
    arrays
        Named numpy arrays (no object dtype). Per-user arrays are aligned with the bundle's
        users (row ``i`` is ``users.json[i]``).
    parts
        Component states of a blend, in component order (``None`` for a component that has none).
    """

    kind: str
    params: dict[str, Any]
    arrays: dict[str, np.ndarray]
    parts: list[LiveState | None] = field(default_factory=list)

    def flat_arrays(self, prefix: str = "") -> dict[str, np.ndarray]:
        """Every array of this state and its parts, under unique ``prefix``-ed names."""
        out = {f"{prefix}{name}": array for name, array in self.arrays.items()}
        for i, part in enumerate(self.parts):
            if part is not None:
                out.update(part.flat_arrays(f"{prefix}c{i}_"))
        return out

    def describe(self) -> dict[str, Any]:
        """``bundle.json`` entry: kind, parameters, own array names, the parts' entries."""
        return {
            "kind": self.kind,
            "params": self.params,
            "arrays": sorted(self.arrays),
            "parts": [None if p is None else p.describe() for p in self.parts],
        }

    @classmethod
    def from_entry(cls, entry: dict[str, Any], arrays: dict[str, np.ndarray], prefix: str = "") -> LiveState:
        """Rebuild a state from its ``bundle.json`` entry and the loaded arrays (inverse of the two above)."""
        own = {name: arrays[f"{prefix}{name}"] for name in entry.get("arrays", [])}
        parts = [
            None if sub is None else cls.from_entry(sub, arrays, f"{prefix}c{i}_")
            for i, sub in enumerate(entry.get("parts") or [])
        ]
        return cls(str(entry["kind"]), dict(entry.get("params") or {}), own, parts)


def _aligned(values: np.ndarray, rows: np.ndarray, fill: float | int = 0) -> np.ndarray:
    """Per-model-row ``values`` re-indexed to the bundle's users (``rows[i]`` or -1 -> ``fill``)."""
    out = np.full((len(rows), *values.shape[1:]), fill, dtype=values.dtype)
    known = rows >= 0
    out[known] = values[rows[known]]
    return out


def export_live(model: Any, rows: np.ndarray) -> LiveState | None:
    """The arrays a bundle needs to re-score a user for ``model``, or ``None`` for kinds it cannot.

    Parameters
    ----------
    model
        A fitted recctl model.
    rows
        int64, one per bundle user: their row in the model, ``-1`` when it does not know them.

    Returns
    -------
    LiveState or None
    """
    rows = np.asarray(rows, np.int64)
    kind = getattr(model, "kind", None)
    if kind in ("als", "spark_als"):
        cfg = model.config
        return LiveState(
            "als",
            {
                "regularization": float(cfg.regularization),
                "alpha": float(cfg.alpha),
                # MLlib's ALS scales the penalty by the user's number of interactions (ALS-WR)
                "scale_regularization": kind == "spark_als",
            },
            {"item_factors": np.ascontiguousarray(model.item_factors_, np.float32)},
        )
    if kind == "lightfm":
        counts = np.asarray(model.user_counts_, np.float32)
        return LiveState(
            "lightfm",
            {"user_norm": float(model.user_norm_)},
            {
                "item_repr": np.ascontiguousarray(model.item_repr_, np.float32),
                "item_bias": np.asarray(model.item_bias_, np.float32),
                "user_repr": _aligned(np.asarray(model.user_repr_, np.float32), rows),
                "user_bias": _aligned(np.asarray(model.user_bias_, np.float32), rows),
                "user_weight": _aligned(counts, rows),
            },
        )
    if kind in ("item_knn", "rp3beta"):
        sim = sp.csr_matrix(model.similarity_, dtype=np.float32)
        sim.sort_indices()
        return LiveState(
            "similarity",
            {},
            {
                "sim_indptr": sim.indptr.astype(np.int64, copy=False),  # the model's arrays, not copies
                "sim_indices": sim.indices.astype(np.int32, copy=False),
                "sim_data": sim.data,
            },
        )
    if kind == "ease":
        active = np.asarray(model.active_, np.int64)
        if len(active) > EASE_DENSE_MAX_ITEMS:
            return None
        return LiveState("ease", {}, {"weights": np.asarray(model.weights_, np.float32), "active": active})
    if kind == "sasrec":
        from recctl.models.sasrec import _pad_rows

        cfg = model.config
        known = rows >= 0
        seq = np.zeros((len(rows), cfg.max_len), np.int32)
        if known.any():
            seq[known] = _pad_rows(model.hist_indptr_, model.hist_items_, rows[known], cfg.max_len)
        weights = {f"w__{name}": np.asarray(value, np.float32) for name, value in model.weights_.items()}
        return LiveState(
            "sequence",
            {"n_heads": int(cfg.n_heads), "max_len": int(cfg.max_len), "weights": sorted(model.weights_)},
            {**weights, "item_pop": np.asarray(model.item_pop_, np.float32), "seq": seq, "known": known},
        )
    if kind == "blend":
        parts = [export_live(component, rows) for component in model.components_]
        if all(p is None for p in parts):
            return None
        return LiveState(
            "blend",
            {"config": model.config.model_dump(mode="json")},
            {"history_len": _aligned(np.asarray(model.history_, np.int64), rows, -1)},
            parts,
        )
    return None


class LiveScorer:
    """Scores every catalogue item for one user from a :class:`LiveState` (see the module docstring)."""

    def scores(self, row: int, history: np.ndarray, new: np.ndarray) -> np.ndarray:
        """float32 ``(n_items,)`` scores.

        Parameters
        ----------
        row
            The user's row in the bundle, ``-1`` for an id the bundle does not know.
        history
            int64 item indices of the user's history as the bundle knows it (unique, sorted).
        new
            int64 item indices of their events since the bundle, oldest first.
        """
        raise NotImplementedError


def _basket(history: np.ndarray, new: np.ndarray) -> np.ndarray:
    # the list builder's basket: every item with an event once (a CSR pattern), in index order
    return np.union1d(np.asarray(history, np.int64), np.asarray(new, np.int64))


class _ALS(LiveScorer):
    def __init__(self, state: LiveState) -> None:
        self.y = np.ascontiguousarray(state.arrays["item_factors"], np.float32)
        self.y64 = self.y.astype(np.float64)
        self.gram = self.y64.T @ self.y64  # Y'Y once, not per request (n_items x f^2)
        self.reg = float(state.params["regularization"])
        self.alpha = float(state.params["alpha"])
        self.scale = bool(state.params.get("scale_regularization", False))

    def scores(self, row: int, history: np.ndarray, new: np.ndarray) -> np.ndarray:
        items = _basket(history, new)
        f = self.y.shape[1]
        if not len(items):
            return np.zeros(len(self.y), np.float32)
        reg = self.reg * (len(items) if self.scale else 1.0)
        ys = self.y64[items]
        conf = np.full(len(items), 1.0 + self.alpha)
        a = self.gram + reg * np.eye(f) + ys.T @ ((conf - 1.0)[:, None] * ys)
        user = np.linalg.solve(a, ys.T @ conf)
        return (self.y @ user.astype(np.float32)).astype(np.float32)


class _LightFM(LiveScorer):
    def __init__(self, state: LiveState) -> None:
        a = state.arrays
        self.items = np.ascontiguousarray(a["item_repr"], np.float32)
        self.item_bias = np.asarray(a["item_bias"], np.float32)
        self.user_repr, self.user_bias, self.user_weight = a["user_repr"], a["user_bias"], a["user_weight"]
        self.norm = np.float32(state.params["user_norm"])

    def _fold(self, items: np.ndarray) -> np.ndarray:
        # LightFMModel.fold_in with weight 1 per item: the mean direction at the median length
        if not len(items):
            return np.zeros(self.items.shape[1], np.float32)
        mean = self.items[items].sum(axis=0, dtype=np.float32) / np.float32(len(items))
        length = np.linalg.norm(mean)
        return mean * self.norm / length if length > 0 else np.zeros_like(mean)

    def scores(self, row: int, history: np.ndarray, new: np.ndarray) -> np.ndarray:
        if row >= 0 and self.user_weight[row] > 0:
            fresh = np.unique(np.asarray(new, np.int64))
            w_old, w_new = np.float32(self.user_weight[row]), np.float32(len(fresh))
            # the vector closest (weighted least squares) to the trained one, standing for the
            # user's w_old trained items, and to the fold-in of the w_new new ones
            user = (w_old * self.user_repr[row] + w_new * self._fold(fresh)) / (w_old + w_new)
            return (self.items @ user + self.item_bias + self.user_bias[row]).astype(np.float32)
        user = self._fold(_basket(history, new))
        return (user[None, :] @ self.items.T + self.item_bias[None, :]).ravel().astype(np.float32)


class _Similarity(LiveScorer):
    def __init__(self, state: LiveState) -> None:
        a = state.arrays
        n = len(a["sim_indptr"]) - 1
        self.sim = sp.csr_matrix((a["sim_data"], a["sim_indices"], a["sim_indptr"]), shape=(n, n))
        self.n = n

    def scores(self, row: int, history: np.ndarray, new: np.ndarray) -> np.ndarray:
        items = _basket(history, new)
        x = sp.csr_matrix((np.ones(len(items), np.float32), (np.zeros(len(items), np.int64), items)), shape=(1, self.n))
        return (x @ self.sim).toarray().ravel().astype(np.float32)


class _EASE(LiveScorer):
    def __init__(self, state: LiveState, n_items: int) -> None:
        self.weights = np.asarray(state.arrays["weights"], np.float32)
        self.active = np.asarray(state.arrays["active"], np.int64)
        self.n_items = n_items

    def scores(self, row: int, history: np.ndarray, new: np.ndarray) -> np.ndarray:
        items = _basket(history, new)
        active = self.active
        pos = np.searchsorted(active, items)
        known = (pos < len(active)) & (active[np.minimum(pos, len(active) - 1)] == items)
        x = sp.csr_matrix(
            (np.ones(int(known.sum()), np.float32), (np.zeros(int(known.sum()), np.int64), pos[known])),
            shape=(1, len(active)),
        )
        out = np.zeros(self.n_items, np.float32)
        out[active] = np.asarray(x @ self.weights, dtype=np.float32).ravel()
        return out


class _Sequence(LiveScorer):
    def __init__(self, state: LiveState) -> None:
        a = state.arrays
        self.weights = {name: a[f"w__{name}"] for name in state.params["weights"]}
        self.n_heads = int(state.params["n_heads"])
        self.max_len = int(state.params["max_len"])
        self.item_pop = np.asarray(a["item_pop"], np.float32)
        self.seq, self.known = a["seq"], a["known"]
        self.table = np.ascontiguousarray(self.weights["item_table"][1:].T)

    def scores(self, row: int, history: np.ndarray, new: np.ndarray) -> np.ndarray:
        from recctl.models._sasrec_numpy import sequence_vectors

        if row >= 0 and self.known[row]:
            own = self.seq[row]
            tail = own[own > 0].astype(np.int64) - 1  # the sequence the model scores this user from
        else:
            tail = np.asarray(history, np.int64)  # as the builder passes a basket: index order
        items = np.concatenate([tail, np.asarray(new, np.int64)])[-self.max_len :]
        if not len(items):
            return self.item_pop.copy()
        seq = np.zeros((1, self.max_len), np.int64)
        seq[0, -len(items) :] = items + 1
        return (sequence_vectors(seq, self.weights, self.n_heads) @ self.table).ravel().astype(np.float32)


class _Blend(LiveScorer):
    def __init__(self, state: LiveState, n_items: int) -> None:
        from recctl.models.blend import BlendConfig

        self.config = BlendConfig.model_validate(state.params["config"])
        self.parts = [(i, live_scorer(p, n_items)) for i, p in enumerate(state.parts) if p is not None]
        self.history_len = state.arrays["history_len"]
        self.n_items = n_items

    def scores(self, row: int, history: np.ndarray, new: np.ndarray) -> np.ndarray:
        from recctl.models.blend import combine_scores

        trained = int(self.history_len[row]) if row >= 0 else -1
        size = trained + len(new) if trained >= 0 else len(_basket(history, new))
        parts = [
            (i, scorer.scores(row, history, new)[None, :], np.array([size >= self.config.components[i].min_history]))
            for i, scorer in self.parts
        ]
        return combine_scores(self.config, parts, (1, self.n_items)).ravel()


def live_scorer(state: LiveState, n_items: int) -> LiveScorer:
    """The scorer for an exported state (built once per loaded bundle; holds no user state)."""
    if state.kind == "als":
        return _ALS(state)
    if state.kind == "lightfm":
        return _LightFM(state)
    if state.kind == "similarity":
        return _Similarity(state)
    if state.kind == "ease":
        return _EASE(state, n_items)
    if state.kind == "sequence":
        return _Sequence(state)
    if state.kind == "blend":
        return _Blend(state, n_items)
    raise ValueError(f"unknown live scoring kind {state.kind!r}")
