"""Helpers shared by the Exchange tests and the contract-suite backend."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from agent.connectors.exchange import Ews, ExchangeCalendar, ExchangeMailer
from agent.core.model import Person, Span, WorkingHours
from agent.core.retry import RetryPolicy
from agent.settings.config import ExchangeAccount, Settings
from tests import programs
from tests.connectors.backends import (
    Booked,
    Wire,
    environ,
    load,
    received,
    reparsed,
)
from tests.environ import clean_environ
from tests.exchange.server import EwsServer

PASSWORD_ENV = "CADENCE_TEST_EWS_PASSWORD"
HOURS = WorkingHours({d: (Span(time(9), time(17)),) for d in range(5)})


def people(domain: str = "contoso.example") -> list[Person]:
    zones = ("Europe/Berlin", "America/New_York", "Europe/Berlin")
    return [
        Person(f"{n}@{domain}", f"{n.title()} Test", z, HOURS, account="onprem")
        for n, z in zip(("ana", "ben", "chloe"), zones, strict=True)
    ]


def server_for(staff: Sequence[Person], **kwargs: Any) -> EwsServer:
    return EwsServer({p.email: p.name for p in staff}, **kwargs)


def account(server: EwsServer, ca: Path, **over: Any) -> ExchangeAccount:
    values: dict[str, Any] = {
        "provider": "exchange",
        "server": server.url,
        "auth": "basic",
        "username": server.username,
        "password_env": PASSWORD_ENV,
        "access_type": "impersonation",
        "version": "2016",  # no version probe: the tests count every request
        "ca_bundle": str(ca),
        "max_wait": "0s",  # FailFast: the injected RetryPolicy does the waiting
    }
    values.update(over)
    return ExchangeAccount.model_validate(values)


def ews(server: EwsServer, ca: Path, retry: RetryPolicy | None = None, **over: Any) -> Ews:
    secret = server.token if over.get("auth") == "oauth" else server.password
    return Ews(
        account(server, ca, **over),
        Path,
        retry or RetryPolicy.none(),
        environ={PASSWORD_ENV: secret or ""},
    )


def workspace(
    server: EwsServer, folder: Path, template: str, env: str, setenv: Callable[[str, str], None]
) -> Path:
    """A whole-tick config for ``server`` in ``folder``: its CA file, the config from
    ``template`` and the password in the environment variable ``env``."""
    server.write_ca(folder / "ews-ca.pem")
    path = programs.write_config(
        folder, template, url=server.url, username=server.username, password_env=env
    )
    setenv(env, server.password)
    return path


# the account's keys in a whole-tick config, filled in for a server by str.format
ACCOUNT_SETTINGS = """\
    provider: exchange
    server: {url}
    auth: basic
    username: {username}
    password_env: {password_env}
    access_type: impersonation
    version: "2016"
    ca_bundle: ews-ca.pem
    max_wait: 0s
"""
WIRE = Wire(
    sync="FindItem",
    mail_is_create=True,
    create="CreateItem",
    fetch_booked=Counter({"GetItem": 2}),  # FindItem names changes, GetItem reads them
    busy=lambda n: {"GetUserAvailability": 1},  # every mailbox in one request
    sign_in=lambda n: Counter(),  # the version is configured: no probe, no GetFolder
    resync=lambda n: {"FindItem": n},  # a cursor it cannot read is refused without asking
    inbox="FindItem",
    # the senders of what is new, then the reply's MIME; the update is sent like a booking
    read_reply=Counter({"GetItem": 2, "CreateItem": 1}),
)
#: operations that name no mailbox, so they impersonate nobody
UNADDRESSED = ("GetUserAvailability", "GetServerTimeZones")


@dataclass
class ExchangeBackend:
    """The contract-suite backend: the connector against a running EwsServer."""

    server: EwsServer
    calendar: ExchangeCalendar
    mailer: ExchangeMailer
    people: list[Person] = field(default_factory=list)
    folder: Path = Path()
    wire = WIRE
    invites_by_mail = False
    copies_to_attendees = True
    merges_busy = True
    refuses_stale_cursors = True
    conference = False
    unknown_mailbox = r"nobody@contoso\.example"

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
        return self.server.add_event(
            owner.email,
            title,
            start,
            end,
            [a.email for a in attendees],
            all_day=all_day,
            rrule_text=rrule,
            free_busy="Free" if transparent else "Busy",
            zone=owner.timezone,
        )

    def delivered(self) -> list[EmailMessage]:
        return reparsed(self.server.sent)

    def counts(self) -> Counter[str]:
        return Counter(self.server.counts)

    def settings(self, rest: str) -> Settings:
        account = ACCOUNT_SETTINGS.format(
            url=self.server.url, username=self.server.username, password_env=PASSWORD_ENV
        )
        text = (
            "timezone: Europe/Berlin\nstore: tick.db\naccounts:\n  onprem:\n"
            + account
            + 'defaults:\n  working_hours: {mon-fri: "09:00-17:00"}\n'
            + programs.CONTOSO_PEOPLE.format()  # Ben in Berlin: hours in common with Ana
            + rest
        )
        return load(self.folder / "tick.yaml", text)

    def booked(self, owner: Person, key: str) -> Booked:
        [item] = [i for i in self.server.items_of(owner.email) if key in i.ext.values()]
        return Booked(tag=key, title=item.subject, start=item.start, conference="")

    def invited(self, key: str, title: str) -> set[str]:
        """The attendees who got a meeting request and a copy of it on their calendar."""
        requested = {
            to
            for kind, to, subject in self.server.invitations
            if (kind, subject) == ("request", title)
        }
        return {
            to
            for to in requested
            if any(i.subject == title and i.copy_of for i in self.server.items_of(to))
        }

    def forget_cursors(self) -> bool:
        return False  # the server keeps no cursors it could forget

    def stale(self, cursor: str) -> str:
        return "garbage"

    def stranger(self) -> Person:
        return Person("nobody@contoso.example", "No Body", "UTC", HOURS)

    def wrong_requests(self) -> list[str]:
        """Requests that touched a mailbox without impersonating it."""
        return [
            r.operation
            for r in self.server.requests
            if not r.impersonating and r.operation not in UNADDRESSED
        ]

    def read_replies(self) -> None:
        pass  # the program's collect_replies is enough: the server holds every inbox

    def deliver(self, owner: Person, raw: bytes) -> str:
        return f"ews:{owner.email}/{self.server.deliver(owner.email, received(raw)).id}"


@contextmanager
def running_backend(tmp_path: Path) -> Iterator[ExchangeBackend]:
    staff = people()
    with ExitStack() as stack:
        stack.enter_context(clean_environ())
        server = stack.enter_context(server_for(staff))
        stack.enter_context(environ(PASSWORD_ENV, server.password))
        ca = server.write_ca(tmp_path / "ews-ca.pem")
        connection = ews(server, ca)
        cal, mailer = ExchangeCalendar(connection, staff), ExchangeMailer(connection)
        stack.callback(mailer.close)
        stack.callback(cal.close)
        yield ExchangeBackend(server, cal, mailer, staff, tmp_path)
