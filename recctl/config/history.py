"""The ``history:`` section: how much run history the workdir keeps (``recctl history``)."""

from __future__ import annotations

from pydantic import Field

from recctl.config.base import BaseConfig


class HistoryConfig(BaseConfig):
    """Run history: one record per finished evaluate and per `recctl run`, in `<workdir>/history/`."""

    keep: int = Field(
        default=100,
        ge=1,
        le=100_000,
        description=(
            "Records kept per kind (evaluate, run): older ones are dropped when a new one is added. "
            "Published versions are kept by `export.versions`."
        ),
    )
