"""Which calendar events are development meetings, of which series, in which state."""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from agent.core.model import Event, Relationship


class Status(enum.StrEnum):
    """What became of a meeting, as both calendars tell it."""

    SCHEDULED = "scheduled"
    HELD = "held"
    CANCELLED = "cancelled"
    DECLINED = "declined"


@dataclass(frozen=True)
class Own:
    """What the store knows of one of the agent's bookings, by key."""

    relationship: str
    series: str
    stage: str | None = None


@dataclass(frozen=True)
class Meeting:
    """One occurrence of a series for a relationship, merged from both calendars."""

    id: str
    """The booking key of a meeting the agent made; else the event's UID and start (one
    occurrence of a recurring event), or its id."""
    relationship: str
    series: str
    title: str
    start: datetime
    end: datetime
    status: Status
    stage: str | None = None
    key: str | None = None
    declined_by: str | None = None
    event: Event | None = None

    @property
    def active(self) -> bool:
        return self.status in (Status.SCHEDULED, Status.HELD)


def series_of(
    event: Event, rel: Relationship, own: Mapping[str, Own], key: str | None = None
) -> str | None:
    """Return the series ``event`` belongs to for ``rel``, or None.

    The agent's tag decides for its own events; otherwise both people must take part
    and the title must match a series' pattern (the first listed wins).
    """
    key = key or event.key
    if key and key in own:
        tagged = own[key]
        return tagged.series if tagged.relationship == rel.id else None
    if event.all_day:
        return None
    if not (event.takes_part(rel.employee.email) and event.takes_part(rel.partner.email)):
        return None
    for series in rel.program.series:
        if series.match and re.search(series.match, event.title):
            return series.name
    return None


def candidates(rel: Relationship, events: Iterable[Event]) -> list[Event]:
    """The events that can be ``rel``'s meetings whatever the agent has booked: a
    superset of what ``meetings`` keeps, small enough to hold between ticks, so a quiet
    calendar is not read and classified again."""
    events = list(events)
    tagged_uids = {e.uid for e in events if e.key and e.uid}
    patterns = [re.compile(s.match) for s in rel.program.series if s.match]
    out = []
    for event in events:
        if (
            event.key
            or (event.uid and event.uid in tagged_uids)
            or (
                not event.all_day
                and event.takes_part(rel.employee.email)
                and event.takes_part(rel.partner.email)
                and any(p.search(event.title) for p in patterns)
            )
        ):
            out.append(event)
    return out


def stage_in(title: str, stages: Iterable[str]) -> str | None:
    lowered = title.lower()
    for stage in stages:
        if re.search(rf"\b{re.escape(stage)}\b", lowered):
            return stage
    return None


def meetings(
    rel: Relationship, events: Iterable[Event], own: Mapping[str, Own], now: datetime
) -> list[Meeting]:
    """Classify and merge the events both people see into the relationship's meetings.

    One meeting shows on both calendars: copies are merged by UID (or key), and the
    meeting counts as cancelled or declined if any copy says so.
    """
    events = list(events)
    # an invitation's copy may lack the agent's tag: the shared UID tells it is the same
    keys_by_uid = {e.uid: e.key for e in events if e.key and e.uid}
    copies: dict[str, list[Event]] = {}
    kinds: dict[str, str] = {}
    keys: dict[str, str | None] = {}
    for event in events:
        key = event.key or (keys_by_uid.get(event.uid) if event.uid else None)
        series = series_of(event, rel, own, key)
        if series is None:
            continue
        ident = key or f"{event.uid or event.id}|{event.start:%Y%m%dT%H%M}"
        keys[ident] = key
        copies.setdefault(ident, []).append(event)
        kinds[ident] = series
    out = []
    for ident, group in copies.items():
        series = kinds[ident]
        # prefer the organizer's copy: it carries everyone's replies
        group.sort(key=lambda e: (e.owner != (e.organizer or e.owner), e.owner))
        main = group[0]
        declined_by = next(
            (
                p.email
                for p in (rel.employee, rel.partner)
                if any(e.declined_by(p.email) for e in group)
            ),
            None,
        )
        if any(e.cancelled for e in group):
            status = Status.CANCELLED
        elif declined_by:
            status = Status.DECLINED
        elif main.end <= now:
            status = Status.HELD
        else:
            status = Status.SCHEDULED
        spec = rel.program.get(series)
        key = keys[ident]
        stage = None
        if key and key in own:
            stage = own[key].stage
        if stage is None and spec.stages:
            stage = stage_in(main.title, spec.stages)
        out.append(
            Meeting(
                # the same id whichever copies were read (a calendar may fail to sync)
                id=key or (f"{main.uid}-{main.start:%Y%m%dT%H%M}" if main.uid else main.id),
                relationship=rel.id,
                series=series,
                title=main.title,
                start=main.start,
                end=main.end,
                status=status,
                stage=stage,
                key=key,
                declined_by=declined_by,
                event=main,
            )
        )
    out.sort(key=lambda m: (m.start, m.id))
    return out
