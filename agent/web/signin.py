"""Sign-in with a one-time link mailed to the person (the local provider's outbox).

``POST /signin`` with an address: when the address belongs to someone the web app has
pages for, and their account is a local one, a link valid for ``web.link`` goes to the
outbox; the answer is the same either way, so the form tells no one who is known. Sign-in
is rate-limited per address and per client. The link opens a page with a button (a mail
scanner that fetches the link does not use it up); the button's POST uses the link once
and sets the session cookie.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from email.utils import format_datetime, make_msgid
from html import escape
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from agent.connectors.local import OutboxMailer
from agent.core.model import OutgoingMail
from agent.rules.messages import N_
from agent.settings.schema import LocalAccount
from agent.store.plans import PlanRows
from agent.web import oidc, security
from agent.web.base import Refused, Web, endpoint

log = logging.getLogger("cadence.web")

EXPIRED = N_("this sign-in link is not valid or has expired: ask for a new one")


def link(web: Web, email: str, now: datetime) -> str:
    """A one-time sign-in link for ``email``, valid for ``web.link``."""
    token = web.keys.signin.make({"e": email}, now, web.conf.link)
    return f"{web.base_url}/signin/link?t={token}"


def _outbox(web: Web, email: str) -> OutboxMailer | None:
    """The outbox a sign-in link for ``email`` goes to: their account's, if local; an
    administrator who is no person of the config uses the first local account."""
    settings = web.settings
    person = settings.people.get(email)
    names = [person.account] if person is not None else list(settings.accounts)
    for name in names:
        account = settings.accounts.get(name)
        if isinstance(account, LocalAccount):
            return OutboxMailer(settings.resolve(account.outbox))
    return None


def mail_link(web: Web, email: str, now: datetime, language: str | None = None) -> bool:
    """Put a sign-in link for ``email`` in the outbox, in ``language`` (the global one
    when None); False when there is no outbox to use."""
    outbox = _outbox(web, email)
    if outbox is None:
        return False
    url = link(web, email, now)
    _ = web.gettext(language or web.settings.language)
    minutes = {"minutes": int(web.conf.link.total_seconds() // 60)}
    ignore = _("If you did not ask for it, ignore this mail.")
    text = (
        _("Open this link to sign in to Cadence (it works once, for %(minutes)s minutes):")
        % minutes
        + f"\n\n{url}\n\n{ignore}\n"
    )
    html = _(
        'Open <a href="%(url)s">this link</a> to sign in to Cadence (it works once, for '
        "%(minutes)s minutes)."
    ) % {**minutes, "url": escape(url)}
    key = f"signin-{make_msgid(domain='cadence').strip('<>').split('@')[0]}"
    outbox.folder.mkdir(parents=True, exist_ok=True)
    outbox.send(
        OutgoingMail(
            key=key,
            sender=email,
            sender_name="Cadence",
            to=(email,),
            subject=_("Your Cadence sign-in link"),
            text=text,
            html=f"<p>{html}</p><p>{escape(ignore)}</p>",
            message_id=make_msgid(domain=email.rpartition("@")[2] or "cadence"),
            headers={"Date": format_datetime(now.astimezone(UTC))},
        )
    )
    return True


def choices(web: Web) -> dict[str, Any]:
    """What the sign-in page offers: a button per OpenID Connect provider configured,
    and the mailed link when some account is a local one."""
    local = any(isinstance(a, LocalAccount) for a in web.settings.accounts.values())
    return {"providers": oidc.configured(web.conf), "mailed": local}


def show_form(web: Web, request: Request, form: dict[str, str]) -> Response:
    return web.page(request, "signin.html.j2", sent=False, **choices(web))


def ask(web: Web, request: Request, form: dict[str, str]) -> Response:
    email = form.get("email", "").strip().lower()
    now = web.clock()
    client = request.client.host if request.client else "?"
    if not web.signin_by_client.allow(client, now) or not web.signin_by_address.allow(email, now):
        language = web.language(request)
        response = web.page(
            request,
            "signin.html.j2",
            429,
            language=language,
            sent=False,
            **choices(web),
            error=web.gettext(language)(oidc.TOO_MANY),
        )
        response.headers["Retry-After"] = "900"
        return response
    if "@" in email:
        with web.store() as store:
            found = web.viewer_of(store, email)
            language = found.language or web.language(request)
        if found.known and mail_link(web, email, now, language):
            log.info("sign-in link mailed")
    return web.page(request, "signin.html.j2", sent=True, **choices(web))


def confirm(web: Web, request: Request, form: dict[str, str]) -> Response:
    token = request.query_params.get("t", "")
    if web.keys.signin.check(token, web.clock()) is None:
        raise Refused(403, EXPIRED)
    return web.page(request, "signin_confirm.html.j2", token=token)


def use(web: Web, request: Request, form: dict[str, str]) -> Response:
    now = web.clock()
    token = web.keys.signin.check(form.get("t", ""), now)
    if token is None:
        raise Refused(403, EXPIRED)
    email = str(token.data["e"])
    with web.store() as store:
        if not PlanRows(store).use_link(token.nonce, "signin", email, now):
            raise Refused(403, N_("this sign-in link was used already: ask for a new one"))
    response = RedirectResponse("/", status_code=303)
    web.set_cookie(
        response, security.SESSION_COOKIE, web.session_cookie(email, now), web.conf.session
    )
    return response


def sign_out(web: Web, request: Request, form: dict[str, str]) -> Response:
    cookie = request.cookies.get(security.SESSION_COOKIE, "")
    now = web.clock()
    token = web.keys.session.check(cookie, now)
    if token is not None:
        with web.store() as store:
            PlanRows(store).use_link(f"signout:{token.data.get('s')}", "signout", None, now)
    response = RedirectResponse("/signin", status_code=303)
    response.delete_cookie(security.SESSION_COOKIE, path="/")
    return response


def routes(web: Web) -> list[BaseRoute]:
    return [
        Route("/signin", endpoint(web, show_form), methods=["GET"]),
        Route("/signin", endpoint(web, ask), methods=["POST"]),
        Route("/signin/link", endpoint(web, confirm), methods=["GET"]),
        Route("/signin/link", endpoint(web, use), methods=["POST"]),
        Route("/signout", endpoint(web, sign_out), methods=["POST"]),
    ]
