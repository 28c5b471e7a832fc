"""The administrators' and HR's pages (``web.admins``): health, the report, the log.

``/admin`` shows the health the service reports on /healthz, ``read_only``, the
configuration's warnings, the plans that do not load and the last ticks; when the guard
held the last tick, a button confirms it (the service runs a tick past the limits). ``/admin/report`` is the organization report as ``cadence report
--format html`` draws it, from the store as it is now. ``/admin/log`` is the audit log,
filtered by relationship, tick and kind.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from agent.rules.messages import N_
from agent.tick import plans
from agent.views import report, report_html
from agent.web.access import Viewer
from agent.web.base import INLINE_STYLES_CSP, Refused, Web, endpoint

log = logging.getLogger("cadence.web")


def _admin(web: Web, request: Request) -> Viewer:
    with web.store() as store:
        viewer = web.signed_in(request, store)
    if not viewer.admin:
        raise Refused(403, N_("only administrators and HR see this"))
    return viewer


def overview(web: Web, request: Request, form: dict[str, str]) -> Response:
    viewer = _admin(web, request)
    healthy, health = web.health() if web.health else (None, {})
    with web.store() as store:
        ticks = store.ticks(10)
        guard = store.audit_rows(kind="guard", limit=1)
    held = bool(ticks) and ticks[0]["status"] == "held"
    _ = web.gettext(web.language(request, viewer))
    last_tick = _("the last tick")
    return web.page(
        request,
        "admin.html.j2",
        viewer=viewer,
        healthy=healthy,
        health=health,
        ticks=ticks,
        held=guard[-1]["message"] if held and guard else (last_tick if held else None),
        can_confirm=web.confirm is not None,
        confirmed=request.query_params.get("confirmed") == "1",
        read_only=web.settings.read_only,
        warnings=web.settings.warnings,
        broken_plans=plans.problems(web.settings),
        accounts=sorted(web.settings.accounts),
    )


def confirm(web: Web, request: Request, form: dict[str, str]) -> Response:
    """The guard's confirm: run a tick now that may go past the guard's limits."""
    _admin(web, request)
    if web.confirm is None:
        raise Refused(409, N_("no service runs the ticks here: use `cadence run --once --confirm`"))
    web.confirm()
    log.info("guard confirmed on the web; a tick runs now")
    return RedirectResponse("/admin?confirmed=1", status_code=303)


class ReportCache:
    """The report page, drawn once per tick: the store changes only when a tick (or a
    directory read) ends, and the report counts in days. When a tick has ended (or the
    page is ``web.settings.tick`` old) the next request starts drawing it again in a
    thread and gets the last one meanwhile; only the very first request waits for it
    (at 10,000 relationships that takes minutes: docs/PERFORMANCE.md)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: tuple[Any, ...] | None = None
        self._html: str | None = None
        self._drawing: threading.Thread | None = None

    def _now_key(self, web: Web) -> tuple[Any, ...]:
        with web.store() as store:
            last = store.last_tick()
            reads = list(store.db.query("SELECT MAX(id) AS id FROM directory_reads"))
        age = int(web.clock().timestamp() // max(1, web.settings.tick.total_seconds()))
        return (last and last["id"], last and last["finished_at"], reads[0]["id"], age)

    def _draw(self, web: Web, key: tuple[Any, ...]) -> None:
        html = report_html.render(report.build(web.settings, web.clock()))
        with self._lock:
            self._html, self._key, self._drawing = html, key, None

    def get(self, web: Web) -> str:
        key = self._now_key(web)
        with self._lock:
            html, fresh = self._html, self._key == key
            if html is not None and not fresh and self._drawing is None:
                self._drawing = threading.Thread(
                    target=self._draw, args=(web, key), name="cadence-report", daemon=True
                )
                self._drawing.start()
        if html is not None:
            return html
        self._draw(web, key)
        assert self._html is not None
        return self._html


def audit_log(web: Web, request: Request, form: dict[str, str]) -> Response:
    viewer = _admin(web, request)
    query = request.query_params
    relationship = query.get("relationship", "").strip() or None
    kind = query.get("kind", "").strip() or None
    tick_text = query.get("tick", "").strip()
    tick = int(tick_text) if tick_text.isdigit() else None
    with web.store() as store:
        rows = store.audit_rows(tick=tick, relationship=relationship, kind=kind, limit=300)
        # the kinds of the recent rows: a scan of the whole log on every page would grow
        recent = "SELECT kind FROM audit ORDER BY id DESC LIMIT 5000"
        kinds = [
            r["kind"] for r in store.db.query(f"SELECT DISTINCT kind FROM ({recent}) AS recent")
        ]
        kinds = sorted({*kinds, *([kind] if kind else [])})
    return web.page(
        request,
        "audit.html.j2",
        viewer=viewer,
        rows=list(reversed(rows)),
        kinds=kinds,
        filters={"relationship": relationship or "", "kind": kind or "", "tick": tick_text},
    )


def routes(web: Web) -> list[BaseRoute]:
    cache = ReportCache()

    def org_report(web: Web, request: Request, form: dict[str, str]) -> Response:
        _admin(web, request)
        response = HTMLResponse(cache.get(web))
        response.headers["Content-Security-Policy"] = INLINE_STYLES_CSP
        return response

    return [
        Route("/admin", endpoint(web, overview), methods=["GET"]),
        Route("/admin/report", endpoint(web, org_report), methods=["GET"]),
        Route("/admin/guard/confirm", endpoint(web, confirm), methods=["POST"]),
        Route("/admin/log", endpoint(web, audit_log), methods=["GET"]),
    ]
