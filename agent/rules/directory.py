"""What a directory read changes: joiners, leavers, manager changes, and whether to trust it.

Pure: the directory sync (``agent.tick.directory``) reads the source and the store, and
this module decides. A read is compared with the last one applied; a read that lost most
of the people or changes far more than usual is held for a person to confirm, since an
empty answer from a broken filter must never cancel a company's meetings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from agent.core.directory import DESCRIBED, Entry, Limits, Line


def resolve(entries: Iterable[Entry]) -> dict[str, Entry]:
    """Entries by lower-case email, managers named by email.

    A manager named by the source's own id is looked up among the entries; a manager the
    read does not hold is dropped (that person has no leader Cadence can reach). The last
    entry of an email wins, as a directory lists a person once.
    """
    by_email = {e.email.lower(): dataclasses.replace(e, email=e.email.lower()) for e in entries}
    by_ref = {e.ref: e.email for e in by_email.values() if e.ref}
    out: dict[str, Entry] = {}
    for email, e in by_email.items():
        manager = e.manager.lower() if e.manager else by_ref.get(e.manager_ref or "")
        if manager == email or manager not in by_email:
            manager = None
        out[email] = dataclasses.replace(e, manager=manager)
    return out


def merged(
    before: Mapping[str, Entry], changed: Iterable[Entry], removed: Iterable[str]
) -> list[Entry]:
    """The whole directory after an incremental read: the last one, with what changed."""
    out = dict(before)
    for email in removed:
        out.pop(email.lower(), None)
    for e in changed:
        out[e.email.lower()] = e
    return list(out.values())


def reporting(entries: Mapping[str, Entry]) -> dict[str, str]:
    """Employee → leader, for every member whose manager is in the directory."""
    return {e.email: e.manager for e in entries.values() if e.member and e.manager}


@dataclass(frozen=True)
class Ended:
    line: tuple[str, str]
    reason: str
    successor: str | None = None


@dataclass
class Diff:
    """What applying a read would change, against the last read applied."""

    joined: list[Entry] = field(default_factory=list)
    left: list[Entry] = field(default_factory=list)
    #: employee → leader, for lines that start
    started: list[tuple[str, str]] = field(default_factory=list)
    ended: list[Ended] = field(default_factory=list)
    #: email → the described fields that changed, as (before, after)
    changed: dict[str, dict[str, tuple[object, object]]] = field(default_factory=dict)
    before: int = 0
    after: int = 0

    @property
    def manager_changes(self) -> list[Ended]:
        return [e for e in self.ended if e.successor]

    @property
    def size(self) -> int:
        """How many changes the read makes: what the guard counts."""
        return len(self.joined) + len(self.left) + len(self.started) + len(self.ended)

    def __bool__(self) -> bool:
        return bool(self.size or self.changed)

    def lines(self) -> list[str]:
        """The diff as a person reads it, one change per line."""
        out = [
            f"joins: {e.email}"
            + (f" (leader {e.manager})" if e.member and e.manager else "")
            + ("" if e.member else " (not in the program)")
            for e in self.joined
        ]
        out += [f"leaves: {e.email}" for e in self.left]
        for e in self.ended:
            employee, leader = e.line
            if e.successor:
                out.append(f"new leader: {employee}: {leader} -> {e.successor}")
            else:
                out.append(f"line ends: {employee} / {leader} ({e.reason})")
        successors = {(e.line[0], e.successor) for e in self.ended if e.successor}
        joined = {e.email for e in self.joined}
        for employee, leader in self.started:
            if (employee, leader) not in successors and employee not in joined:
                out.append(f"line starts: {employee} / {leader}")
        for email, fields_ in sorted(self.changed.items()):
            parts = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in sorted(fields_.items()))
            out.append(f"changes: {email}: {parts}")
        return out


def diff(before: Mapping[str, Entry], after: Mapping[str, Entry]) -> Diff:
    """Compare two resolved reads (``resolve``)."""
    out = Diff(before=len(before), after=len(after))
    out.joined = [after[e] for e in sorted(after.keys() - before.keys())]
    out.left = [before[e] for e in sorted(before.keys() - after.keys())]
    old, new = reporting(before), reporting(after)
    for employee, leader in sorted(old.items()):
        if new.get(employee) == leader:
            continue
        if employee not in after:
            reason = "left"
        elif leader not in after:
            reason = "leader left"
        elif not after[employee].member:
            reason = "left the program"
        elif employee in new:
            reason = "new leader"
        else:
            reason = "no leader"
        out.ended.append(Ended((employee, leader), reason, new.get(employee)))
    out.started = [(e, leader) for e, leader in sorted(new.items()) if old.get(e) != leader]
    for email in sorted(before.keys() & after.keys()):
        a, b = before[email], after[email]
        fields_ = {
            k: (getattr(a, k), getattr(b, k)) for k in DESCRIBED if getattr(a, k) != getattr(b, k)
        }
        if fields_:
            out.changed[email] = fields_
    return out


def held(d: Diff, limits: Limits) -> str | None:
    """Why the read must wait for ``--confirm``, or None. The first read is the start."""
    if d.before == 0:
        return None
    if d.after < d.before * (1 - limits.max_drop):
        return (
            f"the directory read returned {d.after} people, {d.before} last time "
            f"(more than {limits.max_drop:.0%} fewer)"
        )
    allowed = max(limits.min_changes, int(limits.max_changes * d.before))
    if d.size > allowed:
        return (
            f"the directory read makes {d.size} changes to {d.before} people "
            f"(more than {allowed}: {limits.max_changes:.0%} of the people, at least "
            f"{limits.min_changes})"
        )
    return None


def lines_after(current: Iterable[Line], d: Diff, now: datetime) -> tuple[list[Line], list[Line]]:
    """The lines to end and to start when ``d`` is applied at ``now``."""
    open_ = {(line.employee, line.leader): line for line in current if line.until is None}
    ending = []
    for e in d.ended:
        found = open_.get(e.line)
        if found is not None:
            ending.append(
                dataclasses.replace(found, until=now, reason=e.reason, successor=e.successor)
            )
    starting = [
        Line(employee, leader, now)
        for employee, leader in d.started
        if (employee, leader) not in open_
    ]
    return ending, starting
