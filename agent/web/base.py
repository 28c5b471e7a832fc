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
from zoneinfo import ZoneInfo

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from agent.core import locales
from agent.rules.messages import N_
from agent.settings.config import Settings
from agent.store.plans import PlanRows
from agent.store.readers import ReaderRows
from agent.store.sqlite import Store
from agent.tick.reporting import TickReport
from agent.views.people import laid
from agent.web import i18n, security
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
    """Answer with ``status`` and a short message, and none of the data asked for. The
    message is a catalogue message (``N_``), translated for the reader on the page."""

    def __init__(self, status: int, message: str, language: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        #: the reader's language when the page knows it without a session (a link's)
        self.language = language


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
        self.envs = i18n.Environments(HERE / "templates", settings.templates)
        #: what /healthz answers, for the administrators' page (set by ``create``)
        self.health: Callable[[], tuple[bool, dict[str, Any]]] | None = None
        #: run a tick past the guard's limits (set by ``create``; None: no service)
        self.confirm: Callable[[], None] | None = None
        #: a focused tick on some calendars now, for a pick (set by ``create``)
        self.book: Callable[[frozenset[str], datetime], TickReport | None] | None = None
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
        return self.viewer_of(store, str(token.data.get("e", "")))

    def viewer_of(self, store: Store, email: str) -> Viewer:
        """Who ``email`` is to the pages: their relationships, roles and the plans they
        were chosen to read."""
        email = email.strip().lower()
        return viewer(self.laid(store), email, tuple(ReaderRows(store).plans_for(email)))

    def signed_in(self, request: Request, store: Store) -> Viewer:
        found = self.who(request, store)
        if found is None:
            raise Refused(401, N_("sign in first"))
        return found

    # --- languages -----------------------------------------------------------------------

    def language(self, request: Request, viewer: Viewer | None = None) -> str:
        """The language a page is drawn in: the signed-in person's mail language, else
        the browser's (``Accept-Language``) among the shipped ones, else the global one."""
        if viewer is not None and viewer.language:
            return viewer.language
        return i18n.negotiate(request.headers.get("accept-language")) or self.settings.language

    def gettext(self, language: str) -> Callable[[str], str]:
        """The catalogue's ``gettext`` for the sentences the Python side writes."""
        return self.envs.translations(language).gettext

    def zone(self, viewer: Viewer | None) -> Any:
        """The time zone the viewer reads times in: their own, else the config's (UTC
        when only the people's zones are known)."""
        if viewer is not None:
            for rel in (*viewer.own, *viewer.partner_of):
                for person in (rel.employee, rel.partner):
                    if person.email.lower() == viewer.email:
                        return person.zone
            found = self.settings.people.get(viewer.email)
            if found is not None:
                return found.zone
        directory = self.settings.directory  # its default zone is the config's global one
        return ZoneInfo(directory.timezone) if directory is not None else UTC

    # --- responses -----------------------------------------------------------------------

    def page(
        self,
        request: Request,
        template: str,
        status: int = 200,
        viewer: Viewer | None = None,
        language: str | None = None,
        **context: Any,
    ) -> Response:
        """Draw ``template`` in the reader's language (``language`` when given)."""
        csrf_cookie = request.cookies.get(security.CSRF_COOKIE) or secrets.token_urlsafe(24)
        language = language or self.language(request, viewer)
        body = (
            self.envs.get(language)
            .get_template(template)
            .render(
                viewer=viewer,
                csrf_field=security.CSRF_FIELD,
                csrf=self.keys.csrf(csrf_cookie),
                path=request.url.path,
                lang=locales.tag(language),
                page_zone=self.zone(viewer),
                **context,
            )
        )
        response = HTMLResponse(body, status_code=status)
        response.headers["Content-Language"] = locales.tag(language)
        response.headers["Vary"] = "Accept-Language, Cookie"  # the reader decides the language
        if security.CSRF_COOKIE not in request.cookies:
            self.set_cookie(response, security.CSRF_COOKIE, csrf_cookie, None)
        return response

    def refusal(self, request: Request, exc: Refused) -> Response:
        """The page of a refusal, in the language of whoever is signed in (if anyone)."""
        language = exc.language
        if language is None and request.cookies.get(security.SESSION_COOKIE):
            try:
                with self.store() as store:
                    found = self.who(request, store)
                language = self.language(request, found)
            except Exception:  # a broken store still answers the refusal, in the browser's
                log.exception("the viewer of a refused request could not be read")
        language = language or self.language(request)
        message = self.gettext(language)(str(exc))
        return self.page(request, "refused.html.j2", exc.status, language=language, message=message)

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
            raise Refused(403, N_("the form's security token did not match: reload the page"))


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
                return web.refusal(request, exc)

        return secure(await run_in_threadpool(call))

    return run
