"""SASRec: a self-attentive next-item model trained on each user's time-ordered events.

Kang & McAuley (2018), "Self-Attentive Sequential Recommendation". A user is represented by
the hidden state of a causal Transformer at the latest of their last ``max_len`` events, and
every item is scored by a dot product with that state. Recommendations therefore follow a
user's most recent events: :meth:`SASRecModel.update_histories` appends newly ingested events
and the next ``recommend`` reflects them, with no retraining.

PyTorch is an optional extra (``pip install 'recctl[neural]'``) and is needed only to train.
Inference runs in numpy from the weights kept in the pickle (``weights_``), so a trained model
loads and answers without torch — the "serving bundle" is the pickled model itself, or the
plain dict :meth:`SASRecModel.serving_bundle` returns.

Training choices (measured in ``docs/neural.md``): cross-entropy over the target and a shared
set of popularity-sampled negatives with the logQ correction (``loss: sampled_softmax``, the
default), the exact softmax over every item (``loss: softmax``, 3.7x the cost per step on 10k
items), or the paper's binary cross-entropy with sampled negatives (``loss: bce``).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
import polars as pl
import scipy.sparse as sp
from pydantic import Field, model_validator

from recctl.columns import Columns
from recctl.data.dataset import Dataset
from recctl.data.positions import IdPositions
from recctl.errors import MissingExtraError, RecctlError
from recctl.models import _sasrec_numpy as npnet
from recctl.models.base import ModelConfig, ProgressFn, Recommender
from recctl.models.registry import register
from recctl.ranking import mask_scores

__all__ = ["SASRecConfig", "SASRecModel"]

log = logging.getLogger(__name__)

#: users scored at once when measuring the validation split inside ``fit``
_VALID_BATCH = 1024
#: at most this many users are held out for early stopping inside ``fit``
_MAX_VALID_USERS = 20_000


def _optional_torch() -> Any:
    """torch when it is installed, else None (scoring then falls back to numpy)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def _require_torch() -> Any:
    """Import torch, or raise the error that names the install command."""
    try:
        import torch
    except ImportError as exc:
        raise MissingExtraError("The sasrec model", "neural", "torch") from exc
    return torch


class SASRecConfig(ModelConfig):
    """Parameters of :class:`SASRecModel` (YAML ``models.<name>`` with ``kind: sasrec``)."""

    kind: Literal["sasrec"] = "sasrec"
    max_len: int = Field(default=50, ge=2, le=1024, description="Latest events per user the model reads.")
    hidden_size: int = Field(default=64, ge=4, le=1024, description="Embedding and hidden size.")
    n_heads: int = Field(default=2, ge=1, le=32, description="Attention heads; must divide hidden_size.")
    n_blocks: int = Field(default=2, ge=1, le=12, description="Self-attention blocks.")
    dropout: float = Field(default=0.2, ge=0.0, lt=1.0)
    lr: float = Field(default=2e-3, gt=0.0, le=1.0, description="Adam learning rate.")
    weight_decay: float = Field(default=0.0, ge=0.0)
    epochs: int = Field(default=30, ge=1, le=10_000)
    batch_size: int = Field(default=128, ge=1, description="Training sequences per step.")
    loss: Literal["auto", "softmax", "sampled_softmax", "bce"] = Field(
        default="auto",
        description="Full softmax cross-entropy over all items; cross-entropy over the target and "
        "n_negatives shared sampled items; or the paper's BCE with n_negatives per position. `auto`: "
        "softmax up to 20,000 items, sampled_softmax above.",
    )
    n_negatives: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="`sampled_softmax`: negatives per step, shared by all positions (default 256); "
        "`bce`: negatives per position (default 1, as in the paper).",
    )
    use_item_features: bool = Field(default=False, description="Add item-feature embeddings to item embeddings.")
    windows: Literal["all", "latest"] = Field(
        default="all",
        description="Training windows per user and epoch: every window of max_len (each event a target once) "
        "or only the latest one.",
    )
    dedupe_consecutive: bool = Field(
        default=True, description="Collapse repeats of the same item in a row (basket lines, page reloads)."
    )
    patience: int | None = Field(
        default=None,
        ge=1,
        description="Early stopping inside fit: hold out each user's last event, stop after this many "
        "epochs without a better NDCG@10 on it, keep the best epoch.",
    )
    random_state: int | None = None
    num_threads: int | None = Field(default=None, ge=1, description="Torch threads (default: all cores).")

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> SASRecConfig:
        if self.hidden_size % self.n_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be a multiple of n_heads ({self.n_heads})")
        return self


