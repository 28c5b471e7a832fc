"""Backends for the connector contract suite (tests/connectors/test_contract.py).

Each module here is one provider's backend: it exposes ``backend(tmp_path)``, a context
manager yielding an object with the shape of :class:`Backend`, running the provider's
local server (Radicale, aiosmtpd, the fake Google or Graph server, ...) for the duration.
The contract suite is parametrised over every module in this package, so adding a
provider means adding one module here and nothing else.

Where providers genuinely differ, the backend says so: :class:`Wire` names the requests a
provider makes (and what a quiet tick, a fresh sign-in and one busy call cost), and
``invites_by_mail`` marks a provider that mails iTIP invitations itself instead of the
calendar server inviting the attendees.
"""

from __future__ import annotations

import email.message
import email.policy
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

import icalendar

from agent.connectors.base import Calendar, Mailer
from agent.core.model import Person
from agent.settings import config
from agent.store.sqlite import Store


@dataclass(frozen=True)
class Wire:
    """The requests a provider's server counts, by the name :meth:`Backend.counts` uses."""

    #: the request one changes() call with a good cursor costs
    sync: str
    #: the request that writes a booking
    create: str
    #: sending a mail is the same request as writing a booking (EWS CreateItem)
    mail_is_create: bool
    #: what reading the agent's new booking costs on top of the sync that finds it
    fetch_booked: Counter[str]
    #: what one busy() call for ``n`` people costs (a 0 says the request must not happen)
    busy: Callable[[int], dict[str, int]]
    #: what a new process adds to its first tick: sign-in, discovery
    sign_in: Callable[[int], Counter[str]]
    #: what the tick after ``n`` cursors went stale costs in reading calendars (after
    #: :meth:`Backend.forget_cursors`, or spoiled in the store where it returns False)
    resync: Callable[[int], dict[str, int]]
    #: the request that lists one mailbox for new replies (None: the server counts none)
    inbox: str | None = None
    #: what reading one new reply and mailing its updated recap costs on top of that
    read_reply: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class Booked:
    """A booking as the provider's server stored it, in the server's own fields."""

    tag: str
    title: str
    start: datetime
    #: the video-call link the provider added, or "" where it adds none
    conference: str


class Backend(Protocol):
    calendar: Calendar
    mailer: Mailer
    #: at least three people on the account, each with a calendar the connector can read
    people: Sequence[Person]

    def add_event(
        self,
        owner: Person,
        title: str,
        start: datetime,
        end: datetime,
        attendees: Sequence[Person] = (),
        *,
        all_day: bool = False,
        rrule: str | None = None,
        transparent: bool = False,
    ) -> str:
        """Put an event on ``owner``'s calendar the way a person would (not through the
        connector); return its provider id. ``rrule`` is an RFC 5545 RRULE value."""
        ...

    def delivered(self) -> list[email.message.EmailMessage]:
        """Every mail the provider has delivered or accepted for sending, parsed."""
        ...

    #: the requests the provider's server counts; None for a provider without a server
    wire: Wire | None
    #: the provider mails iTIP invitations itself (one ``invite`` action per booking)
    invites_by_mail: bool
    #: a booking also lands on each attendee's own calendar
    copies_to_attendees: bool
    #: busy() merges overlapping events into one interval
    merges_busy: bool
    #: changes() raises CursorExpired for a stale cursor (else it answers a full sync)
    refuses_stale_cursors: bool
    #: the provider can put a video-call link on a booking
    conference: bool

    def counts(self) -> Counter[str]:
        """Every request the server has answered so far, by name (see :class:`Wire`)."""
        ...

    def settings(self, rest: str) -> config.Settings:
        """Load a config with this account, its people and ``rest`` (relationships and
        programs), the way ``cadence`` loads one."""
        ...

    def booked(self, owner: Person, key: str) -> Booked:
        """The agent's booking ``key`` as stored on ``owner``'s calendar by the server."""
        ...

    def invited(self, key: str, title: str) -> set[str]:
        """Who the provider sent an invitation to for booking ``key`` titled ``title``."""
        ...

    def forget_cursors(self) -> bool:
        """Make the server forget every sync cursor it issued, as after a long outage;
        return False for a server that keeps no cursors to forget."""
        ...

    def stale(self, cursor: str) -> str:
        """A cursor the provider refuses in place of ``cursor``: the server forgets the
        cursors it issued where it can, else the cursor is spoiled."""
        ...

    def stranger(self) -> Person:
        """A person whose calendar the provider does not know."""
        ...

    #: what the error for the stranger's calendar says (a regular expression); None for
    #: a provider where a calendar it does not know is an empty one
    unknown_mailbox: str | None

    def wrong_requests(self) -> list[str]:
        """Requests the provider must never make, e.g. a mailbox not impersonated."""
        ...

    def read_replies(self) -> None:
        """Have :meth:`settings` read replies to recaps from now on, starting the mail
        server that holds them where the provider needs one."""
        ...

    def deliver(self, owner: Person, raw: bytes) -> str:
        """File ``raw`` in ``owner``'s inbox the way their mail server would; return a
        part of the reference the store keeps for it."""
        ...


