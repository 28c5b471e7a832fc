"""Small builders for domain values in tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from agent.core.durations import parse_spans
from agent.core.model import (
    Attendee,
    Booking,
    Event,
    PartStat,
    Person,
    Program,
    Relationship,
    Series,
    WorkingHours,
)


def hours(text: str = "09:00-17:00", days: range = range(5)) -> WorkingHours:
    return WorkingHours({d: parse_spans(text) for d in days})


def person(
    name: str,
    tz: str = "Europe/Berlin",
    country: str | None = None,
    work: str = "09:00-17:00",
    **kw: object,
) -> Person:
    return Person(
        email=f"{name}@acme.example",
        name=name.title(),
        timezone=tz,
        working_hours=hours(work),
        country=country,
        **kw,  # type: ignore[arg-type]
    )


DEEP = Series(
    "deep_dive",
    every=timedelta(days=90),
    duration=timedelta(hours=1),
    title="Development {{ stage | title }}: {{ employee.first_name }} & {{ partner.first_name }}",
    match=r"(?i)\b(align|advance|amplify|advocate|deep dive)\b",
    stages=("align", "advance", "amplify", "advocate"),
)
CHECK = Series(
    "check_in",
    every=timedelta(days=30),
    duration=timedelta(minutes=15),
    title="Development check-in: {{ employee.first_name }} & {{ partner.first_name }}",
    match=r"(?i)\bcheck-?in\b",
    skip_near="deep_dive",
)
PROGRAM = Program(
    "leader-cycle",
    (DEEP, CHECK),
    booking=Booking(window=parse_spans("10:00-16:00")[0]),
)


def relationship(emp: Person | None = None, partner: Person | None = None) -> Relationship:
    return Relationship(emp or person("ana"), partner or person("ben"), "leader", PROGRAM)


def meeting_event(
    rel: Relationship,
    title: str,
    start: datetime,
    minutes: int = 60,
    *,
    owner: Person | None = None,
    declined: str | None = None,
    cancelled: bool = False,
    key: str | None = None,
    uid: str | None = None,
) -> Event:
    owner = owner or rel.employee
    attendees = tuple(
        Attendee(p.email, PartStat.DECLINED if p.email == declined else PartStat.ACCEPTED)
        for p in (rel.employee, rel.partner)
    )
    return Event(
        owner=owner.email,
        id=uid or f"{title}-{start:%Y%m%d%H%M}",
        uid=uid or f"{title}-{start:%Y%m%d%H%M}",
        title=title,
        start=start,
        end=start + timedelta(minutes=minutes),
        organizer=rel.employee.email,
        attendees=attendees,
        cancelled=cancelled,
        key=key,
    )


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)
