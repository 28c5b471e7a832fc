"""Domain values shared by the rules, the store, the engine and the connectors.

Every datetime here is timezone-aware. Instants are kept in UTC; a person's local
view is derived from their ``timezone`` when needed.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def utc(dt: datetime) -> datetime:
    """Return ``dt`` in UTC; raise ValueError for a naive datetime."""
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"naive datetime {dt.isoformat()} where an aware one is required")
    return dt.astimezone(UTC)


@dataclass(frozen=True, order=True)
class Interval:
    """A half-open span of time [start, end) in UTC."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", utc(self.start))
        object.__setattr__(self, "end", utc(self.end))
        if self.end < self.start:
            raise ValueError(f"interval ends before it starts: {self.start} > {self.end}")

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    def overlaps(self, other: Interval) -> bool:
        return self.start < other.end and other.start < self.end

    def contains(self, other: Interval) -> bool:
        return self.start <= other.start and other.end <= self.end

    def widen(self, by: timedelta) -> Interval:
        return Interval(self.start - by, self.end + by)


TimeRange = Interval


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sort and merge overlapping or touching intervals, so busy time is counted once."""
    out: list[Interval] = []
    for iv in sorted(intervals):
        if out and iv.start <= out[-1].end:
            if iv.end > out[-1].end:
                out[-1] = Interval(out[-1].start, iv.end)
        else:
            out.append(iv)
    return out


@dataclass(frozen=True)
class Span:
    """A daily span of local wall time, such as working hours 09:00-17:00."""

    start: time
    end: time

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


@dataclass(frozen=True)
class WorkingHours:
    """Local working spans per weekday (0 = Monday); a missing day is not worked."""

    days: Mapping[int, tuple[Span, ...]]

    def on(self, weekday: int) -> tuple[Span, ...]:
        return self.days.get(weekday, ())


@dataclass(frozen=True)
class Person:
    """Someone Cadence books for: an employee, a leader or a mentor, with the zone,
    working hours and holidays (``country``, ``subdivision``) their free time is read in."""

    email: str
    name: str
    timezone: str
    """An IANA zone name: the person's working hours, holidays and mail are read and
    written in it."""
    working_hours: WorkingHours
    country: str | None = None
    subdivision: str | None = None
    account: str = ""
    plan: str | None = None
    closed: frozenset[date] = frozenset()
    calendar: str | None = None
    """The person's calendar, where the provider needs it named (CalDAV)."""
    username: str | None = None
    """The person's sign-in name, where the provider needs it (CalDAV)."""
    provided: frozenset[str] = frozenset()
    """Settings the config left out, which the provider may supply ("timezone", "working_hours"):
    Microsoft 365 reads them from the mailbox."""
    language: str | None = None
    """The language of their mail (a shipped catalogue, ``de``, ``pt_BR`` ...), from the
    config or the directory; None: their program's or the global one."""

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def first_name(self) -> str:
        return self.name.split()[0] if self.name.strip() else self.email.split("@")[0]

    def local(self, dt: datetime) -> datetime:
        return dt.astimezone(self.zone)


class Stage(enum.StrEnum):
    """The quarter of the yearly deep-dive cycle; each value is its name in lower case."""

    ALIGN = enum.auto()
    ADVANCE = enum.auto()
    AMPLIFY = enum.auto()
    ADVOCATE = enum.auto()


@dataclass(frozen=True)
class Series:
    """One recurring kind of development meeting within a program."""

    name: str
    every: timedelta
    duration: timedelta
    title: str
    match: str | None = None
    """A regular expression: an event both people attend whose title it finds is a
    meeting of this series, even one Cadence did not book."""
    stages: tuple[str, ...] = ()
    skip_near: str | None = None
    skip_within: timedelta = timedelta(days=14)


@dataclass(frozen=True)
class Booking:
    horizon: timedelta = timedelta(days=14)
    lead_time: timedelta = timedelta(days=2)
    window: Span | None = None
    buffer: timedelta = timedelta(minutes=10)
    conference: str = "auto"
    granularity: timedelta = timedelta(minutes=15)
    max_per_day: int = 2
    max_per_week: int = 5


