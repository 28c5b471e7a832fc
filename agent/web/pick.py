"""The pick-a-time page: a signed, single-use, expiring link from the pick-a-time mail.

It works without signing in: the link itself is the proof (it went to the employee's
mailbox). ``GET`` shows the time with a button, so a mail scanner that fetches the link
does not use it; the button's ``POST`` records the pick, once for all the links of that
mail, and books it at once: a focused tick on the two people's calendars (``Web.book``,
from ``cadence serve``) moves or books the meeting there through the same idempotent
path as every tick, if the time is still ahead and free for both. The page says which
way it went. When that tick cannot run (another holds the store, an account fails),
the pick stays recorded and the next tick books it.
"""

from __future__ import annotations

import logging
from datetime import datetime

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from agent.core.timestamps import from_store
from agent.core.tokens import Token
from agent.rules.messages import N_
from agent.store.plans import PlanRows
from agent.tick.picks import nonce
from agent.tick.reporting import TickReport
from agent.web.access import language_of
from agent.web.base import Refused, Web, endpoint

log = logging.getLogger("cadence.web")

INVALID = N_("this link is not valid or has expired: move the meeting in your calendar instead")
USED = N_("a time was picked with this mail's links already")


def _token(web: Web, text: str) -> Token:
    token = web.keys.pick.check(text, web.clock())
    if token is None:
        raise Refused(403, INVALID)
    try:
        ours = token.nonce == nonce(str(token.data["k"]), int(token.data["m"]))
    except (KeyError, TypeError, ValueError):
        ours = False
    if not ours:
        raise Refused(403, INVALID)
    return token


def _employee(token: Token) -> str:
    return str(token.data.get("r", "")).split("/", 1)[0]


def _language(web: Web, request: Request, token: Token) -> str:
    """The language of the pick-a-time mail the link came in: the employee's."""
    with web.store() as store:
        found = language_of(web.laid(store), _employee(token))
    return found or web.language(request)


def _when(web: Web, token: Token) -> tuple[datetime, datetime]:
    """The picked time, in the employee's zone."""
    employee = web.settings.people.get(_employee(token))
    zone = employee.zone if employee is not None else None
    start, end = from_store(str(token.data["s"])), from_store(str(token.data["e"]))
    return start.astimezone(zone), end.astimezone(zone)


def show(web: Web, request: Request, form: dict[str, str]) -> Response:
    text = request.query_params.get("t", "")
    token = _token(web, text)
    with web.store() as store:
        if PlanRows(store).link_used(token.nonce):
            raise Refused(403, USED, _language(web, request, token))
    start, end = _when(web, token)
    return web.page(
        request,
        "pick.html.j2",
        language=_language(web, request, token),
        token=text,
        done=False,
        start=start,
        end=end,
    )


def pick(web: Web, request: Request, form: dict[str, str]) -> Response:
    token = _token(web, form.get("t", ""))
    data = {
        "key": token.data["k"],
        "moves": token.data["m"],
        "start": token.data["s"],
        "end": token.data["e"],
    }
    now = web.clock()
    with web.store() as store:
        if not PlanRows(store).use_link(token.nonce, "pick", None, now, data):
            raise Refused(403, USED, _language(web, request, token))
    start, end = _when(web, token)
    outcome = "later"
    if web.book is not None:
        owners = frozenset(p for p in str(token.data.get("r", "")).split("/") if p)
        try:
            report = web.book(owners, now)
        except Exception:  # the pick is recorded: the next tick books it
            log.exception("booking a pick at once failed; the next tick books it")
            report = None
        outcome = _outcome(web, str(token.data["k"]), start, report)
    language = _language(web, request, token)
    return web.page(
        request, "pick.html.j2", language=language, done=True, start=start, end=end, outcome=outcome
    )


def _outcome(web: Web, key: str, start: datetime, report: TickReport | None) -> str:
    """``booked`` (the meeting is at the time picked now), ``taken`` (the tick ran and
    left it: the time is no longer free or ahead), or ``later`` (it could not run)."""
    with web.store() as store:
        booking = store.booking(key)
    if booking is not None and booking.status == "booked" and booking.start == start:
        return "booked"
    if report is None or report.errors or report.held:
        return "later"
    return "taken"


def routes(web: Web) -> list[BaseRoute]:
    return [
        Route("/pick", endpoint(web, show), methods=["GET"]),
        Route("/pick", endpoint(web, pick), methods=["POST"]),
    ]
