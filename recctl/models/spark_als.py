"""Implicit-feedback ALS trained by Spark MLlib, for user bases and catalogues beyond one machine.

``kind: spark_als`` fits ``pyspark.ml.recommendation.ALS`` with ``implicitPrefs=True`` (Hu, Koren
and Volinsky's confidence-weighted least squares: preference 1 for every observed pair, confidence
``1 + alpha * r``) on the training matrix, on the executors of the session the stage runs in
(``engine: spark``; a ``local[*]`` session otherwise). The learnt factors then come back as two
float32 arrays, so the model is an ordinary recctl model from there on: it is pickled without any
Spark object, evaluated, tuned, exported and scored through the shared top-K kernel (and on the
executors with ``engine: spark``) like every other kind, and loads where pyspark is not installed.

Scores are ``U[u] . V[i]``; users or items without a training interaction have zero factors (MLlib
learns no factor for them), so they score 0 and the fallback chain serves them.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import Field

from recctl.data.dataset import Dataset
from recctl.models.base import ModelConfig, ProgressFn, Recommender
from recctl.models.registry import register

__all__ = ["SparkALSConfig", "SparkALSModel"]

log = logging.getLogger(__name__)


class SparkALSConfig(ModelConfig):
    """Parameters of :class:`SparkALSModel` (names follow MLlib's ``ALS``)."""

    kind: Literal["spark_als"] = "spark_als"
    factors: int = Field(default=64, ge=1, description="Rank of the factorisation (MLlib `rank`).")
    iterations: int = Field(default=15, ge=1, description="Alternating passes (MLlib `maxIter`).")
    regularization: float = Field(default=0.05, ge=0, description="L2 penalty (MLlib `regParam`).")
    alpha: float = Field(default=10.0, gt=0, description="Confidence growth: confidence = 1 + alpha x weight.")
    use_weights: bool = Field(default=True, description="Confidence from the aggregated weights (false: every pair 1).")
    nonnegative: bool = Field(default=False, description="Non-negative least squares (MLlib `nonnegative`).")
    blocks: int = Field(default=4, ge=1, description="User and item blocks (MLlib `numUserBlocks`/`numItemBlocks`).")
    random_state: int | None = Field(
        default=None, description="Seed of the initial factors (default: the experiment seed)."
    )


@register("spark_als")
class SparkALSModel(Recommender):
    """MLlib implicit ALS (see the module docstring).

    Attributes
    ----------
    user_factors_, item_factors_
        float32 ``(n_users, factors)`` / ``(n_items, factors)``; zero rows for ids without training data.
    """

    config_class = SparkALSConfig
    supports_similar_items = True
    config: SparkALSConfig

    def _fit(self, dataset: Dataset, progress: ProgressFn | None) -> None:
        from recctl.engine.spark.session import current_spark, require_spark, spark_job

        require_spark("model kind spark_als")
        from pyspark.ml.recommendation import ALS

        cfg = self.config
        spark = current_spark()
        coo = dataset.interactions.tocoo()
        ratings = coo.data.astype(np.float32) if cfg.use_weights else np.ones(coo.nnz, np.float32)
        table = pa.table(
            {
                "user": pa.array(coo.row.astype(np.int32)),
                "item": pa.array(coo.col.astype(np.int32)),
                "rating": pa.array(ratings),
            }
        )
        frame = spark.createDataFrame(table)
        als = ALS(
            rank=cfg.factors,
            maxIter=cfg.iterations,
            regParam=cfg.regularization,
            alpha=cfg.alpha,
            implicitPrefs=True,
            nonnegative=cfg.nonnegative,
            numUserBlocks=cfg.blocks,
            numItemBlocks=cfg.blocks,
            seed=cfg.random_state if cfg.random_state is not None else 0,
            userCol="user",
            itemCol="item",
            ratingCol="rating",
            coldStartStrategy="drop",
        )
        with spark_job("fitting spark_als"):
            fitted = als.fit(frame)
        self.user_factors_ = _dense_factors(fitted.userFactors.toArrow(), dataset.n_users, cfg.factors)
        self.item_factors_ = _dense_factors(fitted.itemFactors.toArrow(), dataset.n_items, cfg.factors)
        log.info("spark_als: %d x %d factors, rank %d", dataset.n_users, dataset.n_items, cfg.factors)
        if progress:
            progress(1.0)

    def _score(self, user_idx: np.ndarray) -> np.ndarray:
        return np.asarray(self.user_factors_[user_idx] @ self.item_factors_.T, dtype=np.float32)

    def _similar_items(self, item_idx: np.ndarray) -> np.ndarray:
        norms = np.linalg.norm(self.item_factors_, axis=1)
        norms[norms == 0] = 1.0
        unit = self.item_factors_ / norms[:, None]
        return np.asarray(unit[item_idx] @ unit.T, dtype=np.float32)


def _dense_factors(table: pa.Table, n: int, rank: int) -> np.ndarray:
    """MLlib's ``(id, features)`` rows as a dense ``(n, rank)`` float32 array (missing ids: zeros)."""
    out = np.zeros((n, rank), np.float32)
    if table.num_rows:
        ids = table.column("id").to_numpy()
        values = table.column("features").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        out[ids] = values.reshape(len(ids), rank).astype(np.float32)
    return out
