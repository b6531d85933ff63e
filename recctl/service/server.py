"""Run the service: bind the socket, start uvicorn, stop gracefully on SIGTERM / Ctrl-C.

uvicorn runs programmatically (``uvicorn.Config`` + ``uvicorn.Server.run(sockets=...)``) on a
socket bound here, so a port already in use is reported as exit 8 naming the address before
anything starts. One process, one event loop (uvloop and httptools when installed): every list
is answered from memory in microseconds, and a single writer keeps the event log simple and
ordered; run several services on separate workdirs (or behind a proxy, read-only replicas) to
scale out. On SIGTERM or Ctrl-C uvicorn stops accepting connections, lets requests in flight
finish (up to 10 s), then the service closes the open event-log segment.
"""

from __future__ import annotations

import errno
import importlib.util
import logging
import socket

from recctl.config import Config
from recctl.errors import MissingExtraError

__all__ = ["require_extra", "run_service", "single_threaded_blas"]

log = logging.getLogger(__name__)


def require_extra() -> None:
    """Raise ``MissingExtraError`` (exit 6, with the pip command) when the serve extra is absent."""
    for module in ("fastapi", "uvicorn"):
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError("recctl serve", "serve", module)


def single_threaded_blas() -> None:
    """Hold BLAS to one thread for the life of the process.

    A request's linear algebra is one small product (a user vector against the item factors);
    a multi-threaded BLAS splits it across threads that then spin waiting for work, taking the
    CPU the event loop needs: measured 8.3 ms per 50,000 x 64 product on two busy cores
    against 0.77 ms on one thread.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def _bind(host: str, port: int) -> socket.socket:
    from recctl.errors import BusyError, ConfigError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise BusyError(f"{host}:{port} is already in use; stop the other server or pass --port") from None
        raise ConfigError(f"serve.host / serve.port: cannot bind {host}:{port} ({exc.strerror})") from None
    sock.set_inheritable(True)
    return sock


def run_service(cfg: Config, *, host: str | None = None, port: int | None = None) -> None:
    """Serve ``cfg``'s published bundle over HTTP until stopped (blocks).

    Parameters
    ----------
    cfg
        The experiment config (its ``serve:`` section; ``host`` / ``port`` override it).

    Raises
    ------
    MissingExtraError
        FastAPI or uvicorn is not installed (exit 6: ``pip install 'recctl[serve]'``).
    ArtifactError
        No published bundle or a broken one (exit 5).
    BusyError
        The port or this workdir's event log is held by another process (exit 8).
    """
    require_extra()
    import uvicorn

    from recctl.service.app import create_app
    from recctl.service.core import Service, check_bundle_exists

    check_bundle_exists(cfg)
    single_threaded_blas()
    host = host or cfg.serve.host
    port = cfg.serve.port if port is None else port
    sock = _bind(host, port)
    service = Service(cfg)
    service.start()
    from recctl.service.fastpath import FastPath

    app = FastPath(create_app(service), service)
    service.settle_memory()
    config = uvicorn.Config(
        app,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=10,
        limit_concurrency=None,
        backlog=2048,
    )
    # uvicorn's own messages (and tracebacks of internal errors) go where recctl's logs go
    ours = logging.getLogger("recctl")
    for name in ("uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers = list(ours.handlers)
        logger.setLevel(logging.INFO if ours.level <= logging.INFO else logging.WARNING)
        logger.propagate = False
    bound = sock.getsockname()
    where = f"[{bound[0]}]" if sock.family == socket.AF_INET6 else bound[0]
    log.warning("recctl serve: listening on http://%s:%d (bundle %s)", where, bound[1], service.holder.version)
    uvicorn.Server(config).run(sockets=[sock])