#: ``loss: auto`` uses the exact softmax up to this many items (logits: positions x items)
_AUTO_SOFTMAX_MAX_ITEMS = 20_000


def _resolve_loss(loss: str, n_items: int) -> str:
    """The loss ``auto`` stands for: the exact softmax while the catalogue is small enough.

    On MovieLens (7,165 items, per-user temporal validation) the exact softmax reached NDCG@10
    0.083 after 3 epochs and 0.124 after 20, where 256 popularity-sampled negatives reached
    0.077 after 20 (docs/neural.md); its cost per step grows with the catalogue, hence the cap.
    """
    if loss != "auto":
        return loss
    return "softmax" if n_items <= _AUTO_SOFTMAX_MAX_ITEMS else "sampled_softmax"


# -- sequences ---------------------------------------------------------------------------------
def _user_sequences(dataset: Dataset, dedupe: bool) -> tuple[np.ndarray, np.ndarray]:
    """Every training event as ``(user_idx, item_idx)`` arrays, by user then time."""
    events = dataset.events
    if events is not None and events.height:
        # stable sort: events with equal timestamps (lines of one basket) keep their file order
        frame = events.select(Columns.UserIdx, Columns.ItemIdx, Columns.Timestamp).sort(
            [Columns.UserIdx, Columns.Timestamp], maintain_order=True
        )
        users = frame[Columns.UserIdx].to_numpy().astype(np.int64)
        items = frame[Columns.ItemIdx].to_numpy().astype(np.int64)
    else:
        log.warning(
            "sasrec: the dataset has no per-event timestamps (events.parquet); training on the "
            "interaction matrix in item-index order, which carries no time order: the model "
            "degrades to a bag-of-items model. Re-run `recctl preprocess` to write events.parquet."
        )
        mat = dataset.interactions.tocsr()
        users = np.repeat(np.arange(mat.shape[0], dtype=np.int64), np.diff(mat.indptr))
        items = mat.indices.astype(np.int64)
    return _dedupe(users, items) if dedupe else (users, items)


