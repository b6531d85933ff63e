"""The polars -> scipy.sparse conversions in recctl.data.dataset."""

from __future__ import annotations

import numpy as np
import polars as pl

from recctl.data.dataset import Dataset, category_matrix, interactions_matrix


def test_category_matrix_is_one_hot_in_sorted_value_order() -> None:
    mat = category_matrix(pl.Series(["toys", None, "books", "toys"]))
    # columns: "" (null), "books", "toys"
    assert mat.toarray().tolist() == [[0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]]
    assert mat.dtype == np.float32


def test_interactions_matrix_sums_duplicates_and_defaults_to_ones() -> None:
    frame = pl.DataFrame({"user_idx": [0, 0, 1], "item_idx": [2, 2, 0]})
    assert interactions_matrix(frame, 2, 3).toarray().tolist() == [[0, 0, 2], [1, 0, 0]]
    weighted = frame.with_columns(weight=pl.Series([0.5, 1.0, 3.0]))
    assert interactions_matrix(weighted, 2, 3).toarray().tolist() == [[0, 0, 1.5], [3, 0, 0]]
    assert interactions_matrix(frame.head(0), 2, 3).nnz == 0


def test_from_frames_indexes_ids_in_sorted_order_and_looks_them_up() -> None:
    frame = pl.DataFrame({"user_id": ["b", "a", "b"], "item_id": ["x", "y", "y"]})
    data = Dataset.from_frames(frame)
    assert list(data.user_ids) == ["a", "b"] and list(data.item_ids) == ["x", "y"]
    assert data.user_index(["b", "zz"]).tolist() == [1, -1]
    assert data.item_index(["y"]).tolist() == [1]
    assert data.interactions.toarray().tolist() == [[0, 1], [1, 1]]
