"""Helpers shared by the Exchange tests and the contract-suite backend."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from agent.connectors.exchange import Ews, ExchangeCalendar, ExchangeMailer
from agent.core.model import Person, Span, WorkingHours
from agent.core.retry import RetryPolicy
from agent.settings.config import ExchangeAccount
from tests.connectors.backends import reparsed
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


@dataclass
class ExchangeBackend:
    """The contract-suite backend: the connector against a running EwsServer."""

    server: EwsServer
    calendar: ExchangeCalendar
    mailer: ExchangeMailer
    people: list[Person] = field(default_factory=list)

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


@contextmanager
def running_backend(tmp_path: Path) -> Iterator[ExchangeBackend]:
    staff = people()
    with clean_environ(), server_for(staff) as server:
        ca = server.write_ca(tmp_path / "ews-ca.pem")
        connection = ews(server, ca)
        cal, mailer = ExchangeCalendar(connection, staff), ExchangeMailer(connection)
        try:
            yield ExchangeBackend(server, cal, mailer, staff)
        finally:
            cal.close()
            mailer.close()