@dataclass(frozen=True)
class ReplyIntake:
    """A program's rules for taking replies to recaps (``recap:`` in the config)."""

    trust: str | None = None
    """"authenticated", "from", or None: "from" for the local provider, else "authenticated"."""
    authserv_ids: tuple[str, ...] = ()
    """The servers whose Authentication-Results count; none given: the topmost field."""
    max_actions: int = 50
    max_size: int = 5 * 1024 * 1024
    max_updates_per_day: int = 3


@dataclass(frozen=True)
class Program:
    name: str
    series: tuple[Series, ...]
    organizer: str = "employee"
    lapse_grace: timedelta = timedelta(days=7)
    booking: Booking = Booking()
    agenda_before: timedelta = timedelta(hours=24)
    recap_after: timedelta = timedelta(hours=2)
    recap_within: timedelta = timedelta(days=7)
    recap_backfill: timedelta = timedelta(0)
    """How long before Cadence started watching a relationship a meeting may have ended and still
    get its recap (0: only meetings that end after the watch began)."""
    min_notice: timedelta = timedelta(hours=48)
    max_moves: int = 1
    collect_replies: bool = False
    """Whether replies to recaps are read and their actions recorded (opt-in)."""
    intake: ReplyIntake = ReplyIntake()
    """Whose replies count and how much of them (``recap: {trust, max_actions, ...}``)."""
    language: str | None = None
    """The language of mail for people who name none (``language:``); None: the global one."""

    def get(self, series: str) -> Series:
        for s in self.series:
            if s.name == series:
                return s
        raise KeyError(series)


@dataclass(frozen=True)
class Relationship:
    """An employee and one partner (a leader or a mentor) under a program: what the
    cadence rules follow, and what a booking, a mail and an audit row belong to."""

    employee: Person
    partner: Person
    role: str
    program: Program
    first_due: datetime | None = None
    """When a new reporting line's first meetings are due (``directory.first_within`` after it
    started); None: a series never held is due at once."""

    @property
    def id(self) -> str:
        return f"{self.employee.email}/{self.partner.email}"

    def language(self, default: str) -> str:
        """The language of the pair's mail: the employee's, else the program's, else
        ``default`` (the global ``language:``)."""
        return self.employee.language or self.program.language or default

    def organizer_language(self, default: str) -> str:
        """The language of the invitation the organizer sends."""
        return self.organizer.language or self.program.language or default

    @property
    def organizer(self) -> Person:
        return self.partner if self.program.organizer == "partner" else self.employee

    @property
    def attendee(self) -> Person:
        return self.employee if self.organizer is self.partner else self.partner


class PartStat(enum.StrEnum):
    """An attendee's answer to an invitation, as iCalendar's PARTSTAT spells it; each
    provider's other answers (delegated, none, not responded ...) count as no answer yet."""

    ACCEPTED = "accepted"
    DECLINED = "declined"
    TENTATIVE = "tentative"
    NEEDS_ACTION = "needs-action"


@dataclass(frozen=True)
class Attendee:
    email: str
    partstat: PartStat = PartStat.NEEDS_ACTION


