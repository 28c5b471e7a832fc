"""The ASGI app of ``cadence serve``: /healthz and /metrics, and with ``web:`` the pages."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

from agent.rules.messages import N_
from agent.settings.config import Settings
from agent.tick.reporting import TickReport
from agent.web.base import HERE, Refused, Web, secure

Answer = tuple[int, str, bytes]
#: where the providers' notifications arrive (``push:``), and the most of a body read
PUSH_PATHS = ("/push/google", "/push/microsoft")
PUSH_MAX_BODY = 64 * 1024


class PushReceiver(Protocol):
    """The push receiver of ``cadence serve``, which checks notifications and queues
    calendars; the app only carries requests to it."""

    def admit(
        self, path: str, peer: str, headers: Mapping[str, str], query: str = ""
    ) -> Answer | None: ...

    def answer(self, path: str, query: str, headers: Mapping[str, str], body: bytes) -> Answer: ...


@dataclass
class Probes:
    """What /healthz and /metrics answer, from the service that runs the ticks."""

    health: Callable[[], tuple[bool, dict[str, Any]]]
    metrics: Callable[[], bytes]
    metrics_type: str
    #: run a tick past the guard's limits, for the administrators' confirm button
    confirm: Callable[[], None] | None = None
    #: the receiver of notifications from Google and Microsoft (``push:``), or None
    receiver: PushReceiver | None = None
    #: a focused tick on some calendars now (a pick made on the web is booked at once);
    #: None: no service, the next tick books it
    book: Callable[[frozenset[str], datetime], TickReport | None] | None = None


def probes_routes(probes: Probes) -> list[BaseRoute]:
    async def healthz(request: Request) -> Response:
        healthy, body = probes.health()
        return Response(
            json.dumps(body).encode() + b"\n",
            200 if healthy else 503,
            media_type="application/json",
            headers={"Cache-Control": "no-store"},
        )

    async def metrics(request: Request) -> Response:
        return Response(
            probes.metrics(),
            200,
            headers={"Content-Type": probes.metrics_type, "Cache-Control": "no-store"},
        )

    routes: list[BaseRoute] = [Route("/healthz", healthz), Route("/metrics", metrics)]
    receiver = probes.receiver
    if receiver is None:
        return routes

    async def notified(request: Request) -> Response:
        """Carry a notification to the receiver: answered at once, the work after it."""
        path = request.url.path
        headers = {k.lower(): v for k, v in request.headers.items()}
        peer = request.client.host if request.client else ""
        answer = receiver.admit(path, peer, headers, request.url.query)
        if answer is None:
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > PUSH_MAX_BODY:
                    break  # the receiver refuses it whole
            answer = receiver.answer(path, request.url.query, headers, body)
        status, kind, content = answer
        return Response(content, status, media_type=kind, headers={"Cache-Control": "no-store"})

    return routes + [Route(path, notified, methods=["POST"]) for path in PUSH_PATHS]


def create(settings: Settings, probes: Probes, web: Web | None = None) -> Starlette:
    """The whole app: the probes, and the pages when ``web:`` is configured."""
    routes = probes_routes(probes)
    middleware: list[Middleware] = []
    if settings.web is not None:
        from agent.web import admin, employee, leader, oidc, pick, signin

        web = web or Web(settings)
        web.health = probes.health
        web.confirm = web.confirm or probes.confirm
        web.book = web.book or probes.book
        for module in (signin, oidc, employee, leader, admin, pick):
            routes += module.routes(web)
        middleware = oidc.middleware(web)
        routes.append(Route("/static/cadence.css", _css))
    else:

        async def missing(request: Request) -> Response:
            return PlainTextResponse("not found: try /healthz or /metrics\n", 404)

        routes.append(Route("/", missing))

    async def not_found(request: Request, exc: Exception) -> Response:
        if web is None:
            return PlainTextResponse("not found: try /healthz or /metrics\n", 404)
        return secure(web.refusal(request, Refused(404, N_("no such page"))))

    return Starlette(routes=routes, middleware=middleware, exception_handlers={404: not_found})


async def _css(request: Request) -> Response:
    text = (HERE / "static" / "cadence.css").read_text(encoding="utf-8")
    return Response(text, media_type="text/css", headers={"X-Content-Type-Options": "nosniff"})