def people_yaml(people: Sequence[Person], calendar: Callable[[Person], str] | None = None) -> str:
    """The ``people:`` block for ``people``, with weekday hours 9 to 5 as the default."""
    lines = ["defaults:", '  working_hours: {mon-fri: "09:00-17:00"}', "people:"]
    for p in people:
        extra = f", calendar: {calendar(p)}" if calendar else ""
        lines.append(f"  - {{email: {p.email}, name: {p.name}, timezone: {p.timezone}{extra}}}")
    return "\n".join(lines) + "\n"


def mailed_invitations(
    delivered: Iterable[email.message.Message], key: str, title: str
) -> set[str]:
    """The attendees of the iTIP REQUESTs in ``delivered`` for booking ``key``."""
    out: set[str] = set()
    for message in delivered:
        part = next((p for p in message.walk() if p.get_content_type() == "text/calendar"), None)
        if part is None:
            continue
        cal = icalendar.Calendar.from_ical(part.get_payload(decode=True))
        if str(cal.get("METHOD")) != "REQUEST":
            continue
        for event in cal.walk("VEVENT"):
            if str(event["UID"]) == f"{key}@cadence" and str(event["SUMMARY"]) == title:
                organizer = str(event["ORGANIZER"]).removeprefix("mailto:")
                attendees = event.get("ATTENDEE", [])
                if not isinstance(attendees, list):
                    attendees = [attendees]
                out |= {str(a).removeprefix("mailto:") for a in attendees} - {organizer}
    return out


def spoil_cursors(store: Store) -> None:
    """Replace every stored sync cursor with one no provider ever issued."""
    store.db.execute("UPDATE sync_state SET cursor = 'garbage'")


def received(raw: bytes, by: str = "") -> bytes:
    """``raw`` as a receiving server files it: its Authentication-Results on top (from
    the server ``by``, or without an authserv-id), SPF, DKIM and DMARC passing for the
    From domain."""
    sender = str(email.message_from_bytes(raw)["From"])
    domain = sender.rstrip(">").rsplit("@", 1)[-1]
    results = (
        f"spf=pass smtp.mailfrom={domain}; dkim=pass header.d={domain}; "
        f"dmarc=pass header.from={domain}"
    )
    return f"Authentication-Results: {by + '; ' if by else ''}{results}\r\n".encode() + raw


def load(path: Path, text: str) -> config.Settings:
    """Write ``text`` to ``path`` and load it as a config."""
    path.write_text(text)
    return config.load(path)


@contextmanager
def environ(name: str, value: str) -> Iterator[None]:
    """Set one variable while a backend runs, then restore it."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def reparsed(sent: Iterable[email.message.Message]) -> list[email.message.EmailMessage]:
    """``sent`` as a mail client reads it: from its bytes, with the default policy, so a
    header the sender folded or encoded is checked as delivered, not as composed."""
    out = []
    for msg in sent:
        parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        out.append(parsed)
    return out
