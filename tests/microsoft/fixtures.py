"""Helpers shared by the Microsoft tests and the contract-suite backend."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from agent.connectors.microsoft import Graph, MicrosoftCalendar, MicrosoftMailer, format_dtz
from agent.core.model import Person, Span, WorkingHours
from agent.core.retry import RetryPolicy
from agent.settings.config import MicrosoftAccount, Settings
from tests import programs
from tests.connectors.backends import Booked, Wire, environ, load, reparsed
from tests.environ import clean_environ
from tests.microsoft.server import GraphServer

SECRET_ENV = "CADENCE_TEST_GRAPH_SECRET"
HOURS = WorkingHours({d: (Span(time(9), time(17)),) for d in range(5)})

# the account's keys in a whole-tick config (tests.programs.config), for write_config
ACCOUNT_SETTINGS = """\
    provider: microsoft
    tenant: {tenant}
    client_id: {client_id}
    client_secret_env: {secret_env}
    authority: {url}
    graph: {url}
    ca_bundle: graph-ca.pem
"""


def people(domain: str = "contoso.example") -> list[Person]:
    zones = ("Europe/Berlin", "America/New_York", "Europe/Berlin")
    return [
        Person(f"{n}@{domain}", f"{n.title()} Test", z, HOURS, account="m365")
        for n, z in zip(("ana", "ben", "chloe"), zones, strict=True)
    ]


def account(server: GraphServer, ca: Path, **over: Any) -> MicrosoftAccount:
    values: dict[str, Any] = {
        "provider": "microsoft",
        "tenant": server.tenant,
        "client_id": server.client_id,
        "client_secret_env": SECRET_ENV,
        "authority": server.url,
        "graph": server.url,
        "ca_bundle": str(ca),
    }
    values.update(over)
    return MicrosoftAccount.model_validate(values)


def graph(server: GraphServer, ca: Path, retry: RetryPolicy | None = None, **over: Any) -> Graph:
    return Graph(
        account(server, ca, **over),
        Path,
        retry or RetryPolicy.none(),
        environ={SECRET_ENV: server.client_secret or ""},
    )


def write_config(server: GraphServer, folder: Path, template: str, secret_env: str) -> Path:
    """Put the CA and ``cadence.yaml`` in ``folder``, ``template`` filled in for ``server``
    with its client secret read from ``secret_env``."""
    server.write_ca(folder / "graph-ca.pem")
    return programs.write_config(
        folder,
        template,
        tenant=server.tenant,
        client_id=server.client_id,
        secret_env=secret_env,
        url=server.url,
    )


def add_deep_dives(
    server: GraphServer, staff: Sequence[Person], ana_held: datetime, chloe_held: datetime
) -> None:
    """The hour-long deep dives Ana and Chloe last held with Ben, titled as people title
    them: the history the leader cycle reads."""
    ana, ben, chloe = staff
    for who, title, start in (
        (ana, "Development Align: Ana & Ben", ana_held),
        (chloe, "Deep dive: Chloe & Ben", chloe_held),
    ):
        server.add_event(who.email, graph_event(title, start, start + timedelta(hours=1), [ben]))


def graph_event(
    title: str,
    start: datetime,
    end: datetime,
    attendees: Sequence[Person] = (),
    *,
    all_day: bool = False,
    rrule: str | None = None,
    transparent: bool = False,
    zone: str = "UTC",
    show_as: str | None = None,
) -> dict[str, Any]:
    """The JSON body Outlook would POST for an event a person makes."""
    body: dict[str, Any] = {
        "subject": title,
        "showAs": show_as or ("free" if transparent else "busy"),
        "attendees": [
            {"emailAddress": {"address": p.email, "name": p.name}, "type": "required"}
            for p in attendees
        ],
    }
    if all_day:
        first = start.date() if isinstance(start, datetime) else start
        last = end.date() if isinstance(end, datetime) else end
        body.update(
            isAllDay=True,
            start={"dateTime": f"{first.isoformat()}T00:00:00", "timeZone": zone},
            end={"dateTime": f"{last.isoformat()}T00:00:00", "timeZone": zone},
        )
    else:
        body.update(start=format_dtz(start, zone), end=format_dtz(end, zone))
    if rrule:
        body["recurrence"] = recurrence(rrule, start, zone)
    return body


def recurrence(rule: str, start: datetime, zone: str) -> dict[str, Any]:
    """Translate an RFC 5545 RRULE (DAILY/WEEKLY, INTERVAL, COUNT, UNTIL, BYDAY) to Graph."""
    parts = dict(p.split("=", 1) for p in rule.upper().split(";") if p)
    days = {
        "MO": "monday",
        "TU": "tuesday",
        "WE": "wednesday",
        "TH": "thursday",
        "FR": "friday",
        "SA": "saturday",
        "SU": "sunday",
    }
    freq = {"DAILY": "daily", "WEEKLY": "weekly", "MONTHLY": "absoluteMonthly"}[parts["FREQ"]]
    pattern: dict[str, Any] = {"type": freq, "interval": int(parts.get("INTERVAL", 1))}
    if freq == "weekly":
        byday = parts.get("BYDAY", "").split(",") if parts.get("BYDAY") else []
        pattern["daysOfWeek"] = [days[d] for d in byday] or [
            ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")[
                start.weekday()
            ]
        ]
    if freq == "absoluteMonthly":
        pattern["dayOfMonth"] = start.day
    rng: dict[str, Any] = {"startDate": start.date().isoformat(), "recurrenceTimeZone": zone}
    if "COUNT" in parts:
        rng.update(type="numbered", numberOfOccurrences=int(parts["COUNT"]))
    elif "UNTIL" in parts:
        rng.update(
            type="endDate",
            endDate=date.fromisoformat(
                f"{parts['UNTIL'][:4]}-{parts['UNTIL'][4:6]}-{parts['UNTIL'][6:8]}"
            ).isoformat(),
        )
    else:
        rng["type"] = "noEnd"
    return {"pattern": pattern, "range": rng}


WIRE = Wire(
    sync="delta",
    mail_is_create=False,
    create="events.create",
    fetch_booked=Counter(),
    busy=lambda n: {"getSchedule": 1, "batch": 0},  # one call, no $batch, for a few people
    sign_in=lambda n: Counter({"openid": 1, "token": 1}),
    resync=lambda n: {"delta": 2 * n},  # 410 syncStateNotFound, then the full round
    inbox="messages.list",
    read_reply=Counter({"messages.value": 1, "sendMail": 1}),  # its MIME, then the update
)


@dataclass
class MicrosoftBackend:
    """The contract-suite backend: the connector against a running GraphServer."""

    server: GraphServer
    calendar: MicrosoftCalendar
    mailer: MicrosoftMailer
    people: list[Person] = field(default_factory=list)
    folder: Path = Path()
    wire = WIRE
    invites_by_mail = False
    copies_to_attendees = True
    merges_busy = True
    refuses_stale_cursors = True
    conference = True
    unknown_mailbox = r"nobody@contoso\.example.*ErrorMailboxNotFound"

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
        zone = owner.timezone if owner.timezone else "UTC"
        body = graph_event(
            title,
            start,
            end,
            attendees,
            all_day=all_day,
            rrule=rrule,
            transparent=transparent,
            zone=zone,
        )
        return self.server.add_event(owner.email, body)

    def delivered(self) -> list[EmailMessage]:
        return reparsed(self.server.sent)

    def counts(self) -> Counter[str]:
        return Counter(self.server.counts)

    def settings(self, rest: str) -> Settings:
        account = ACCOUNT_SETTINGS.format(
            tenant=self.server.tenant,
            client_id=self.server.client_id,
            secret_env=SECRET_ENV,
            url=self.server.url,
        )
        text = (
            "timezone: Europe/Berlin\nstore: tick.db\naccounts:\n  m365:\n"
            + account
            + 'defaults:\n  working_hours: {mon-fri: "09:00-17:00"}\n'
            + programs.CONTOSO_PEOPLE.format()  # Ben in Berlin: hours in common with Ana
            + rest
        )
        return load(self.folder / "tick.yaml", text)

    def booked(self, owner: Person, key: str) -> Booked:
        [event] = [
            e
            for e in self.server.events_of(owner.email)
            if e.get("transactionId") == f"cadence-{key}"
        ]
        return Booked(
            tag=event["transactionId"].removeprefix("cadence-"),
            title=event["subject"],
            start=datetime.fromisoformat(event["start"]["dateTime"][:19]).replace(tzinfo=UTC),
            conference=event["onlineMeeting"]["joinUrl"],
        )

    def invited(self, key: str, title: str) -> set[str]:
        """The attendees the server put an invitation copy of the booking on."""
        with self.server.lock:
            return {
                owner
                for owner, box in self.server.mailboxes.items()
                for ev in box.events.values()
                if ev.master_of_copy and ev.body.get("subject") == title
            }

    def forget_cursors(self) -> bool:
        self.server.expire_delta_tokens()
        return True

    def stale(self, cursor: str) -> str:
        self.forget_cursors()
        return cursor

    def stranger(self) -> Person:
        return Person("nobody@contoso.example", "Nobody", "UTC", HOURS)

    def wrong_requests(self) -> list[str]:
        return []

    def read_replies(self) -> None:
        pass  # the program's collect_replies is enough: the server holds every inbox

    def deliver(self, owner: Person, raw: bytes) -> str:
        return f"graph:{owner.email}/{self.server.deliver(owner.email, raw)}"


@contextmanager
def running_backend(tmp_path: Path) -> Iterator[MicrosoftBackend]:
    staff = people()
    with ExitStack() as stack:
        stack.enter_context(clean_environ())
        server = stack.enter_context(GraphServer([p.email for p in staff]))
        stack.enter_context(environ(SECRET_ENV, server.client_secret or ""))
        ca = server.write_ca(tmp_path / "graph-ca.pem")
        g = graph(server, ca)
        cal, mailer = MicrosoftCalendar(g, staff), MicrosoftMailer(g)
        stack.callback(mailer.close)
        stack.callback(cal.close)
        yield MicrosoftBackend(server, cal, mailer, staff, tmp_path)


def day(d: date, hour: int = 0, minute: int = 0, zone: str = "UTC") -> datetime:
    from zoneinfo import ZoneInfo

    return datetime.combine(d, time(hour, minute), ZoneInfo(zone))


def week_after(d: date, weeks: int = 1) -> date:
    return d + timedelta(weeks=weeks)
