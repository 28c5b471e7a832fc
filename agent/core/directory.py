"""People as the company's directory describes them, and the reporting lines followed."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta
from typing import Any

from agent.core.model import WorkingHours


@dataclass(frozen=True)
class Entry:
    """One person read from a directory source.

    ``manager`` is the manager's email when the source names it so (CSV); sources that
    name a manager by their own id (an Entra object id, an LDAP DN, a Google user id) set
    ``manager_ref`` instead, and the manager is found among the entries by ``ref``.
    ``member`` says whether the person is in the program (a group, a filter, a column):
    people who are not members are still read, since they may lead members.
    """

    email: str
    name: str = ""
    manager: str | None = None
    manager_ref: str | None = None
    ref: str | None = None
    member: bool = True
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
    leader: str
    since: datetime
    until: datetime | None = None
    #: why it ended: "left", "leader left", "new leader", "left the program"
    reason: str | None = None
    #: the employee's next leader, when the line ended with a manager change
    successor: str | None = None

    @property
    def id(self) -> str:
        return f"{self.employee}/{self.leader}"


@dataclass(frozen=True)
class Limits:
    """How much one read may change before a person must confirm it (``directory.guard``)."""

    #: the share of people a read may lose against the last one
    max_drop: float = 0.1
    #: changes (joiners, leavers, lines started and ended) a read may make, as a share of
    #: the people, and at least this many
    max_changes: float = 0.2
    min_changes: int = 10


@dataclass(frozen=True)
class Pair:
    """A relationship named in the directory's relationships file (mentoring, peers)."""

    employee: str
    partner: str
    role: str
    program: str
    #: ``file:line``, for what is said about it
    where: str = ""


@dataclass(frozen=True)
class Directory:
    """``directory:`` resolved: where people come from and what their lines follow."""

    #: the source's validated config section (its ``kind`` picks the connector)
    source: Any
    program: str
    role: str = "leader"
    account: str = ""
    first_within: timedelta = timedelta(days=30)
    retention: timedelta = timedelta(days=365)
    interval: timedelta = timedelta(hours=1)
    limits: Limits = Limits()
    #: the config file's folder, for a source's relative paths
    base: str = "."
    #: the folder of the plans of the people the directory adds (``EMAIL.yaml``)
    plans: str | None = None
    #: mentoring and peer relationships from ``directory.relationships``
    pairs: tuple[Pair, ...] = ()
    #: what a person the directory adds gets where the directory says nothing
    #: (``timezone:`` and ``defaults:``); ``provided`` is what the mailbox may supply
    timezone: str = "UTC"
    working_hours: WorkingHours | None = None
    country: str | None = None
    provided: frozenset[str] = frozenset()
