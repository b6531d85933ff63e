"""Tuning never reads the test split: the honest test metric depends on it."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from recctl.config import load_config
from recctl.stages.tune import run_tune
from recctl.tuning import trial as trial_module


def test_tune_never_opens_test_parquet(fake_config: Path, monkeypatch) -> None:  # noqa: ANN001
    pre = fake_config.parent.parent / "work" / "preprocess"
    # 1. make test.parquet unreadable: any read of it would raise
    (pre / "test.parquet").write_bytes(b"this is not parquet; tuning must not read it")
    # 2. record every split and every Parquet file that is asked for
    splits: list[str] = []
    files: list[str] = []
    real_split, real_read, real_scan = trial_module.load_split_matrix, pl.read_parquet, pl.scan_parquet

    def spy_split(directory, split, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        splits.append(split)
        return real_split(directory, split, *args, **kwargs)

    def spy_read(source, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        files.append(str(source))
        return real_read(source, *args, **kwargs)

    def spy_scan(source, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        files.append(str(source))
        return real_scan(source, *args, **kwargs)

    monkeypatch.setattr(trial_module, "load_split_matrix", spy_split)
    monkeypatch.setattr(pl, "read_parquet", spy_read)
    monkeypatch.setattr(pl, "scan_parquet", spy_scan)

    manifest = run_tune(load_config(fake_config))

    assert splits == ["valid"]
    assert any(f.endswith("tune_train.parquet") for f in files)
    assert not any(Path(f).name == "test.parquet" for f in files)
    assert not any(Path(rec.path).name == "test.parquet" for rec in manifest.inputs)
    assert manifest.summary["note"] == "scored on validation split; test untouched"


def test_trial_data_holds_tune_train_and_valid_only(fake_config: Path) -> None:
    pre = fake_config.parent.parent / "work" / "preprocess"
    (pre / "test.parquet").unlink()
    (pre / "train.parquet").unlink()  # train = tune_train + valid: fitting on it would leak valid
    data = trial_module.load_trial_data(pre)
    tune_train = pl.read_parquet(pre / "tune_train.parquet")
    valid = pl.read_parquet(pre / "valid.parquet")
    assert data.dataset.split == "tune_train"
    assert data.dataset.interactions.nnz == tune_train.height
    assert data.valid.nnz == valid.height
