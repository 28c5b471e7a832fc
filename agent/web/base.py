"""What every page shares: the settings, keys and clock (``Web``), sessions, CSRF, and the
endpoint wrapper that runs a page in the thread pool.

Pages are rendered on the server from Jinja2 templates; forms post back and work with
no script. Every POST carries a CSRF token; every response says ``no-store`` and sends
no referrer (links carry tokens). Store work runs in the thread pool, one connection
per request.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from agent.settings.config import Settings
from agent.store.plans import PlanRows
from agent.store.sqlite import Store
from agent.views.people import laid
from agent.web import security
from agent.web.access import Viewer, viewer

log = logging.getLogger("cadence.web")

HERE = Path(__file__).parent
#: scripts and styles from this app only; the report page adds its inline styles
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)

#: pages Cadence draws for files too (the report, the review packet) hold their styles
#: inline, and their charts as inline SVG
INLINE_STYLES_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; "
    "frame-ancestors 'none'; base-uri 'none'"
)


class Refused(Exception):
    """Answer with ``status`` and a short message, and none of the data asked for."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Web:
    """The pages' shared state: the settings, the keys, the clock and the templates."""

    def __init__(
        self,
        settings: Settings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        key: bytes | None = None,
    ) -> None:
        assert settings.web is not None
        self.settings = settings
        self.conf = settings.web
        self.clock = clock
        self.keys = security.Keys(key or security.load_key(settings.resolve(self.conf.secret)))
        self.env = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["j2", "html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        #: what /healthz answers, for the administrators' page (set by ``create``)
        self.health: Callable[[], tuple[bool, dict[str, Any]]] | None = None
        #: run a tick past the guard's limits (set by ``create``; None: no service)
        self.confirm: Callable[[], None] | None = None
        self.signin_by_address = security.RateLimit(5, timedelta(minutes=15))
        self.signin_by_client = security.RateLimit(20, timedelta(minutes=15))

    @property
    def base_url(self) -> str:
        if self.conf.url:
            return self.conf.url.rstrip("/")
        svc = self.settings.service
        return f"http://{svc.host}:{svc.port}"

    @contextmanager
    def store(self) -> Iterator[Store]:
        store = Store(self.settings.store_at)
        try:
            yield store
        finally:
            store.close()

    def laid(self, store: Store) -> Settings:
        """The settings with the directory's people and lines laid over them."""
        return laid(self.settings, store)

    # --- sessions ------------------------------------------------------------------------

    def session_cookie(self, email: str, now: datetime) -> str:
        data = {"e": email, "s": secrets.token_urlsafe(12)}
        return self.keys.session.make(data, now, self.conf.session)

    def who(self, request: Request, store: Store) -> Viewer | None:
        """The signed-in viewer, or None (no cookie, a bad one, expired or signed out)."""
        cookie = request.cookies.get(security.SESSION_COOKIE)
        if not cookie:
            return None
        token = self.keys.session.check(cookie, self.clock())
        if token is None or PlanRows(store).link_used(f"signout:{token.data.get('s')}"):
            return None
        return viewer(self.laid(store), str(token.data.get("e", "")))

    def signed_in(self, request: Request, store: Store) -> Viewer:
        found = self.who(request, store)
        if found is None:
            raise Refused(401, "sign in first")
        return found

    # --- responses -----------------------------------------------------------------------

    def page(
        self,
        request: Request,
        template: str,
        status: int = 200,
        viewer: Viewer | None = None,
        **context: Any,
    ) -> Response:
        csrf_cookie = request.cookies.get(security.CSRF_COOKIE) or secrets.token_urlsafe(24)
        body = self.env.get_template(template).render(
            viewer=viewer,
            csrf_field=security.CSRF_FIELD,
            csrf=self.keys.csrf(csrf_cookie),
            path=request.url.path,
            **context,
        )
        response = HTMLResponse(body, status_code=status)
        if security.CSRF_COOKIE not in request.cookies:
            self.set_cookie(response, security.CSRF_COOKIE, csrf_cookie, None)
        return response

    def set_cookie(
        self, response: Response, name: str, value: str, max_age: timedelta | None
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=int(max_age.total_seconds()) if max_age else None,
            httponly=True,
            secure=self.conf.secure_cookies,
            samesite="lax",
            path="/",
        )

    def check_csrf(self, request: Request, form: Mapping[str, str]) -> None:
        if not self.keys.csrf_ok(
            request.cookies.get(security.CSRF_COOKIE), form.get(security.CSRF_FIELD)
        ):
            raise Refused(403, "the form's security token did not match: reload the page")


Handler = Callable[[Web, Request, dict[str, str]], Response]


def secure(response: Response, csp: str = CSP) -> Response:
    response.headers.setdefault("Content-Security-Policy", csp)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


def endpoint(web: Web, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """An endpoint around a plain function: the form read and its CSRF token checked
    for a POST, the function run in the thread pool, refusals turned into pages."""

    async def run(request: Request) -> Response:
        form: dict[str, str] = {}
        if request.method == "POST":
            async with request.form(max_files=0, max_fields=200) as data:
                form = {k: v for k, v in data.items() if isinstance(v, str)}

        def call() -> Response:
            try:
                if request.method == "POST":
                    web.check_csrf(request, form)
                return handler(web, request, form)
            except Refused as exc:
                if exc.status == 401:
                    return RedirectResponse("/signin", status_code=303)
                return web.page(request, "refused.html.j2", exc.status, message=str(exc))

        return secure(await run_in_threadpool(call))

    return run
