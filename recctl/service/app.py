"""The HTTP API (FastAPI): routes, request/response schemas, auth, errors, metrics middleware.

``create_app(service)`` builds the ASGI application for one :class:`recctl.service.core.Service`.
The request and response models carry the limits of the config's ``serve:`` section, so the
generated OpenAPI schema (``GET /openapi.json``, committed as ``docs/openapi.json``) documents
them. Handlers return pre-serialised JSON (the schemas describe it) so a list costs one
``json.dumps`` and no second validation pass.
"""

# no `from __future__ import annotations`: FastAPI resolves the local Annotated aliases at runtime
import contextlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from recctl.service.core import EventIn, Service, ServiceError

__all__ = ["API_VERSION", "create_app"]

log = logging.getLogger(__name__)

#: version of the HTTP API (paths are under /v1)
API_VERSION = "1.0"

_NO_CONTROL = r"^[^\x00-\x1f\x7f]+$"


def _json(body: Any, status: int = 200) -> Response:
    return Response(
        json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8"),
        status_code=status,
        media_type="application/json",
    )


def _error(status: int, message: str, detail: list[dict[str, Any]] | None = None) -> Response:
    return _json({"error": message, "detail": detail or []}, status)


class _Guard:
    """Pure ASGI middleware: request size limit, latency and status metrics per route."""

    def __init__(self, app: Any, service: Service, max_body: int) -> None:
        self.app = app
        self.service = service
        self.max_body = max_body

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > self.max_body
                except ValueError:
                    too_big = True
                if too_big:
                    await _error(413, f"request body larger than serve.max_body_kb ({self.max_body // 1024} KB)")(
                        scope, receive, send
                    )
                    self._record(scope, 413, start)
                    return
        seen = 0

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _TooLarge()
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            await _error(413, f"request body larger than serve.max_body_kb ({self.max_body // 1024} KB)")(
                scope, receive, send
            )
            status["code"] = 413
        self._record(scope, status["code"], start)

    def _record(self, scope: dict[str, Any], code: int, start: float) -> None:
        route = scope.get("route")
        path = getattr(route, "path", None) or "unmatched"
        m = self.service.metrics
        m.inc("recctl_serve_requests_total", route=path, status=str(code))
        m.observe("recctl_serve_request_seconds", time.perf_counter() - start, route=path)


class _TooLarge(Exception):
    pass


