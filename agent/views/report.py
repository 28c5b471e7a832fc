"""``cadence report``: cadence measures for the organization, per leader and overall.

Everything comes from the store (the event cache the ticks keep, and the agent's own
bookings); no provider is called. By default a report holds dates, counts and names of
people only: no meeting titles, agendas or notes (``details=True`` adds titles).

Definitions (also printed under each report):

- *on cadence*: for a program with a staged series (the deep dive), the last deep dive
  was held within 97 days and the last development conversation of any series within
  42 days; for any other program, every series was held within its ``every`` plus the
  program's ``lapse_grace``.
- *lapse*: a span during which that limit was exceeded, counted from the relationship's
  first meeting in the store (or the start of the period when it has none); *fixed* when
  a meeting was held afterwards.
- *hours invested*: hours of held development meetings per employee, scaled to a year,
  against 0.34 % of 1,760 working hours (about 6 hours: four hours of deep dives and
  eight check-ins).
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from agent.core.model import Relationship, Series
from agent.rules.classify import Meeting, Status
from agent.settings.config import Settings
from agent.store.assessed import HISTORY, assess_from_store
from agent.store.sqlite import Store
from agent.views.people import laid
from agent.views.uncertain import advice, uncertain_mail

DEEP_DIVE_DAYS = 97
CONVERSATION_DAYS = 42
WORK_HOURS_PER_YEAR = 1760.0
TARGET_SHARE = 0.34  # percent of working hours
TARGET_HOURS = WORK_HOURS_PER_YEAR * TARGET_SHARE / 100
AHEAD = timedelta(days=120)


@dataclass(frozen=True)
class Check:
    """One cadence limit of a relationship: the series it watches and where it is drawn."""

    label: str
    limit: int  # days
    watches: frozenset[str]  # series whose held meetings satisfy it
    row: str  # the series' row in the timeline


@dataclass
class Lapse:
    check: str
    row: str
    start: datetime
    end: datetime | None  # None: still lapsed
    fixed: bool


@dataclass
class MeetingMark:
    series: str
    stage: str | None
    start: datetime
    status: str
    by_cadence: bool
    title: str | None = None  # only with details


@dataclass
class RelationshipReport:
    id: str
    employee: str
    employee_name: str
    partner: str
    partner_name: str
    role: str
    program: str
    series: list[str]
    on_cadence: bool
    days_since_conversation: int | None
    held: int = 0
    declined: int = 0
    cancelled: int = 0
    scheduled: int = 0
    booked_by_cadence: int = 0
    hours: float = 0.0
    lapses: list[Lapse] = field(default_factory=list)
    meetings: list[MeetingMark] = field(default_factory=list)

    def lapses_in(self, since: datetime) -> list[Lapse]:
        return [lapse for lapse in self.lapses if lapse.start >= since]


@dataclass
class Summary:
    """The measures of a group of relationships (one leader's, or everyone's)."""

    name: str
    email: str | None
    role: str | None
    relationships: int
    employees: int
    on_cadence: int
    on_cadence_share: float | None
    median_days_since_conversation: float | None
    never_met: int
    lapses_found: int
    lapses_fixed: int
    held: int
    declined: int
    cancelled: int
    scheduled: int
    booked_by_cadence: int
    hours_per_employee_year: float | None
    share_of_work_time: float | None  # percent


@dataclass
class Report:
    now: datetime
    since: datetime
    details: bool
    overall: Summary
    leaders: list[Summary]
    relationships: list[RelationshipReport]
    #: mail that may not have gone out, for a person to check (see views/uncertain.py)
    uncertain: list[dict[str, Any]] = field(default_factory=list)

    @property
    def days(self) -> float:
        return max((self.now - self.since).total_seconds() / 86400, 1.0)


def checks_for(rel: Relationship) -> list[Check]:
    """The cadence limits of one relationship's program (see the module docstring)."""
    program = rel.program
    names = frozenset(s.name for s in program.series)
    deep = [s for s in program.series if s.stages]
    if deep:
        others = [s for s in program.series if not s.stages]
        row = others[0].name if others else deep[0].name
        return [
            Check("deep dive", DEEP_DIVE_DAYS, frozenset(s.name for s in deep), deep[0].name),
            Check("conversation", CONVERSATION_DAYS, names, row),
        ]
    grace = program.lapse_grace
    return [Check(s.name, _limit(s, grace), frozenset({s.name}), s.name) for s in program.series]


