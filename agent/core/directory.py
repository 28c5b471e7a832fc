"""People as the company's directory describes them, and the reporting lines followed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from agent.core.model import WorkingHours


@dataclass(frozen=True)
class Entry:
    """One person read from a directory source."""

    email: str
    name: str = ""
    manager: str | None = None
    """The manager's email, where the source names managers so (CSV)."""
    manager_ref: str | None = None
    """The manager's id in the source (an Entra object id, an LDAP DN, a Google user
    id), where it names managers so; the manager is the entry of that ``ref``."""
    ref: str | None = None
    member: bool = True
    """Whether the person is in the program (a group, a filter, a column): people who
    are not are still read, since they may lead members."""
    country: str | None = None
    timezone: str | None = None
    language: str | None = None

    def data(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def of(cls, data: dict[str, Any]) -> Entry:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


#: the fields whose change is worth telling (a manager change is told on its own)
DESCRIBED = ("name", "country", "timezone", "language", "member")


@dataclass(frozen=True)
class Line:
    """A reporting line Cadence follows, from the day it started to the day it ended."""

    employee: str
    """The employee's address: a line is what the store keeps of a reporting line, and
    a ``Relationship`` carries the people themselves."""
    leader: str
    since: datetime
    until: datetime | None = None
    reason: str | None = None
    """Why it ended: "left", "leader left", "new leader", "left the program"."""
    successor: str | None = None
    """The employee's next leader, when the line ended with a manager change."""

    @property
    def id(self) -> str:
        """The id of the relationship the line makes (``Relationship.id``), under which
        its bookings, mails and audit rows are kept."""
        return f"{self.employee}/{self.leader}"


@dataclass(frozen=True)
class Limits:
    """How much one read may change before a person must confirm it (``directory.guard``)."""

    max_drop: float = 0.1
    """The share of people a read may lose against the last one."""
    max_changes: float = 0.2
    """Changes (joiners, leavers, lines started and ended) a read may make, as a share of the
    people, and at least this many."""
    min_changes: int = 10


@dataclass(frozen=True)
class Pair:
    """A relationship named in the directory's relationships file (mentoring, peers)."""

    employee: str
    partner: str
    role: str
    program: str
    where: str = ""
    """``file:line``, for what is said about it."""


@dataclass(frozen=True)
class Directory:
    """``directory:`` resolved: where people come from and what their lines follow."""

    source: Any
    """The source's validated config section (its ``kind`` picks the connector)."""
    program: str
    role: str = "leader"
    account: str = ""
    first_within: timedelta = timedelta(days=30)
    retention: timedelta = timedelta(days=365)
    interval: timedelta = timedelta(hours=1)
    limits: Limits = Limits()
    base: str = "."
    """The config file's folder, for a source's relative paths."""
    plans: str | None = None
    """The folder of the plans of the people the directory adds (``EMAIL.yaml``)."""
    pairs: tuple[Pair, ...] = ()
    """Mentoring and peer relationships from ``directory.relationships``."""
    timezone: str = "UTC"
    """What a person the directory adds gets where the directory says nothing (``timezone:`` and
    ``defaults:``); ``provided`` is what the mailbox may supply."""
    working_hours: WorkingHours | None = None
    country: str | None = None
    provided: frozenset[str] = frozenset()
