"""Popularity: the baseline every personalised model must beat.

``mode: global`` ranks items by how many distinct users interacted with them (or by total
weight); ``mode: recent`` counts only the last ``window_days`` of training events;
``mode: category`` ranks within each user's favourite category first.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl
from pydantic import Field

from recctl.columns import Columns
from recctl.data.dataset import Dataset, category_matrix
from recctl.models.base import ModelConfig, ProgressFn, Recommender
from recctl.models.registry import register


class PopularityConfig(ModelConfig):
    """Parameters of :class:`PopularityModel`."""

    kind: Literal["popularity"] = "popularity"
    mode: Literal["global", "recent", "category"] = "global"
    measure: Literal["users", "weight"] = Field(default="users", description="Count distinct users or sum weights.")
    window_days: float = Field(default=30.0, gt=0, description="`recent`: how far back to count.")
    category_column: str = Field(default="category", description="`category`: catalogue column.")


@register("popularity")
class PopularityModel(Recommender):
    """Recommends the most popular items (same list for everyone in ``global`` mode)."""

    config_class = PopularityConfig
    supports_cold_users = True
    supports_item_history = True
    supports_incremental = True
    config: PopularityConfig

    def _counts(self, dataset: Dataset) -> np.ndarray:
        cfg = self.config
        if cfg.mode == "recent" and dataset.events is not None and dataset.events.height:
            end = dataset.events[Columns.Timestamp].max()
            recent = dataset.events.filter(
                pl.col(Columns.Timestamp) >= pl.lit(end) - pl.duration(seconds=int(cfg.window_days * 86400))
            )
            agg = recent.group_by(Columns.ItemIdx).agg(
                pl.col(Columns.UserIdx).n_unique().alias("u"), pl.col(Columns.Weight).sum().alias("w")
            )
            counts = np.zeros(dataset.n_items, np.float64)
            counts[agg[Columns.ItemIdx].to_numpy()] = agg["u" if cfg.measure == "users" else "w"].to_numpy()
            return counts
        mat = dataset.interactions
        if cfg.measure == "users":
            return np.asarray((mat > 0).sum(axis=0)).ravel().astype(np.float64)
        return np.asarray(mat.sum(axis=0)).ravel().astype(np.float64)

    def _fit(self, dataset: Dataset, progress: ProgressFn | None) -> None:
        counts = self._counts(dataset)
        # all-time counts break ties in `recent` mode, so older best-sellers still rank
        if self.config.mode == "recent":
            counts = counts + np.asarray((dataset.interactions > 0).sum(axis=0)).ravel() / (dataset.n_users + 1.0)
        self.item_scores_ = (counts / max(counts.max(), 1.0)).astype(np.float32)
        self.user_category_boost_ = None
        if self.config.mode == "category":
            self._fit_category(dataset)

    def _fit_category(self, dataset: Dataset) -> None:
        col = self.config.category_column
        if dataset.items is None or col not in dataset.items.columns:
            from recctl.errors import RecctlError

            raise RecctlError(f"popularity mode 'category' needs catalogue column '{col}' (models.*.category_column).")
        item_cat = category_matrix(dataset.items.sort(Columns.ItemIdx)[col])
        self.item_cat_ = item_cat
        self.user_cat_ = (dataset.interactions @ item_cat).tocsr()  # weight per user and category

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        base = np.broadcast_to(self.item_scores_, (len(user_idx), self.n_items)).copy()
        if self.config.mode == "category":
            prefs = self.user_cat_[user_idx].toarray()
            norm = prefs.sum(axis=1, keepdims=True)
            prefs = np.divide(prefs, norm, out=np.zeros_like(prefs), where=norm > 0)
            # category share dominates, popularity orders within a category
            base += (self.item_cat_ @ prefs.T).T.astype(np.float32) * 2.0
        return base

    def _score_from_items(self, item_idx: np.ndarray, weights: np.ndarray) -> np.ndarray:
        scores = self.item_scores_.copy()
        if self.config.mode == "category" and len(item_idx):
            # the visitor's categories come first, as for a known user
            prefs = np.asarray(weights @ self.item_cat_[item_idx].toarray(), np.float64).ravel()
            if prefs.sum() > 0:
                scores += (self.item_cat_ @ (prefs / prefs.sum())).astype(np.float32) * 2.0
        return scores

    def _partial_fit(self, dataset: Dataset, progress: ProgressFn | None) -> None:
        # counts are a sum over events, so refitting on the grown dataset is exact and cheap
        self._fit(dataset, progress)
