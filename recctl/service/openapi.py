"""The API's OpenAPI schema, generated from the application itself (``docs/openapi.json``).

``recctl serve CONFIG --openapi FILE`` writes it; ``tests/service/test_openapi.py`` keeps the
committed copy current (``python -m recctl.service.openapi > docs/openapi.json`` regenerates it
from ``configs/quickstart.yaml``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from recctl.config import Config

__all__ = ["openapi_schema", "write_openapi"]


def openapi_schema(cfg: Config) -> dict[str, Any]:
    """The OpenAPI document of the service for ``cfg`` (its limits appear in the schemas)."""
    from recctl.service.server import require_extra

    require_extra()
    from recctl.service.app import create_app
    from recctl.service.core import Service

    return create_app(Service(cfg), manage_lifecycle=False).openapi()


def render(cfg: Config) -> str:
    """The schema as stable JSON text (sorted keys, two-space indent, trailing newline)."""
    return json.dumps(openapi_schema(cfg), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_openapi(cfg: Config, path: Path) -> None:
    """Write the schema to ``path``."""
    path.write_text(render(cfg), encoding="utf-8")


if __name__ == "__main__":  # pragma: no cover
    from recctl.config import load_config

    root = Path(__file__).resolve().parents[2]
    sys.stdout.write(render(load_config(root / "configs" / "quickstart.yaml", check_files=False)))
