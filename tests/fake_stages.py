"""Write finished stages from ready-made frames, for tests that need a workdir but not the data layer."""

from __future__ import annotations

import polars as pl
import scipy.sparse as sp

from recctl.artifacts import write_parquet_atomic
from recctl.config import Config
from recctl.stages._common import StageRun


def write_preprocess_stage(
    cfg: Config,
    frames: dict[str, pl.DataFrame],
    item_features: tuple[sp.csr_matrix, list[str]] | None = None,
) -> None:
    """Write ``<workdir>/preprocess/`` with a manifest, as the preprocess stage would.

    Parameters
    ----------
    cfg
        The config whose workdir receives the stage.
    frames
        File stem -> frame (``users``, ``items``, ``train``, ``test``, ``tune_train``, ``valid``...).
    item_features
        Optional (matrix, feature names) written as ``item_features.npz`` / ``item_feature_names.parquet``.
    """
    with StageRun(cfg, "preprocess", sections=["preprocess"]) as run:
        for name, frame in frames.items():
            write_parquet_atomic(frame, run.dir / f"{name}.parquet")
            run.add_output(run.dir / f"{name}.parquet", rows=frame.height)
        if item_features is not None:
            matrix, names = item_features
            sp.save_npz(run.dir / "item_features.npz", sp.csr_matrix(matrix))
            pl.DataFrame({"feature": names}).write_parquet(run.dir / "item_feature_names.parquet")
            run.add_output(run.dir / "item_features.npz")
            run.add_output(run.dir / "item_feature_names.parquet")