def _dedupe(users: np.ndarray, items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop events repeating the previous event's item for the same user."""
    if len(users) == 0:
        return users, items
    keep = np.ones(len(users), dtype=bool)
    keep[1:] = (users[1:] != users[:-1]) | (items[1:] != items[:-1])
    return users[keep], items[keep]


def _rank_in_user(users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For user-sorted events: each event's position in its user's list and that list's length."""
    starts = np.r_[0, np.flatnonzero(users[1:] != users[:-1]) + 1] if len(users) else np.empty(0, np.int64)
    lengths = np.diff(np.r_[starts, len(users)])
    first = np.repeat(starts, lengths)
    return np.arange(len(users)) - first, np.repeat(lengths, lengths)


def _training_chunks(
    users: np.ndarray, items: np.ndarray, max_len: int, latest_only: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Cut each user's sequence into left-padded (input, next-item target) windows.

    A user with ``n`` events gives ``n - 1`` (previous item -> next item) pairs, split into
    windows of ``max_len`` from the latest backwards, so every event is a target exactly once
    per epoch and the latest window carries the longest context. Items are 1-based (0 = pad).
    """
    rank, length = _rank_in_user(users)
    is_target = rank >= 1
    n_pairs = length - 1
    back = (n_pairs - rank)[is_target]  # 0 for the latest pair
    chunk_in_user = back // max_len
    pos = max_len - 1 - back % max_len
    n_chunks_user = np.where(n_pairs > 0, -(-n_pairs // max_len), 0)
    user_first_event = np.r_[True, users[1:] != users[:-1]] if len(users) else np.empty(0, bool)
    per_user = n_chunks_user[user_first_event]
    offsets = np.r_[0, np.cumsum(per_user)[:-1]] if len(per_user) else np.empty(0, np.int64)
    user_ord = np.cumsum(user_first_event) - 1
    chunk = offsets[user_ord[is_target]] + chunk_in_user
    n_chunks = int(per_user.sum()) if len(per_user) else 0
    inputs = np.zeros((n_chunks, max_len), np.int64)
    targets = np.zeros((n_chunks, max_len), np.int64)
    target_idx = np.flatnonzero(is_target)
    inputs[chunk, pos] = items[target_idx - 1] + 1
    targets[chunk, pos] = items[target_idx] + 1
    if latest_only:
        first_chunk = offsets[n_chunks_user[user_first_event] > 0]
        return inputs[first_chunk], targets[first_chunk]
    return inputs, targets


def _ragged_tail(users: np.ndarray, items: np.ndarray, n_users: int, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Keep each user's latest ``max_len`` items as a CSR-like ``(indptr, items)`` pair."""
    rank, length = _rank_in_user(users)
    keep = rank >= length - max_len
    users, items = users[keep], items[keep]
    counts = np.bincount(users, minlength=n_users) if len(users) else np.zeros(n_users, np.int64)
    return np.r_[0, np.cumsum(counts)].astype(np.int64), items.astype(np.int32)


def _pad_rows(indptr: np.ndarray, flat: np.ndarray, rows: np.ndarray, max_len: int) -> np.ndarray:
    """Left-padded (len(rows), max_len) matrix of 1-based items for the given ragged rows."""
    starts = indptr[rows]
    lengths = np.minimum(indptr[rows + 1] - starts, max_len)
    starts = indptr[rows + 1] - lengths
    out = np.zeros((len(rows), max_len), np.int64)
    total = int(lengths.sum())
    if total:
        row = np.repeat(np.arange(len(rows)), lengths)
        within = np.arange(total) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        out[row, max_len - np.repeat(lengths, lengths) + within] = flat[np.repeat(starts, lengths) + within] + 1
    return out


# -- the model ---------------------------------------------------------------------------------
@register("sasrec")
class SASRecModel(Recommender):
    """Self-attentive sequential next-item model (needs ``pip install 'recctl[neural]'`` to train).

    Parameters
    ----------
    config
        A :class:`SASRecConfig`, or keyword parameters for one.

    Raises
    ------
    MissingExtraError
        When torch is not installed (exit code 6, naming ``pip install 'recctl[neural]'``).

    Notes
    -----
    After ``fit``, ``weights_`` holds the network as numpy arrays and ``hist_indptr_`` /
    ``hist_items_`` each user's latest ``max_len`` item indices; scoring uses only those.
    """

    config_class = SASRecConfig
    supports_item_history = True
    supports_similar_items = True
    supports_epochs = True
    config: SASRecConfig

    @classmethod
    def missing_extra(cls) -> str | None:
        """``"neural"`` when torch is not installed (training needs it)."""
        return None if _optional_torch() is not None else "neural"

    def __init__(self, config: ModelConfig | None = None, **params: Any) -> None:
        _require_torch()
        super().__init__(config, **params)
        self._net: Any = None
        self._opt: Any = None
        self._item_lookup: IdPositions | None = None
        # torch's RNG state (a ByteTensor) between epochs; set by fit, never pickled
        self._torch_rng: Any = None

    # -- torch state that must not leak into the caller's process-wide settings ------------
    @contextmanager
    def _torch_scope(self) -> Iterator[Any]:
        """Run with this model's threads, deterministic kernels and its own RNG stream.

        torch's thread count, determinism flag and RNG are process-wide; they are swapped in
        for each epoch and restored afterwards, so interleaving ``iter_fit`` with other work
        (tuning, other models) neither disturbs it nor is disturbed by it.
        """
        torch = _require_torch()
        threads = self.config.num_threads or max(1, os.cpu_count() or 1)
        det = torch.utils.deterministic
        saved = (
            torch.get_num_threads(),
            torch.are_deterministic_algorithms_enabled(),
            torch.get_rng_state(),
            det.fill_uninitialized_memory,
        )
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(True)
        # deterministic mode also fills every new tensor with NaN (a CUDA debugging aid): on
        # CPU that was most of the flag's cost, and results do not depend on it
        det.fill_uninitialized_memory = False
        torch.set_rng_state(self._torch_rng)
        try:
            yield torch
        finally:
            self._torch_rng = torch.get_rng_state()
            torch.set_num_threads(saved[0])
            torch.use_deterministic_algorithms(saved[1])
            torch.set_rng_state(saved[2])
            det.fill_uninitialized_memory = saved[3]

    # -- fitting ----------------------------------------------------------------------------
    def _setup(self, dataset: Dataset, holdout: bool) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix] | None:
        """Build sequences, histories and a fresh network.

        Returns the held-out validation ``(inputs, targets, seen)`` when ``holdout`` is set.
        """
        torch = _require_torch()
        cfg = self.config
        seed = 0 if cfg.random_state is None else cfg.random_state
        self.n_users, self.n_items = dataset.n_users, dataset.n_items
        self.item_ids_ = np.asarray(dataset.item_ids, dtype=object)
        self._item_lookup = None
        users, items = _user_sequences(dataset, cfg.dedupe_consecutive)
        self.hist_indptr_, self.hist_items_ = _ragged_tail(users, items, self.n_users, cfg.max_len)
        counts = np.bincount(items, minlength=self.n_items).astype(np.float32)
        self.item_pop_ = counts / max(float(counts.max(initial=0.0)), 1.0)

        valid = None
        train_users, train_items = users, items
        if holdout:
            train_users, train_items, valid = self._holdout(users, items, seed)
        latest = cfg.windows == "latest"
        self._inputs, self._targets = _training_chunks(train_users, train_items, cfg.max_len, latest_only=latest)
        if len(self._inputs) == 0:
            raise RecctlError(
                "sasrec: no user has two or more training events, so there is no next item to "
                "learn; check preprocess.min_user_interactions and the split."
            )
        features = None
        if cfg.use_item_features:
            if dataset.item_features is None:
                log.warning(
                    "sasrec: use_item_features is set but the dataset has no item features; "
                    "declare them under preprocess.features. Training without them."
                )
            else:
                features = _row_normalised(dataset.item_features)
        self._np_rng = np.random.default_rng(seed)
        self._torch_rng = torch.Generator().manual_seed(seed).get_state()
        self.loss_ = _resolve_loss(cfg.loss, self.n_items)
        n_logits = cfg.batch_size * cfg.max_len * self.n_items
        if self.loss_ == "softmax" and n_logits > 250_000_000:
            log.warning(
                "sasrec: a full-softmax step holds up to %.1f GB of logits; lower batch_size "
                "or max_len, or use loss: sampled_softmax.",
                n_logits * 12 / 1e9,
            )
        from recctl.models._sasrec_torch import SASRecNet

        with self._torch_scope() as torch:
            self._net = SASRecNet(
                self.n_items, cfg.max_len, cfg.hidden_size, cfg.n_heads, cfg.n_blocks, cfg.dropout, features
            )
            self._opt = torch.optim.Adam(
                self._net.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay
            )
        self.epoch_losses_: list[float] = []
        # sampled softmax's item distribution, built by the first epoch that needs it
        self._neg_p: np.ndarray | None = None
        return valid

    def _holdout(self, users: np.ndarray, items: np.ndarray, seed: int):  # noqa: ANN202
        """Split off each user's last event (users with 3+ events, capped) for early stopping."""
        rank, length = _rank_in_user(users)
        last = (rank == length - 1) & (length >= 3)
        candidates = np.flatnonzero(last)
        if len(candidates) > _MAX_VALID_USERS:
            candidates = np.sort(np.random.default_rng(seed).choice(candidates, _MAX_VALID_USERS, replace=False))
        held = np.zeros(len(users), dtype=bool)
        held[candidates] = True
        rest_users, rest_items = users[~held], items[~held]
        ptr, flat = _ragged_tail(rest_users, rest_items, self.n_users, self.config.max_len)
        valid_inputs = _pad_rows(ptr, flat, users[candidates], self.config.max_len)
        seen = sp.csr_matrix(
            (np.ones(len(rest_users), np.float32), (rest_users, rest_items)), shape=(self.n_users, self.n_items)
        )[users[candidates]]
        # as in `recctl evaluate`: seen items are not recommended, so a held-out item the user
        # already had cannot be hit and that user does not count
        reachable = np.asarray(seen[np.arange(len(candidates)), items[candidates]]).ravel() == 0
        return rest_users, rest_items, (valid_inputs[reachable], items[candidates][reachable], seen[reachable])

    def _train_epoch(self) -> float:
        cfg = self.config
        order = self._np_rng.permutation(len(self._inputs))
        loss_kind = self.loss_
        n_neg = cfg.n_negatives or (256 if loss_kind == "sampled_softmax" else 1)
        total, n_batches = 0.0, 0
        with self._torch_scope() as torch:
            import torch.nn.functional as F

            if loss_kind == "sampled_softmax" and getattr(self, "_neg_p", None) is None:
                counts = np.bincount(self._targets[self._targets > 0], minlength=self.n_items + 1)[1:] + 1.0
                self._neg_items = np.arange(1, self.n_items + 1)
                self._neg_p = counts / counts.sum()
                log_q = np.r_[0.0, np.log(n_neg * self._neg_p)].astype(np.float32)
                self._log_q = torch.from_numpy(log_q)

            self._net.train()
            for start in range(0, len(order), cfg.batch_size):
                rows = order[start : start + cfg.batch_size]
                seq = torch.from_numpy(self._inputs[rows])
                tgt = torch.from_numpy(self._targets[rows])
                table = self._net.item_table()
                hidden = self._net(seq, table)
                valid = tgt > 0
                h = hidden[valid]
                y = tgt[valid]
                if loss_kind == "softmax":
                    loss = F.cross_entropy(h @ table[1:].T, y - 1)
                elif loss_kind == "sampled_softmax":
                    # one set of negatives per step, shared by all positions, drawn by item
                    # popularity; subtracting log(expected count) from every logit (the "logQ"
                    # correction) makes this an estimate of the full softmax. Uniform negatives
                    # rarely include popular items, so the top of the ranking was not learnt.
                    # A negative equal to a position's own target is masked out.
                    neg = torch.from_numpy(self._np_rng.choice(self._neg_items, size=n_neg, p=self._neg_p))
                    neg_logit = (h @ table[neg].T - self._log_q[neg]).masked_fill(
                        neg[None, :] == y[:, None], float("-inf")
                    )
                    pos_logit = (h * table[y]).sum(-1, keepdim=True) - self._log_q[y].unsqueeze(1)
                    logits = torch.cat([pos_logit, neg_logit], dim=1)
                    loss = F.cross_entropy(logits, torch.zeros(len(y), dtype=torch.long))
                else:
                    neg = torch.from_numpy(self._np_rng.integers(1, self.n_items + 1, size=(len(y), n_neg)))
                    pos_logit = (h * table[y]).sum(-1)
                    neg_logit = (h.unsqueeze(1) * table[neg]).sum(-1)
                    loss = F.binary_cross_entropy_with_logits(
                        pos_logit, torch.ones_like(pos_logit)
                    ) + F.binary_cross_entropy_with_logits(neg_logit, torch.zeros_like(neg_logit))
                self._opt.zero_grad(set_to_none=True)
                loss.backward()
                self._opt.step()
                total += float(loss.detach())
                n_batches += 1
            self._net.eval()
            self.weights_ = self._net.numpy_weights()
        return total / max(n_batches, 1)

    def iter_fit(self, dataset: Dataset, *, progress: ProgressFn | None = None) -> Iterator[int]:
        """Train epoch by epoch, yielding the number of epochs done after each one.

        The model is usable (``score``/``recommend``) at every yield, so tuning can evaluate on
        its validation split and stop early. ``patience`` is not applied here: the caller
        decides when to stop.

        Parameters
        ----------
        dataset
            The training data (``dataset.events`` gives the time order).
        progress
            Optional callback with the fraction of ``epochs`` done.
        """
        self._setup(dataset, holdout=False)
        yield from self._epochs(progress)

    def _epochs(self, progress: ProgressFn | None) -> Iterator[int]:
        epochs = self.config.epochs
        for epoch in range(epochs):
            t0 = time.perf_counter()
            loss = self._train_epoch()
            self.epoch_losses_.append(loss)
            self.is_fitted = True
            log.info("sasrec epoch %d/%d: loss %.4f (%.1fs)", epoch + 1, epochs, loss, time.perf_counter() - t0)
            if progress is not None:
                progress((epoch + 1) / epochs)
            yield epoch + 1

    def _fit(self, dataset: Dataset, progress: ProgressFn | None) -> None:
        patience = self.config.patience
        valid = self._setup(dataset, holdout=patience is not None)
        self.best_epoch_ = None
        self.valid_ndcg_: list[float] = []
        if patience is None or valid is None or len(valid[1]) == 0:
            for _ in self._epochs(progress):
                pass
            return
        best, waited = -1.0, 0
        best_weights: dict[str, np.ndarray] | None = None
        for epoch in self._epochs(progress):
            ndcg = self._holdout_ndcg(*valid)
            self.valid_ndcg_.append(ndcg)
            log.info("sasrec epoch %d: held-out NDCG@10 %.4f", epoch, ndcg)
            if ndcg > best:
                best, best_weights, waited, self.best_epoch_ = ndcg, self.weights_, 0, epoch
            else:
                waited += 1
                if waited >= patience:
                    log.info("sasrec: stopping early after epoch %d; keeping epoch %d", epoch, self.best_epoch_)
                    break
        if best_weights is None:  # no epoch ran: the weights stay as they are
            return
        self.weights_ = best_weights
        with self._torch_scope() as torch:
            self._net.load_state_dict({k: torch.from_numpy(v) for k, v in best_weights.items() if k != "item_table"})

    def _holdout_ndcg(self, inputs: np.ndarray, targets: np.ndarray, seen: sp.csr_matrix, k: int = 10) -> float:
        """NDCG@k of the held-out next item, ranking all items the user has not seen."""
        gains = []
        for start in range(0, len(targets), _VALID_BATCH):
            scores = self._scores_for(inputs[start : start + _VALID_BATCH])
            mask_scores(scores, seen[start : start + _VALID_BATCH], None)
            tgt = targets[start : start + _VALID_BATCH]
            target_score = scores[np.arange(len(tgt)), tgt]
            rank = (scores > target_score[:, None]).sum(axis=1)
            gains.append(np.where(rank < k, 1.0 / np.log2(rank + 2.0), 0.0))
        return float(np.concatenate(gains).mean()) if gains else 0.0

    # -- scoring (torch when installed, numpy otherwise) -----------------------------------------
    def _scoring_net(self) -> Any:
        """An eval-mode torch network holding ``weights_``, or None when torch is not installed.

        Rebuilt when ``weights_`` is replaced (after each epoch, on early stopping, on load).
        """
        torch = _optional_torch()
        if torch is None:
            return None
        cached = getattr(self, "_score_net", None)
        if cached is None or cached[0] is not self.weights_:
            from recctl.models._sasrec_torch import SASRecNet

            net = SASRecNet.from_numpy_weights(self.weights_, self.config.n_heads)
            table = torch.from_numpy(np.ascontiguousarray(self.weights_["item_table"]))
            cached = (self.weights_, net, table)
            self._score_net = cached
        return cached

    def _scores_for(self, seq: np.ndarray) -> np.ndarray:
        """(B, n_items) scores for left-padded 1-based sequences; empty ones get popularity.

        Through torch when it is installed (several times faster than numpy on CPU: the
        attention is one fused kernel), through the numpy forward pass otherwise. Both compute
        the same function (a parity test pins them together).
        """
        cached = self._scoring_net()
        if cached is None:
            vectors = npnet.sequence_vectors(seq, self.weights_, self.config.n_heads)
            scores = vectors @ self.weights_["item_table"][1:].T
        else:
            torch = _optional_torch()
            _, net, table = cached
            # inference_mode touches no global state, so the top-K kernel's threads may share it
            with torch.inference_mode():
                seq_t = torch.from_numpy(np.ascontiguousarray(seq, dtype=np.int64))
                scores = (net(seq_t, table, last_only=True) @ table[1:].T).numpy()
        empty = ~(seq > 0).any(axis=1)
        if empty.any():
            scores[empty] = self.item_pop_
        return scores.astype(np.float32, copy=False)

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        return self._scores_for(_pad_rows(self.hist_indptr_, self.hist_items_, user_idx, self.config.max_len))

    def _score_from_items(self, item_idx: np.ndarray, weights: np.ndarray) -> np.ndarray:
        # order is the signal here (oldest first); weights have no meaning for a sequence model
        item_idx = item_idx[(item_idx >= 0) & (item_idx < self.n_items)][-self.config.max_len :]
        seq = np.zeros((1, self.config.max_len), np.int64)
        if len(item_idx):
            seq[0, -len(item_idx) :] = item_idx + 1
        return self._scores_for(seq)[0]

    def _similar_items(self, item_idx: np.ndarray) -> np.ndarray:
        # cosine between item vectors: items the network treats as interchangeable context
        table = self.weights_["item_table"][1:]
        unit = table / np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-12)
        return (unit[item_idx] @ unit.T).astype(np.float32)

    def score_from_item_ids(self, item_ids: list[str]) -> np.ndarray:
        """Score all items for a visitor known by their recent item ids (oldest first).

        Unknown ids (items added after training) are skipped.

        Parameters
        ----------
        item_ids
            The shop's item ids, in the order they were seen.

        Returns
        -------
        numpy.ndarray
            (n_items,) float32 scores aligned with ``item_ids_``.
        """
        self._check_fitted()
        if self._item_lookup is None:
            self._item_lookup = IdPositions(self.item_ids_)
        return self.score_from_items(self._item_lookup.lookup(item_ids))

    def user_history(self, user_idx: int) -> np.ndarray:
        """The item indices (oldest first) the model currently reads for user ``user_idx``."""
        self._check_fitted()
        return self.hist_items_[self.hist_indptr_[user_idx] : self.hist_indptr_[user_idx + 1]].astype(np.int64)

    def update_histories(self, events: pl.DataFrame) -> int:
        """Append newly ingested events to users' histories, without retraining.

        The next ``score``/``recommend`` for those users reads their new latest events: the
        real-time path for returning users.

        Parameters
        ----------
        events
            ``user_idx, item_idx`` (index space of the trained model), and ``timestamp`` if
            known (events are sorted by it within each user; otherwise frame order is used).
            Users at or beyond ``n_users`` are new users and grow the model; items outside
            ``[0, n_items)`` cannot be embedded without retraining and are skipped.

        Returns
        -------
        int
            Number of users whose history changed.
        """
        self._check_fitted()
        missing = [c for c in (Columns.UserIdx, Columns.ItemIdx) if c not in events.columns]
        if missing:
            raise RecctlError(f"update_histories: events frame lacks column(s) {', '.join(missing)}")
        if Columns.Timestamp in events.columns:
            events = events.sort([Columns.UserIdx, Columns.Timestamp], maintain_order=True)
        else:
            events = events.sort(Columns.UserIdx, maintain_order=True)
        users = events[Columns.UserIdx].to_numpy().astype(np.int64)
        items = events[Columns.ItemIdx].to_numpy().astype(np.int64)
        known = (items >= 0) & (items < self.n_items) & (users >= 0)
        if (~known).any():
            log.warning(
                "sasrec: skipped %d event(s) with items unknown at training time or bad user "
                "indices; retrain to learn new items.",
                int((~known).sum()),
            )
        users, items = users[known], items[known]
        if len(users) == 0:
            return 0
        n_users = max(self.n_users, int(users.max()) + 1)
        old_users = np.repeat(np.arange(self.n_users, dtype=np.int64), np.diff(self.hist_indptr_))
        all_users = np.r_[old_users, users]
        all_items = np.r_[self.hist_items_.astype(np.int64), items]
        # old history first, then the new events: a stable sort by user keeps that order
        order = np.argsort(all_users, kind="stable")
        all_users, all_items = all_users[order], all_items[order]
        if self.config.dedupe_consecutive:
            all_users, all_items = _dedupe(all_users, all_items)
        self.hist_indptr_, self.hist_items_ = _ragged_tail(all_users, all_items, n_users, self.config.max_len)
        self.n_users = n_users
        return int(len(np.unique(users)))

    def serving_bundle(self) -> dict[str, Any]:
        """Everything needed to answer a visitor from their recent item ids, as plain data.

        Returns
        -------
        dict
            ``weights`` (numpy arrays), ``n_heads``, ``max_len``, ``item_ids`` and
            ``item_popularity`` (the answer for an empty history). Score with
            ``recctl.models._sasrec_numpy.sequence_vectors`` and ``weights["item_table"]``.
        """
        self._check_fitted()
        return {
            "kind": self.kind,
            "weights": self.weights_,
            "n_heads": self.config.n_heads,
            "max_len": self.config.max_len,
            "item_ids": self.item_ids_,
            "item_popularity": self.item_pop_,
        }

    # -- pickling -------------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        """Keep numpy state only: the network lives on as ``weights_`` (its state dict in numpy)."""
        state = self.__dict__.copy()
        for key in (
            "_net",
            "_opt",
            "_inputs",
            "_targets",
            "_np_rng",
            "_torch_rng",
            "_item_lookup",
            "_neg_items",
            "_neg_p",
            "_log_q",
            "_score_net",
        ):
            state.pop(key, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a pickled model; training state is rebuilt by the next ``fit``."""
        self.__dict__.update(state)
        self._net = None
        self._opt = None
        self._item_lookup = None


def _row_normalised(features: sp.spmatrix) -> sp.csr_matrix:
    """Scale each item's feature row to sum to one (a mean of feature embeddings)."""
    mat = sp.csr_matrix(features, dtype=np.float32)
    sums = np.asarray(np.abs(mat).sum(axis=1)).ravel()
    inv = np.divide(1.0, sums, out=np.zeros_like(sums), where=sums > 0)
    return sp.csr_matrix(sp.diags(inv.astype(np.float32)) @ mat)
