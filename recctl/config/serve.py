"""The ``serve:`` section: the HTTP service over the published serving bundle (``recctl serve``).

Every key has a safe default, so the section may be left out. Example::

    serve:
      host: 127.0.0.1              # localhost only unless told otherwise
      port: 8000
      token_env: RECCTL_SERVE_TOKEN  # write endpoints (events, reload) need this bearer token
      max_k: 100
      max_batch: 1000
      reload_interval_s: 5         # poll for a newly published bundle; 0 = only on POST /v1/admin/reload
      events:
        max_users: 200000          # users whose new events are held in memory (least recently active dropped)
        max_recent: 50
        rotate_mb: 64
        rotate_s: 3600
"""

from __future__ import annotations

from pydantic import Field

from recctl.config.base import BaseConfig

__all__ = ["ServeConfig", "ServeEventsConfig"]


class ServeEventsConfig(BaseConfig):
    """The event log (``<workdir>/events/``) and the in-memory view of recent events."""

    max_users: int = Field(
        default=200_000,
        ge=1,
        description=(
            "Users whose events since the bundle are held in memory to reflect them at once; beyond this the "
            "least recently active user's are dropped from memory (never from the log)."
        ),
    )
    max_recent: int = Field(default=50, ge=1, le=10_000, description="Events kept in memory per user (newest).")
    rotate_mb: float = Field(
        default=64.0, gt=0, description="Close the open segment for `recctl ingest --append` past this size."
    )
    rotate_s: float = Field(default=3600.0, gt=0, description="... or past this age in seconds.")
    max_pending: int = Field(
        default=100_000,
        ge=1,
        description="Events accepted but not yet on disk; beyond this POST /v1/events answers 503 (back-pressure).",
    )


class ServeConfig(BaseConfig):
    """``recctl serve``: bind address, write token, request limits, reload and the event log."""

    host: str = Field(default="127.0.0.1", description="Bind address; 0.0.0.0 exposes the service to the network.")
    port: int = Field(default=8000, ge=0, le=65535, description="TCP port (0 picks a free one and logs it).")
    token: str | None = Field(
        default=None,
        min_length=16,
        description="Bearer token for the write endpoints; prefer `token_env` so the secret stays out of the file.",
    )
    token_env: str = Field(
        default="RECCTL_SERVE_TOKEN", description="Environment variable holding the write token (read at start)."
    )
    max_k: int = Field(default=100, ge=1, le=10_000, description="Largest `k` a request may ask for.")
    max_batch: int = Field(default=1000, ge=1, description="Most users in one batch request.")
    max_items: int = Field(default=200, ge=1, description="Most items in a session/basket or an exclusion list.")
    max_events: int = Field(default=1000, ge=1, description="Most events in one POST /v1/events.")
    max_body_kb: int = Field(default=1024, ge=1, description="Largest request body; larger bodies get 413.")
    max_id_length: int = Field(default=256, ge=1, description="Longest user or item id accepted.")
    reload_interval_s: float = Field(
        default=5.0, ge=0, description="Seconds between checks for a newly published bundle; 0 disables polling."
    )
    exposures: bool = Field(
        default=True, description="Record every list served (user, variant, items, time) under an experiment."
    )
    events: ServeEventsConfig = Field(default_factory=ServeEventsConfig)
