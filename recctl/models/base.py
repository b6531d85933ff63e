"""The one interface every recommendation strategy implements.

Public methods (``fit``, ``score``, ``recommend``, ``save``/``load``) do the shared work —
checks, the batched top-K, persistence — and call private hooks a model overrides
(``_fit``, ``_score``, and optionally ``_score_from_items``, ``_similar_items``,
``_partial_fit``). Capabilities are class flags, not ``isinstance`` checks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import scipy.sparse as sp

from recctl.artifacts import FileRecord, load_pickle_checked, save_pickle
from recctl.config.base import BaseConfig
from recctl.data.dataset import Dataset
from recctl.errors import ArtifactError, RecctlError
from recctl.models.neighbors import stored_neighbors, stored_rows_rank
from recctl.ranking import TopK, iter_top_k, top_k

__all__ = ["ModelConfig", "NotFittedError", "Recommender", "UnsupportedError"]

T = TypeVar("T", bound="Recommender")
ProgressFn = Callable[[float], None]


class ModelConfig(BaseConfig):
    """Base of every model's config; ``kind`` names the registered model class."""

    kind: str


class NotFittedError(RecctlError):
    """A model was used before ``fit``."""


class UnsupportedError(RecctlError):
    """The model lacks a capability (cold items, similar items, ...) that was asked for."""


