"""The grown dataset: stable indices, weights equal to preprocessing everything at once."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from recctl.artifacts import Manifest
from recctl.columns import Columns
from recctl.config.preprocess import PreprocessConfig
from recctl.data.preprocess import aggregate, decay_weights, weight_events
from recctl.errors import ArtifactError
from recctl.incremental.batch import _append_ids, _merge_train, consumed_by_preprocess


def _events(n: int, start: dt.datetime, seed: int) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            Columns.UserIdx: rng.integers(0, 6, n).astype(np.int32),
            Columns.ItemIdx: rng.integers(0, 5, n).astype(np.int32),
            Columns.Event: rng.choice(["view", "purchase"], n),
            Columns.Timestamp: [start + dt.timedelta(hours=int(h)) for h in rng.integers(0, 240, n)],
            Columns.Value: rng.integers(1, 4, n).astype(np.float64),
        }
    ).with_columns(pl.col(Columns.Timestamp).dt.replace_time_zone("UTC"))


@pytest.mark.parametrize("how", ["sum", "max", "last"])
@pytest.mark.parametrize("half_life", [None, 3.0])
@pytest.mark.parametrize("reference", ["user", "train_end"])
def test_merged_weights_equal_preprocessing_all_events(how: str, half_life: float | None, reference: str) -> None:
    pc = PreprocessConfig(
        event_weights={"view": 1.0, "purchase": 5.0},
        aggregate=how,
        half_life_days=half_life,
        decay_reference=reference,
    )
    old = _events(200, dt.datetime(2026, 1, 1), 0)
    new = _events(40, dt.datetime(2026, 1, 11), 1)
    old_w, _ = weight_events(old, pc)
    new_w, _ = weight_events(new, pc)
    base = aggregate(decay_weights(old_w, half_life, reference), how)
    merged = _merge_train(base, decay_weights(new_w, half_life, reference), how, half_life, reference)
    everything, _ = weight_events(pl.concat([old, new]), pc)
    expected = aggregate(decay_weights(everything, half_life, reference), how)
    assert merged.select(Columns.UserIdx, Columns.ItemIdx).equals(expected.select(Columns.UserIdx, Columns.ItemIdx))
    np.testing.assert_allclose(merged[Columns.Weight].to_numpy(), expected[Columns.Weight].to_numpy(), rtol=1e-9)


def test_new_ids_are_appended_sorted_after_the_old_ones() -> None:
    known = pl.DataFrame({Columns.User: ["b", "d"], Columns.UserIdx: pl.Series([0, 1], dtype=pl.Int32)})
    new = _append_ids(known, Columns.User, Columns.UserIdx, pl.Series(["z", "d", "a", "z"]))
    assert new.rows() == [("a", 2), ("z", 3)]


def _manifest(stage: str, started: str, batches: list[dict] | None = None) -> Manifest:
    m = Manifest(stage=stage, config_section={}, config_hash="", seed=0, started_at=started)
    m.summary = {"batches": batches or []}
    return m


def test_consumed_rows_follow_the_batches_preprocess_read() -> None:
    batches = [
        {
            "kind": "source",
            "path": "a.csv",
            "sha256": "a",
            "added": 100,
            "ingested_at": "2026-05-03T00:00:00Z",
        },
        {
            "kind": "append",
            "path": "d1.csv",
            "sha256": "d1",
            "added": 10,
            "ingested_at": "2026-05-01T00:00:00Z",
        },
        {
            "kind": "append",
            "path": "d2.csv",
            "sha256": "d2",
            "added": 7,
            "ingested_at": "2026-05-02T12:00:00Z",
        },
    ]
    # the source was re-read later (a full re-ingest) but preprocess had already read it
    rows, shas = consumed_by_preprocess(
        _manifest("preprocess", "2026-05-02T00:00:00Z"), _manifest("ingest", "", batches)
    )
    assert rows == 110 and shas == ["a", "d1"]
    reordered = [batches[0], batches[2], batches[1]]
    with pytest.raises(ArtifactError, match="full retrain"):
        consumed_by_preprocess(_manifest("preprocess", "2026-05-02T00:00:00Z"), _manifest("ingest", "", reordered))
