"""A fast path for the two hot reads, in front of the FastAPI application.

``GET /v1/recommendations`` and ``GET /v1/items/similar`` are most of a shop's traffic, and
each is a few microseconds of work in the bundle. Through FastAPI's routing, dependency
solving, parameter validation and middleware stack a request costs several hundred
microseconds of Python, which on two shared cores caps throughput. This ASGI layer answers
those two routes directly **when the request is well-formed** by the same rules the FastAPI
route declares (ids stripped, 1..``max_id_length`` characters without control characters, ``k``
an integer in 1..``max_k``, at most ``max_items`` exclusions, each parameter given once, nothing
else in the query). Anything else, and every error (404 unknown item, 422 invalid), is handed to
the FastAPI application unchanged, so error answers, the OpenAPI schema and every other route
are FastAPI's. A test checks both paths give the same answers.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any
from urllib.parse import parse_qsl

from recctl.service.core import Service, ServiceError

__all__ = ["FastPath"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_HEADERS = [(b"content-type", b"application/json")]


class FastPath:
    """ASGI wrapper answering well-formed hot reads itself, delegating the rest to ``app``.

    Parameters
    ----------
    app
        The FastAPI application (:func:`recctl.service.app.create_app`).
    service
        The service it wraps.
    """

    def __init__(self, app: Any, service: Service) -> None:
        self.app = app
        self.service = service
        sc = service.sc
        self.max_k = sc.max_k
        self.max_items = sc.max_items
        self.max_id = sc.max_id_length

    def _id(self, value: str) -> str | None:
        value = value.strip()
        if not value or len(value) > self.max_id or _CONTROL.search(value):
            return None
        return value

    def _parse(self, query: bytes, scalar: str, *, allow_exclude: bool) -> tuple[str, int | None, list[str]] | None:
        try:
            pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True, strict_parsing=False, encoding="utf-8")
        except (UnicodeDecodeError, ValueError):
            return None
        ident: str | None = None
        k: int | None = None
        exclude: list[str] = []
        seen_k = False
        for name, value in pairs:
            if name == scalar and ident is None:
                ident = self._id(value)
                if ident is None:
                    return None
            elif name == "k" and not seen_k:
                seen_k = True
                if not value.isdigit() or not 1 <= int(value) <= self.max_k:
                    return None
                k = int(value)
            elif name == "exclude" and allow_exclude:
                item = self._id(value)
                if item is None or len(exclude) >= self.max_items:
                    return None
                exclude.append(item)
            else:  # repeated or unknown parameter: FastAPI decides
                return None
        if ident is None:
            return None
        return ident, k, exclude

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path = scope["path"]
            if path == "/v1/recommendations" or path == "/v1/items/similar":
                start = time.perf_counter()
                body = self._answer(path, scope.get("query_string", b""))
                if body is not None:
                    # a content-length (not chunked transfer encoding): one write, any client
                    headers = [*_HEADERS, (b"content-length", str(len(body)).encode())]
                    await send({"type": "http.response.start", "status": 200, "headers": headers})
                    await send({"type": "http.response.body", "body": body})
                    m = self.service.metrics
                    m.inc("recctl_serve_requests_total", route=path, status="200")
                    m.observe("recctl_serve_request_seconds", time.perf_counter() - start, route=path)
                    return
        await self.app(scope, receive, send)

    def _answer(self, path: str, query: bytes) -> bytes | None:
        users = path == "/v1/recommendations"
        parsed = self._parse(query, "user_id" if users else "item_id", allow_exclude=users)
        if parsed is None:
            return None
        ident, k, exclude = parsed
        try:
            result = self.service.recommend(ident, k, exclude) if users else self.service.similar(ident, k)
        except ServiceError:
            return None  # FastAPI answers it again, with its error shape
        return json.dumps(result, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
