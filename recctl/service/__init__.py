"""``recctl serve``: an HTTP recommendation service over the published serving bundle.

Optional extra: ``pip install 'recctl[serve]'`` (FastAPI, uvicorn, uvloop, httptools). The API
is documented in ``docs/serving.md`` and ``docs/openapi.json``; the design (event log, reload,
bounds) in ``docs/architecture.md``, section "The HTTP service".

Modules, one job each:

* ``core``       the service without HTTP: lists, events, reload, readiness;
* ``app``        FastAPI routes, schemas, auth, errors, metrics middleware;
* ``server``     binds the socket and runs uvicorn;
* ``eventlog``   the durable append-only event log (fsync'd, group commit, rotation);
* ``layout``     events written in the shop's raw layout (what ``ingest --append`` reads);
* ``live``       events since the bundle held in bounded memory, and how they change a list;
* ``bundles``    the current bundle and its atomic hot reload;
* ``exposures``  which list each experiment user saw;
* ``metrics``    Prometheus text.

Only ``core``, ``eventlog``, ``layout``, ``live``, ``bundles``, ``exposures`` and ``metrics``
import without the extra.
"""

from __future__ import annotations

__all__ = ["run_service"]


def run_service(*args, **kwargs):  # noqa: ANN002, ANN003, ANN201 - thin lazy re-export
    """Run the service (see :func:`recctl.service.server.run_service`)."""
    from recctl.service.server import run_service as _run

    return _run(*args, **kwargs)