@dataclass(frozen=True)
class Event:
    """One event (or one instance of a recurring event) as seen on one person's calendar.

    ``id`` is unique within the owner's calendar: the provider's id, with the instance's
    start appended for expanded recurrences. ``key`` is the agent's booking key when the
    event carries the agent's tag, else None.
    """

    owner: str
    id: str
    title: str
    start: datetime
    end: datetime
    uid: str = ""
    all_day: bool = False
    cancelled: bool = False
    transparent: bool = False
    kind: str = "default"
    organizer: str | None = None
    attendees: tuple[Attendee, ...] = ()
    key: str | None = None
    sequence: int = 0
    description: str = ""
    location: str = ""
    note: str = ""
    """What the provider could not do as the draft asked (a conference link left out), set only on
    the event ``create`` returns, so that the booking's audit says so."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", utc(self.start))
        object.__setattr__(self, "end", utc(self.end))

    @property
    def interval(self) -> Interval:
        return Interval(self.start, self.end)

    def partstat(self, email: str) -> PartStat | None:
        """Return the response of ``email``; the organizer counts as accepted."""
        email = email.lower()
        for a in self.attendees:
            if a.email.lower() == email:
                return a.partstat
        if self.organizer and self.organizer.lower() == email:
            return PartStat.ACCEPTED
        return None

    def takes_part(self, email: str) -> bool:
        return self.partstat(email) is not None or self.owner.lower() == email.lower()

    def declined_by(self, email: str) -> bool:
        return self.partstat(email) == PartStat.DECLINED

    @property
    def blocks_time(self) -> bool:
        """Whether the event makes its owner busy."""
        return not (self.cancelled or self.transparent or self.declined_by(self.owner))


@dataclass(frozen=True)
class Skipped:
    """A calendar item a connector could not read; logged and skipped, never fatal.

    ``partial``: the item was read only in part (a recurrence cut at a limit).
    """

    owner: str
    ref: str
    reason: str
    partial: bool = False


SyncToken = str


@dataclass(frozen=True)
class Changes:
    """What changed on one calendar since a cursor.

    With ``full`` the events replace everything cached for the owner in the window;
    otherwise they are upserts and ``removed`` lists event ids that are gone.
    """

    cursor: SyncToken
    events: tuple[Event, ...] = ()
    removed: tuple[str, ...] = ()
    full: bool = False
    skipped: tuple[Skipped, ...] = ()

    @property
    def quiet(self) -> bool:
        return not (self.full or self.events or self.removed or self.skipped)


def booking_key(relationship_id: str, series: str, due: date) -> str:
    """Derive the idempotency key of one booking.

    Lower-case hex is a subset of base32hex, so the key is a valid Google event id as
    well as an ICS UID, a Graph transactionId and a CalDAV resource name.
    """
    digest = hashlib.sha256(f"{relationship_id}|{series}|{due.isoformat()}".encode())
    return digest.hexdigest()[:32]


@dataclass(frozen=True)
class EventDraft:
    """A meeting the agent wants on both people's calendars."""

    key: str
    """The booking key (``booking_key``): the event's id where the provider lets it be
    chosen, and its UID, so that a retry finds the event instead of making another."""
    organizer: Person
    attendees: tuple[Person, ...]
    title: str
    start: datetime
    end: datetime
    timezone: str
    description: str = ""
    conference: str = "none"
    relationship: str = ""
    series: str = ""
    stage: str | None = None

    @property
    def uid(self) -> str:
        return f"{self.key}@cadence"


@dataclass(frozen=True)
class Invitation:
    """An iCalendar object sent along a mail (METHOD:REQUEST or CANCEL)."""

    method: str
    ics: str


@dataclass(frozen=True)
class OutgoingMail:
    """A mail as the planner made it, ready for any provider to send."""

    key: str
    """The outbox key: whether this mail was sent is recorded under it, before and after
    sending, so that a restart never sends it twice."""
    sender: str
    to: tuple[str, ...]
    subject: str
    """Any text: a sender puts it on one line and encodes it (``agent.formats.mime``), so
    that it cannot add a header of its own."""
    text: str
    html: str
    message_id: str
    """Made from the key, so that a retry after a crash is recognised in Sent Items."""
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    invitation: Invitation | None = None
    sender_name: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    """Headers the planner fixes (the Date), so that ``plan`` and ``run`` agree."""


@dataclass(frozen=True)
class SentMail:
    key: str
    message_id: str
    where: str
    already: bool = False


@dataclass(frozen=True)
class Guard:
    """How much one tick may do before it waits for a person (``guard:``)."""

    max_actions: int | None = None
    max_share: float | None = None
    min_relationships: int = 20


@dataclass(frozen=True)
class Channel:
    """One calendar's push channel (a Google ``events.watch`` channel, a Graph
    subscription): its id, the provider's id of the watched resource, the secret the
    provider sends back with every notification, when it ends, and where it notifies."""

    owner: str
    provider: str
    id: str
    resource_id: str
    secret: str
    expires: datetime
    address: str = ""
