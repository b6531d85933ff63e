"""``recctl serve``: the HTTP recommendation service over the published serving bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from recctl.cli._common import Invocation, command


@command()
def serve_command(
    cli: Invocation,
    host: Annotated[
        str | None, typer.Option("--host", help="Bind address (default serve.host, 127.0.0.1).", show_default=False)
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", "-p", min=0, max=65535, help="TCP port (default serve.port, 8000).", show_default=False),
    ] = None,
    openapi: Annotated[
        Path | None,
        typer.Option(
            "--openapi", help="Write the API's OpenAPI schema (JSON) to this file and exit.", show_default=False
        ),
    ] = None,
) -> None:
    """Answer recommendation requests over HTTP from the published serving bundle; learn from each posted event.

    Needs the serve extra: pip install 'recctl[serve]' (exit 6 without it). Reads <workdir>/export/bundle (run serve-export first) and switches to a newly published bundle without dropping requests.

    POST /v1/events stores events durably in <workdir>/events/ (fsync'd before the answer) in the shop's own export layout, so `recctl ingest CONFIG --append <workdir>/events/*.csv` takes them in; write endpoints need the bearer token of serve.token or $RECCTL_SERVE_TOKEN.

    Endpoints and limits: docs/serving.md, or GET /docs on the running service. Stop with Ctrl-C or SIGTERM (requests in flight finish). Exit 8 when the port or the workdir's event log is held by another process.

    \b
    Example:
        export RECCTL_SERVE_TOKEN=$(openssl rand -hex 24)
        recctl serve configs/quickstart.yaml --port 8000
        curl 'http://127.0.0.1:8000/v1/recommendations?user_id=C10001&k=5'
    """
    cfg = cli.config
    if openapi is not None:
        from recctl.service.openapi import write_openapi

        write_openapi(cfg, openapi)
        cli.emit({"openapi": str(openapi)})
        cli.note(f"OpenAPI schema written to {openapi}")
        return
    from recctl.service import run_service

    run_service(cfg, host=host, port=port)
    # with --json a supervisor reading stdout learns that the service stopped cleanly
    cli.emit({"status": "stopped", "host": host or cfg.serve.host, "port": cfg.serve.port if port is None else port})
