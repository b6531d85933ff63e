"""The ``engine:`` section: where the heavy work runs (this machine, or Apache Spark)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from recctl.config.base import BaseConfig


class EngineConfig(BaseConfig):
    """Which engine runs ingest, preprocess, scoring and evaluation.

    ``local`` (default) runs everything in this process. ``spark`` runs the heavy work as Spark
    jobs (``pip install 'recctl[spark]'``); manifests, outputs, exit codes and ``--json`` stay
    the same. ``engine: spark`` is short for ``engine: {kind: spark}``.
    """

    kind: Literal["local", "spark"] = Field(default="local", description="`local` (this process) or `spark`.")
    master: str = Field(
        default="local[*]",
        description=(
            "Spark master URL: `local[N]`, `local-cluster[W,C,MB]`, `spark://host:7077`, `yarn`, `k8s://...`. "
            "Ignored when a Spark session already exists (spark-submit, a notebook, Databricks)."
        ),
    )
    app_name: str = Field(default="recctl", description="Spark application name (shown in the Spark UI).")
    conf: dict[str, str] = Field(
        default_factory=dict,
        description="Spark settings passed as they are, e.g. `spark.executor.memory: 4g`, `spark.hadoop.fs.s3a.*`.",
    )
    partitions: int = Field(
        default=0,
        ge=0,
        description="Partitions of the user-side work (scoring, evaluation); 0: 2 x Spark's default parallelism.",
    )
    scratch_dir: str | None = Field(
        default=None,
        description=(
            "Where Spark jobs write intermediate Parquet that the driver then reads: a path or URI that executors "
            "and driver both reach (default: a folder inside the workdir, fine for local masters and a shared "
            "file system)."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _short_form(cls, data: Any) -> Any:
        # `engine: spark` / `engine: local`
        return {"kind": data} if isinstance(data, str) else data

    @field_validator("conf", mode="before")
    @classmethod
    def _conf_as_text(cls, value: Any) -> Any:
        # YAML turns `spark.executor.cores: 2` into an int and `...enabled: true` into a bool; Spark wants text
        if isinstance(value, dict):
            return {str(k): (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in value.items()}
        return value

    @property
    def is_spark(self) -> bool:
        """Whether the heavy work runs on Spark."""
        return self.kind == "spark"