def create_app(service: Service, *, manage_lifecycle: bool = True) -> FastAPI:
    """Build the FastAPI application over ``service``.

    Parameters
    ----------
    service
        The service (not started: the application's lifespan starts and stops it when
        ``manage_lifecycle``).
    manage_lifecycle
        Start the service on startup (load bundle, open event log) and stop it on shutdown.

    Returns
    -------
    FastAPI
        The ASGI application.
    """
    sc = service.sc
    Id = Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=sc.max_id_length, pattern=_NO_CONTROL)
    ]
    K = Annotated[
        int | None, Field(ge=1, le=sc.max_k, description=f"List length, 1..{sc.max_k} (default: the bundle's K).")
    ]

    class Strict(BaseModel):
        model_config = ConfigDict(extra="forbid")

    class Item(BaseModel):
        item_id: str
        rank: int = Field(description="1..k; order by rank, scores of different sources are not comparable.")
        score: float = Field(description="The source model's own score.")
        source: str = Field(description="The model (main or fallback, or the neighbour model) that gave the item.")

    class UserList(BaseModel):
        user_id: str
        known_user: bool = Field(description="false: the bundle does not know the user (fallback or recent-item list).")
        variant: str | None = Field(description="A/B variant by the experiment's salted rule (null without one).")
        events_since_bundle: int = Field(description="Events of this user since the bundle, reflected in the list.")
        items: list[Item]
        bundle: str = Field(description="Version of the bundle that answered.")

    class BatchRequest(Strict):
        user_ids: list[Id] = Field(min_length=1, max_length=sc.max_batch)
        k: K = None
        exclude: list[Id] = Field(default_factory=list, max_length=sc.max_items)

    class BatchAnswer(BaseModel):
        bundle: str
        results: list[UserList]

    class SessionRequest(Strict):
        items: list[Id] = Field(
            min_length=1, max_length=sc.max_items, description="Items of the basket or session, most recent first."
        )
        k: K = None
        exclude: list[Id] = Field(default_factory=list, max_length=sc.max_items)

    class ItemList(BaseModel):
        bundle: str
        items: list[Item]

    class SimilarList(ItemList):
        item_id: str

    class Event(Strict):
        user_id: Id
        item_id: Id
        event: Id | None = Field(default=None, description="Canonical event (e.g. view, purchase); see GET /v1/info.")
        timestamp: AwareDatetime | None = Field(
            default=None, description="When it happened (ISO 8601 with offset); default: when the service receives it."
        )
        value: float | None = Field(
            default=None, allow_inf_nan=False, description="Quantity / rating, when the shop logs one."
        )

    class EventBatch(Strict):
        events: list[Event] = Field(min_length=1, max_length=sc.max_events)

    class EventAnswer(BaseModel):
        accepted: int = Field(description="Events written and fsync'd by this request.")
        duplicates: int = Field(description="Events already accepted before (replays add nothing).")
        segment: str | None = Field(description="The log segment written to.")

    class ErrorAnswer(BaseModel):
        error: str
        detail: list[dict[str, Any]] = []

    bearer = HTTPBearer(auto_error=False, description="serve.token or $RECCTL_SERVE_TOKEN")

    def require_token(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if service.token is None:
            raise ServiceError(
                403, f"write endpoints are disabled: no token configured (set serve.token or ${sc.token_env})"
            )
        given = credentials.credentials if credentials is not None else ""
        if not hmac.compare_digest(given.encode(), service.token.encode()):
            raise ServiceError(401, "missing or wrong bearer token (Authorization: Bearer <token>)")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if manage_lifecycle:
            await service.run_background()
        yield
        if manage_lifecycle:
            await service.stop()

    errors: dict[int | str, dict[str, Any]] = {
        401: {"model": ErrorAnswer, "description": "Missing or wrong token."},
        403: {"model": ErrorAnswer, "description": "No write token configured."},
    }
    app = FastAPI(
        title="recctl serve",
        version=API_VERSION,
        summary="Recommendations from the published serving bundle; events reflected at once.",
        lifespan=lifespan,
        responses={422: {"model": ErrorAnswer, "description": "Invalid request; `detail` says where."}},
        docs_url="/docs",
        redoc_url=None,
    )
    app.add_middleware(_Guard, service=service, max_body=sc.max_body_kb * 1024)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        detail: list[dict[str, Any]] = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        loc: list[Any] = detail[0]["loc"] if detail else []
        msg = str(detail[0]["msg"]) if detail else "invalid request"
        where = ".".join(str(p) for p in loc)
        return _error(422, f"{where}: {msg}" if where else msg, detail)

    @app.exception_handler(ServiceError)
    async def _refused(request: Request, exc: ServiceError) -> Response:
        detail = [{"loc": exc.loc, "msg": exc.message}] if exc.loc else []
        return _error(exc.status, exc.message, detail)

    # -- reads -----------------------------------------------------------------------------------
    @app.get("/v1/recommendations", response_model=UserList, tags=["recommendations"])
    async def recommendations(
        user_id: Annotated[Id, Query(description="The shop's user id (unknown users get the fallback list).")],
        k: Annotated[int | None, Query(ge=1, le=sc.max_k)] = None,
        exclude: Annotated[list[Id], Query(max_length=sc.max_items, description="Item ids never to return.")] = [],  # noqa: B006
    ) -> Response:
        """Top-k items for one user: the nightly list, with events since the bundle reflected."""
        return _json(service.recommend(user_id, k, exclude))

    @app.post("/v1/recommendations/batch", response_model=BatchAnswer, tags=["recommendations"])
    async def batch(body: BatchRequest) -> Response:
        """Lists for several users at once (in request order)."""
        return _json(service.batch(body.user_ids, body.k, body.exclude))

    @app.post(
        "/v1/recommendations/session",
        response_model=ItemList,
        tags=["recommendations"],
        responses={404: {"model": ErrorAnswer, "description": "An item is not in the catalogue."}},
    )
    async def session(body: SessionRequest) -> Response:
        """A list for an anonymous visitor's basket or session (neighbours of its items, then the fallback)."""
        return _json(service.session(body.items, body.k, body.exclude))

    @app.get(
        "/v1/items/similar",
        response_model=SimilarList,
        tags=["recommendations"],
        responses={404: {"model": ErrorAnswer, "description": "The item is not in the catalogue."}},
    )
    async def similar(
        item_id: Annotated[Id, Query(description="The shop's item id.")],
        k: Annotated[int | None, Query(ge=1, le=sc.max_k)] = None,
    ) -> Response:
        """Items most similar to one item."""
        return _json(service.similar(item_id, k))

    # -- writes ----------------------------------------------------------------------------------
    @app.post(
        "/v1/events",
        response_model=EventAnswer,
        tags=["events"],
        dependencies=[Depends(require_token)],
        responses={**errors, 503: {"model": ErrorAnswer, "description": "Not stored (disk full or busy); retry."}},
    )
    async def events(body: EventBatch) -> Response:
        """Store events durably (fsync'd before the answer); the user's next list reflects them."""
        parsed = [EventIn(e.user_id, e.item_id, e.event, e.timestamp, e.value) for e in body.events]
        return _json(await service.add_events(parsed))

    @app.post("/v1/admin/reload", tags=["admin"], dependencies=[Depends(require_token)], responses=errors)
    async def reload() -> Response:
        """Load the published bundle now if it changed (a broken one is refused; the old one keeps serving)."""
        return _json(await service.reload())

    @app.post("/v1/admin/rotate", tags=["admin"], dependencies=[Depends(require_token)], responses=errors)
    async def rotate() -> Response:
        """Close the open event-log segment so `recctl ingest --append` can take it."""
        return _json(await service.rotate())

    # -- status ----------------------------------------------------------------------------------
    @app.get("/healthz", tags=["status"])
    async def healthz() -> Response:
        """Liveness: the process answers."""
        return _json({"status": "ok"})

    @app.get("/readyz", tags=["status"], responses={503: {"description": "No bundle loaded."}})
    async def readyz() -> Response:
        """Readiness: a bundle answers; the last reload error, if any, and the event log's state."""
        ok, body = service.ready()
        return _json(body, 200 if ok else 503)

    @app.get("/v1/info", tags=["status"])
    async def info() -> Response:
        """The bundle's version and model card, and the events this shop's layout accepts."""
        body = service.info()
        body["events"] = service.layout.events()
        body["limits"] = {
            "max_k": sc.max_k,
            "max_batch": sc.max_batch,
            "max_items": sc.max_items,
            "max_events": sc.max_events,
        }
        return _json(body)

    @app.get("/metrics", tags=["status"], response_class=PlainTextResponse)
    async def metrics() -> Response:
        """Request counts and latencies, event and reload counters, in the Prometheus text format."""
        return PlainTextResponse(service.render_metrics(), media_type="text/plain; version=0.0.4")

    return app