def _limit(series: Series, grace: timedelta) -> int:
    return int((series.every + grace).total_seconds() // 86400)


def lapses(
    checks: Iterable[Check], held: list[Meeting], start: datetime, now: datetime
) -> list[Lapse]:
    """Spans when a limit was exceeded, from ``start`` (the start of the history) to ``now``."""
    out = []
    for check in checks:
        limit = timedelta(days=check.limit)
        times = sorted(m.start for m in held if m.series in check.watches)
        anchor = start
        for when in [*times, None]:
            deadline = anchor + limit
            if when is None:
                if now > deadline:
                    out.append(Lapse(check.label, check.row, deadline, None, False))
                break
            if when > deadline:
                out.append(Lapse(check.label, check.row, deadline, when, True))
            anchor = max(anchor, when)
    return sorted(out, key=lambda lapse: lapse.start)


def build(
    settings: Settings, now: datetime, since: datetime | None = None, details: bool = False
) -> Report:
    """Read the store and compute the report as of ``now`` for meetings since ``since``."""
    now = now.astimezone(UTC)
    since = (since or now - timedelta(days=365)).astimezone(UTC)
    store = Store(settings.store_at)
    try:
        settings = laid(settings, store)
        bookings = store.bookings()
        history_start = min(since, now - HISTORY)
        assessed = assess_from_store(settings, store, now, since=history_start, bookings=bookings)
        rels = []
        for rel in settings.relationships:
            found = assessed[rel.id].meetings
            mine = [
                b
                for b in bookings
                if b.relationship == rel.id
                and b.status == "booked"
                and b.created_at
                and since <= b.created_at <= now
            ]
            rels.append(_relationship(rel, found, len(mine), since, now, history_start, details))
        unsure = uncertain_mail(store)
    finally:
        store.close()
    groups: dict[tuple[str, str], list[RelationshipReport]] = {}
    for r in rels:
        groups.setdefault((r.partner, r.role), []).append(r)
    leaders = [
        summarize(members[0].partner_name, members, since, now, email, role)
        for (email, role), members in sorted(
            groups.items(), key=lambda kv: (kv[0][1] != "leader", kv[1][0].partner_name)
        )
    ]
    overall = summarize("Overall", rels, since, now)
    return Report(now, since, details, overall, leaders, rels, unsure)


def _relationship(
    rel: Relationship,
    found: list[Meeting],
    booked: int,
    since: datetime,
    now: datetime,
    history_start: datetime,
    details: bool,
) -> RelationshipReport:
    held_all = [m for m in found if m.status is Status.HELD]
    in_period = [
        m
        for m in found
        if since <= m.start <= now or (m.status is Status.SCHEDULED and m.start > now)
    ]
    checks = checks_for(rel)
    # before a relationship's first meeting nothing says it existed: no lapse is counted
    first = min((m.start for m in found), default=max(since, history_start))
    spans = lapses(checks, held_all, first, now)
    limits = {c.label: c for c in checks}
    on_cadence = all(
        any(now - m.start <= timedelta(days=c.limit) for m in held_all if m.series in c.watches)
        for c in limits.values()
    )
    last = max((m.start for m in held_all), default=None)
    out = RelationshipReport(
        id=rel.id,
        employee=rel.employee.email,
        employee_name=rel.employee.name or rel.employee.email,
        partner=rel.partner.email,
        partner_name=rel.partner.name or rel.partner.email,
        role=rel.role,
        program=rel.program.name,
        series=[s.name for s in rel.program.series],
        on_cadence=on_cadence,
        days_since_conversation=(now - last).days if last else None,
        booked_by_cadence=booked,
        lapses=spans,
    )
    for m in in_period:
        if m.status is Status.HELD:
            out.held += 1
            out.hours += (m.end - m.start).total_seconds() / 3600
        elif m.status is Status.DECLINED:
            out.declined += 1
        elif m.status is Status.CANCELLED:
            out.cancelled += 1
        elif m.status is Status.SCHEDULED:
            out.scheduled += 1
    out.meetings = [
        MeetingMark(
            m.series, m.stage, m.start, str(m.status), bool(m.key), m.title if details else None
        )
        for m in found
        if m.start >= since - timedelta(days=DEEP_DIVE_DAYS) and m.start <= now + AHEAD
    ]
    return out


def summarize(
    name: str,
    rels: list[RelationshipReport],
    since: datetime,
    now: datetime,
    email: str | None = None,
    role: str | None = None,
) -> Summary:
    days = [r.days_since_conversation for r in rels if r.days_since_conversation is not None]
    employees = {r.employee for r in rels}
    years = max((now - since).total_seconds() / 86400, 1.0) / 365.0
    hours = sum(r.hours for r in rels) / len(employees) / years if employees else None
    found = [lapse for r in rels for lapse in r.lapses_in(since)]
    return Summary(
        name=name,
        email=email,
        role=role,
        relationships=len(rels),
        employees=len(employees),
        on_cadence=sum(r.on_cadence for r in rels),
        on_cadence_share=(sum(r.on_cadence for r in rels) / len(rels)) if rels else None,
        median_days_since_conversation=float(statistics.median(days)) if days else None,
        never_met=len(rels) - len(days),
        lapses_found=len(found),
        lapses_fixed=sum(lapse.fixed for lapse in found),
        held=sum(r.held for r in rels),
        declined=sum(r.declined for r in rels),
        cancelled=sum(r.cancelled for r in rels),
        scheduled=sum(r.scheduled for r in rels),
        booked_by_cadence=sum(r.booked_by_cadence for r in rels),
        hours_per_employee_year=round(hours, 2) if hours is not None else None,
        share_of_work_time=round(hours / WORK_HOURS_PER_YEAR * 100, 3)
        if hours is not None
        else None,
    )


# --- output -----------------------------------------------------------------------------

COLUMNS = [
    ("relationships", "rel"),
    ("on_cadence_share", "on cadence"),
    ("median_days_since_conversation", "median days"),
    ("lapses_found", "lapses"),
    ("lapses_fixed", "fixed"),
    ("held", "held"),
    ("declined", "declined"),
    ("cancelled", "cancelled"),
    ("scheduled", "scheduled"),
    ("booked_by_cadence", "booked"),
    ("hours_per_employee_year", "h/employee/yr"),
    ("share_of_work_time", "% work time"),
]


def cell(key: str, value: Any) -> str:
    if value is None:
        return "-"
    if key == "on_cadence_share":
        return f"{value * 100:.0f} %"
    if key == "share_of_work_time":
        return f"{value:.2f} %"
    if key == "median_days_since_conversation":
        return f"{value:g}"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


def definitions(report: Report) -> list[str]:
    return [
        f"Period: {report.since:%Y-%m-%d} to {report.now:%Y-%m-%d} ({report.days:.0f} days); as of {report.now:%Y-%m-%d %H:%M} UTC.",
        f"On cadence: last deep dive within {DEEP_DIVE_DAYS} days and last development conversation within {CONVERSATION_DAYS} days "
        "(other programs: every series within its interval plus grace).",
        "Median days: since the last development conversation held (relationships that never met are left out).",
        "Lapses: spans past those limits that began in the period; fixed: a meeting was held after.",
        "Booked: meetings Cadence put on calendars in the period.",
        f"Hours: held development meetings per employee, scaled to a year; the aim is {TARGET_SHARE} % of "
        f"{WORK_HOURS_PER_YEAR:,.0f} working hours, about {TARGET_HOURS:.0f} h.",
        "Actions completed are not in the store and are left out.",
    ]


def to_table(report: Report) -> str:
    head = ["leader", *[label for _, label in COLUMNS]]
    rows = [
        [_who(s), *[cell(k, getattr(s, k)) for k, _ in COLUMNS]]
        for s in [*report.leaders, report.overall]
    ]
    widths = [max(len(str(r[i])) for r in [head, *rows]) for i in range(len(head))]
    lines = []
    for n, row in enumerate([head, *rows]):
        if n == len(rows):
            lines.append("  ".join("-" * w for w in widths))
        lines.append(
            "  ".join(
                str(v).ljust(w) if i == 0 else str(v).rjust(w)
                for i, (v, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    rel_head = [
        "relationship",
        "program",
        "on cadence",
        "days since",
        "held",
        "lapses",
        "open lapse",
    ]
    rel_rows = [
        [
            r.id,
            r.program,
            "yes" if r.on_cadence else "no",
            cell("", r.days_since_conversation),
            str(r.held),
            str(len(r.lapses_in(report.since))),
            next((f"{x.check} since {x.start:%Y-%m-%d}" for x in r.lapses if x.end is None), "-"),
        ]
        for r in report.relationships
    ]
    widths = [max(len(x[i]) for x in [rel_head, *rel_rows]) for i in range(len(rel_head))]
    lines += [
        "",
        *[
            "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
            for row in [rel_head, *rel_rows]
        ],
    ]
    lines += advice(report.uncertain)
    lines += ["", *definitions(report)]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _who(s: Summary) -> str:
    return s.name if s.role is None else f"{s.name} ({s.role})"


def to_json(report: Report) -> str:
    def default(value: Any) -> Any:
        if isinstance(value, datetime | date):
            return value.isoformat()
        raise TypeError(type(value).__name__)

    data = {
        "now": report.now,
        "since": report.since,
        "definitions": definitions(report),
        "overall": asdict(report.overall),
        "leaders": [asdict(s) for s in report.leaders],
        "relationships": [_relationship_json(r, report) for r in report.relationships],
        "uncertain_mail": report.uncertain,
    }
    return json.dumps(data, indent=2, default=default) + "\n"


def _relationship_json(r: RelationshipReport, report: Report) -> dict[str, Any]:
    data = asdict(r)
    if not report.details:
        for m in data["meetings"]:
            m.pop("title", None)
    return data


def to_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    keys = [k for k, _ in COLUMNS]
    writer.writerow(["scope", "name", "email", "role", *keys])
    for s in [*report.leaders, report.overall]:
        writer.writerow(
            [
                "overall" if s.role is None else "leader",
                s.name,
                s.email or "",
                s.role or "",
                *["" if getattr(s, k) is None else getattr(s, k) for k in keys],
            ]
        )
    return out.getvalue()