class Recommender(ABC):
    """A recommendation strategy.

    Subclasses set ``kind`` and ``config_class``, implement ``_fit`` and ``_score``, and
    declare their capabilities with the class flags below.
    """

    kind: ClassVar[str] = ""
    config_class: ClassVar[type[ModelConfig]] = ModelConfig
    # Capabilities: class-level defaults; a kind whose capabilities depend on its config
    # (lightfm with or without features, a blend of its components) sets them per instance.
    #: can recommend to users with no training interactions (through features or a fallback)
    supports_cold_users: bool = False
    #: can score items with no training interactions (through item features)
    supports_cold_items: bool = False
    #: fit needs ``dataset.item_features``
    needs_item_features: bool = False
    #: ``partial_fit`` takes new interactions without a full retrain
    supports_incremental: bool = False
    #: ``score_from_items`` works (anonymous / session users; an empty list gives the cold-user scores)
    supports_item_history: bool = False
    #: ``similar_items`` works
    supports_similar_items: bool = False

    def __init__(self, config: ModelConfig | None = None, **params: Any) -> None:
        if config is None:
            config = self.config_class(kind=self.kind, **params)
        elif params:
            raise TypeError("give either a config object or keyword parameters, not both")
        self.config = config
        self.is_fitted = False
        self.n_users = 0
        self.n_items = 0

    # -- config round trip -------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        """Return the model's parameters as plain data (``from_config`` inverts it)."""
        return self.config.model_dump(mode="json")

    @classmethod
    def from_config(cls: type[T], data: dict[str, Any] | ModelConfig) -> T:
        """Build an unfitted model from its config."""
        config = data if isinstance(data, ModelConfig) else cls.config_class.model_validate(data)
        return cls(config)

    # -- fitting ---------------------------------------------------------------------
    def fit(self: T, dataset: Dataset, *, progress: ProgressFn | None = None) -> T:
        """Fit on ``dataset.interactions`` (and features where the model uses them).

        Parameters
        ----------
        dataset
            The training data.
        progress
            Optional callback with the fraction done, in [0, 1].

        Returns
        -------
        self
        """
        self._begin_fit(dataset)
        self._fit(dataset, progress)
        self.is_fitted = True
        return self

    def _begin_fit(self, dataset: Dataset) -> None:
        """Checks and bookkeeping shared by ``fit`` and ``iter_fit`` (call before fitting)."""
        if self.needs_item_features and dataset.item_features is None:
            raise RecctlError(
                f"model kind '{self.kind}' needs item features; declare them under "
                "preprocess.features in the config and re-run `recctl preprocess`."
            )
        self.n_users, self.n_items = dataset.n_users, dataset.n_items

    #: ``iter_fit`` yields after every epoch (LightFM, neural): tuning stops early with it
    supports_epochs: ClassVar[bool] = False

    @classmethod
    def missing_extra(cls) -> str | None:
        """The optional extra this kind needs to train and that is not installed, else None.

        ``recctl tune`` with ``models: all`` leaves such a model out (saying so) instead of
        failing; naming the model explicitly still raises the install hint.
        """
        return None

    @classmethod
    def estimate_fit_seconds(cls, config: ModelConfig, dataset: Dataset) -> float | None:
        """A rough upper estimate of one fit's wall time on ``dataset`` on this machine, or ``None``.

        ``recctl tune`` skips a model whose first trial would not fit in what is left of its
        time budget (:mod:`recctl.tuning.budget`); ``None`` (the default) means unknown: the
        first trial runs whenever time is left, later ones are estimated from it.
        """
        return None

    def iter_fit(self, dataset: Dataset):  # noqa: ANN201
        """Fit epoch by epoch, yielding the number of epochs done after each one.

        The model is usable (``score``/``recommend``) at every yield, so a caller can
        evaluate on a validation split and stop early. Models without epochs fit in one go
        and yield ``1`` once.
        """
        self.fit(dataset)
        yield 1

    @abstractmethod
    def _fit(self, dataset: Dataset, progress: ProgressFn | None) -> None:
        """Learn from the dataset."""

    @abstractmethod
    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        """Return a dense (len(user_idx), n_items) float32 score block."""

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} isn't fitted; call `fit` (or `recctl train`) first.")

    # -- scoring -------------------------------------------------------------------------
    def score(self, user_idx: np.ndarray) -> np.ndarray:
        """Score every item for the given user rows (higher is better)."""
        self._check_fitted()
        return self._score(np.asarray(user_idx, dtype=np.int64))

    def recommend(
        self,
        user_idx: np.ndarray,
        k: int,
        *,
        exclude: sp.csr_matrix | None = None,
        item_mask: np.ndarray | None = None,
        batch_size: int = 4096,
        n_jobs: int = 1,
        progress: Callable[[int], None] | None = None,
    ) -> TopK:
        """Top-K items for each user row, through the shared batched kernel.

        The model alone, in its own index space: no business rules, no fallback, no history
        beyond ``exclude``. For the lists the shop gets (shop ids, rules, fallback chain, exactly
        K) use :meth:`recctl.Experiment.recommend`.

        Parameters
        ----------
        user_idx
            User row indices.
        k
            List length (lists are shorter only when fewer items are eligible).
        exclude
            (n_users x n_items) sparse matrix of items to leave out per user (seen items).
        item_mask
            Boolean vector of items anyone may get (business rules).
        batch_size, n_jobs, progress
            See :func:`recctl.ranking.iter_top_k`.
        """
        self._check_fitted()
        return top_k(
            self._score,
            user_idx,
            k,
            exclude=exclude,
            item_mask=item_mask,
            batch_size=batch_size,
            n_jobs=n_jobs,
            progress=progress,
        )

    def iter_recommend(self, user_idx: np.ndarray, k: int, **kwargs: Any):  # noqa: ANN201
        """Like :meth:`recommend` but yields blocks, for streaming to disk."""
        self._check_fitted()
        return iter_top_k(self._score, user_idx, k, **kwargs)

    # -- optional capabilities -----------------------------------------------------------
    def score_from_items(self, item_idx: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Score all items for an anonymous user known only by the items they interacted with."""
        self._check_fitted()
        if not self.supports_item_history:
            raise UnsupportedError(f"model kind '{self.kind}' cannot recommend from a list of items.")
        w = np.ones(len(item_idx), np.float32) if weights is None else np.asarray(weights, np.float32)
        return self._score_from_items(np.asarray(item_idx, np.int64), w)

    def _score_from_items(self, item_idx: np.ndarray, weights: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def similar_items(
        self, item_idx: np.ndarray, k: int, *, item_mask: np.ndarray | None = None, n_jobs: int = 1
    ) -> TopK:
        """The K items most similar to each given item (the item itself excluded).

        Parameters
        ----------
        item_idx
            Reference items.
        k
            Neighbours per item.
        item_mask
            Items that may be returned (business rules). Masked *before* selection, so asking
            for K gives the K best allowed items (no need to over-fetch and drop).
        n_jobs
            Worker threads of the top-K kernel.

        Notes
        -----
        A model whose similarity is a stored top-N matrix (:meth:`stored_similarity`: item-kNN,
        RP3beta) answers from those rows (:func:`recctl.models.neighbors.stored_neighbors`:
        ``items x N`` work) with the same lists as the dense rows would give; every other model
        scores a dense row of the catalogue per item (``items x items`` work: minutes for the
        serving bundle of a 100,000-item catalogue).
        """
        self._check_fitted()
        if not self.supports_similar_items:
            raise UnsupportedError(f"model kind '{self.kind}' has no item similarity.")
        item_idx = np.asarray(item_idx, np.int64)
        stored = self.stored_similarity()
        if stored is not None and stored_rows_rank(stored.data):
            items, scores = stored_neighbors(stored, item_idx, k, item_mask)
            return TopK(np.arange(len(item_idx)), items, scores)
        own = sp.csr_matrix(
            (np.ones(len(item_idx)), (np.arange(len(item_idx)), item_idx)), shape=(len(item_idx), self.n_items)
        )
        rows = np.arange(len(item_idx))
        return top_k(
            lambda r: self._similar_items(item_idx[r]),
            rows,
            k,
            exclude=own,
            item_mask=item_mask,
            n_jobs=n_jobs,
            n_items=self.n_items,
        )

    def _similar_items(self, item_idx: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def stored_similarity(self) -> sp.csr_matrix | None:
        """The model's item-item similarity when it is a stored top-N matrix, else None.

        Row ``i`` holds ``i``'s neighbours and ``_similar_items`` gives those rows densely: the
        similar items are then read from the stored rows (:meth:`similar_items`), and the serving
        bundle derives its neighbour table from them at load instead of storing one
        (:func:`recctl.stages.bundle.derived_neighbors`).
        """
        return None

    def partial_fit(self: T, dataset: Dataset, *, progress: ProgressFn | None = None) -> T:
        """Update with new interactions (and new users / items) without a full retrain."""
        self._check_fitted()
        if not self.supports_incremental:
            raise UnsupportedError(f"model kind '{self.kind}' does not update incrementally; retrain it.")
        self._partial_fit(dataset, progress)
        self.n_users, self.n_items = dataset.n_users, dataset.n_items
        return self

    def _partial_fit(self, dataset: Dataset, progress: ProgressFn | None) -> None:
        raise NotImplementedError

    # -- persistence ---------------------------------------------------------------------
    def save(self, path: str | Path) -> FileRecord:
        """Pickle the model atomically; the returned record holds the sha256 for the manifest."""
        self._check_fitted()
        return save_pickle(self, path)

    @classmethod
    def load(cls: type[T], path: str | Path, sha256: str) -> T:
        """Load a model after checking the file's sha256 and the class of what it holds."""
        model = load_pickle_checked(path, sha256, expected_type=Recommender)
        if cls is not Recommender and not isinstance(model, cls):
            raise ArtifactError(f"{path}: holds a {type(model).__name__}, expected {cls.__name__}.")
        return model

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "kind")
        return f"{type(self).__name__}({params})"
