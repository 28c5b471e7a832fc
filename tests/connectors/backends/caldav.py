"""Contract-suite backend for the caldav provider: a real Radicale and a real aiosmtpd.

The connector is opened the way the engine opens it: a YAML config with a ``caldav``
account, loaded by ``agent.settings.config`` and connected through the provider registry.
"""

from __future__ import annotations

import email.message
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import icalendar
import pytest

from agent.connectors import Context, connect
from agent.connectors.base import Calendar, Mailer
from agent.core.model import Person
from agent.core.retry import RetryPolicy
from agent.formats.ical import KEY_PROPERTY
from agent.settings import config
from tests.caldav.servers import DOVECOT, Dovecot, Radicale, SmtpSink, client_ics
from tests.connectors.backends import Booked, Wire, environ, mailed_invitations, received
from tests.factories import hours

PASSWORD_ENV = "CADENCE_TEST_CALDAV_PASSWORD"
IMAP_PASSWORD_ENV = "CADENCE_TEST_IMAP_PASSWORD"
USERS = ("ana", "ben", "chloe")
ZONES = ("America/Sao_Paulo", "Europe/Berlin", "Asia/Tokyo")


def write_config(
    path: Path,
    radicale: Radicale,
    smtp: SmtpSink,
    *,
    store: Path | None = None,
    extra: str = "",
    account_extra: str = "",
) -> Path:
    """Write a Cadence config with one caldav account for ana, ben and chloe."""
    people = "\n".join(
        f"  - {{email: {u}@example.org, name: {u.title()} Example, timezone: {z}, "
        f"calendar: {radicale.calendar_url(u)}}}"
        for u, z in zip(USERS, ZONES, strict=True)
    )
    path.write_text(
        f"""\
timezone: Europe/Berlin
store: {store or path.parent / "cadence.db"}
accounts:
  team:
    provider: caldav
    url: {radicale.url}
    username: cadence
    password_env: {PASSWORD_ENV}
    smtp: {{host: 127.0.0.1, port: {smtp.port}, starttls: false}}
{account_extra}defaults:
  working_hours: {{mon-fri: "09:00-17:00"}}
people:
{people}
{extra}"""
    )
    return path


WIRE = Wire(
    sync="sync-collection",
    mail_is_create=False,
    create="PUT",
    fetch_booked=Counter(),
    busy=lambda n: {"free-busy-query": n},  # one REPORT per calendar
    sign_in=lambda n: Counter(),  # basic auth on each request: nothing to sign in
    # a cursor it cannot read is refused without asking; then the calendar is listed anew
    resync=lambda n: {"sync-collection": 0, "PROPFIND": n, "calendar-query": n},
)


@dataclass
class CalDAVBackend:
    radicale: Radicale
    smtp: SmtpSink
    calendar: Calendar
    mailer: Mailer
    people: Sequence[Person]
    folder: Path
    stack: ExitStack = field(default_factory=ExitStack)
    ids: list[str] = field(default_factory=list)
    #: the account's ``imap:`` line, once replies are read from a Dovecot
    imap: str = ""
    dovecot: Dovecot = field(init=False)
    wire = WIRE
    #: Radicale does no scheduling: the agent mails each invitation over SMTP
    invites_by_mail = True
    copies_to_attendees = False
    merges_busy = True
    refuses_stale_cursors = True
    conference = False
    unknown_mailbox = r"nobody@example\.org"

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
        uid = uuid.uuid4().hex
        first: datetime | object = start
        last: datetime | object = end
        if all_day:
            first, last = owner.local(start).date(), owner.local(end).date()
        ics = client_ics(
            uid,
            title,
            first,  # type: ignore[arg-type]
            last,  # type: ignore[arg-type]
            organizer=owner.email if attendees else None,
            attendees=[owner.email, *(a.email for a in attendees)] if attendees else (),
            rrule=rrule,
            transparent=transparent,
        )
        user = owner.email.split("@")[0]
        self.radicale.put(self.radicale.calendar_url(user) + f"{uid}.ics", ics)
        return uid

    def delivered(self) -> list[email.message.EmailMessage]:
        return self.smtp.messages()

    def counts(self) -> Counter[str]:
        return Counter(r.report or r.method for r in self.radicale.requests)

    def settings(self, rest: str) -> config.Settings:
        path = write_config(
            self.folder / "tick.yaml",
            self.radicale,
            self.smtp,
            store=self.folder / "tick.db",
            extra=rest,
            account_extra=self.imap,
        )
        return config.load(path)

    def booked(self, owner: Person, key: str) -> Booked:
        user = owner.email.split("@")[0]
        stored = self.radicale.get(self.radicale.calendar_url(user) + f"{key}.ics")
        assert stored is not None, f"no {key}.ics on {user}'s calendar"
        (event,) = icalendar.Calendar.from_ical(stored).walk("VEVENT")
        return Booked(
            tag=str(event[KEY_PROPERTY]),
            title=str(event["SUMMARY"]),
            start=event.decoded("DTSTART").astimezone(UTC),
            conference="",
        )

    def invited(self, key: str, title: str) -> set[str]:
        return mailed_invitations(self.smtp.messages(), key, title)

    def forget_cursors(self) -> bool:
        return False  # the server keeps no cursors it could forget

    def stale(self, cursor: str) -> str:
        return "something-else"

    def stranger(self) -> Person:
        return Person("nobody@example.org", "Nobody", "UTC", hours(), account="team")

    def wrong_requests(self) -> list[str]:
        return []

    def read_replies(self) -> None:
        """Start a Dovecot: the account reads one IMAP mailbox for everyone's replies."""
        if DOVECOT is None:
            pytest.skip("Dovecot is not installed (Debian: apt-get install dovecot-imapd)")
        self.dovecot = self.stack.enter_context(Dovecot())
        user, password = self.dovecot.credentials
        self.stack.enter_context(environ(IMAP_PASSWORD_ENV, password))
        self.imap = (
            f"    imap: {{host: 127.0.0.1, port: {self.dovecot.port}, ssl: false, "
            f"starttls: false, username: {user}, password_env: {IMAP_PASSWORD_ENV}}}\n"
        )

    def deliver(self, owner: Person, raw: bytes) -> str:
        self.dovecot.deliver(received(raw, "mx.example.org"))
        return f"imap:{self.dovecot.credentials[0]}@127.0.0.1/INBOX/"


@contextmanager
def backend(tmp_path: Path) -> Iterator[CalDAVBackend]:
    with ExitStack() as stack:
        radicale = stack.enter_context(Radicale(tmp_path / "radicale"))
        smtp = stack.enter_context(SmtpSink())
        for user in USERS:
            radicale.make_calendar(user)
        stack.enter_context(environ(PASSWORD_ENV, "contract-secret"))
        settings = config.load(write_config(tmp_path / "cadence.yaml", radicale, smtp))
        people = list(settings.people.values())
        ctx = Context(
            name="team",
            account=settings.accounts["team"],
            settings=settings,
            people=people,
            retry=RetryPolicy.none(),
        )
        calendar, mailer = connect(ctx)
        stack.callback(mailer.close)
        stack.callback(calendar.close)
        yield CalDAVBackend(radicale, smtp, calendar, mailer, people, tmp_path, stack)
