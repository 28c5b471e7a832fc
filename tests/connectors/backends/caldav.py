"""Contract-suite backend for the caldav provider: a real Radicale and a real aiosmtpd.

The connector is opened the way the engine opens it: a YAML config with a ``caldav``
account, loaded by ``agent.settings.config`` and connected through the provider registry.
"""

from __future__ import annotations

import email.message
import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from agent.connectors import Context, connect
from agent.connectors.base import Calendar, Mailer
from agent.core.model import Person
from agent.core.retry import RetryPolicy
from agent.settings import config
from tests.caldav.servers import Radicale, SmtpSink, client_ics

PASSWORD_ENV = "CADENCE_TEST_CALDAV_PASSWORD"
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


@dataclass
class CalDAVBackend:
    radicale: Radicale
    smtp: SmtpSink
    calendar: Calendar
    mailer: Mailer
    people: Sequence[Person]
    ids: list[str] = field(default_factory=list)

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


@contextmanager
def backend(tmp_path: Path) -> Iterator[CalDAVBackend]:
    with ExitStack() as stack:
        radicale = stack.enter_context(Radicale(tmp_path / "radicale"))
        smtp = stack.enter_context(SmtpSink())
        for user in USERS:
            radicale.make_calendar(user)
        previous = os.environ.get(PASSWORD_ENV)
        os.environ[PASSWORD_ENV] = "contract-secret"
        stack.callback(_restore, PASSWORD_ENV, previous)
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
        yield CalDAVBackend(radicale, smtp, calendar, mailer, people)


def _restore(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
