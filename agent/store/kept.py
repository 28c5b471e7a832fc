"""What an engine kept from tick to tick (as ``cadence serve`` keeps it) remembers of
each relationship's calendars: the few events that can be its meetings. A quiet tick then
reads and classifies nothing again, and a changed calendar costs what changed on it, not
a year of events for every relationship of its owner (a leader has many)."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from agent.core.model import Changes, Event, Relationship
from agent.rules import classify
from agent.store.sqlite import Store


def _start(event: Event) -> datetime:
    return event.start


Patch = Callable[[Relationship, datetime, list[Event]], list[Event] | None]


class KeptCandidates:
    """Per relationship: its candidate events (``classify.candidates``), the start of
    history they were read from, and the versions of the two calendars they reflect."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._entries: dict[str, tuple[Any, datetime, list[Event]]] = {}
        self._index: tuple[Sequence[Relationship], dict[str, list[Relationship]]] = ((), {})

    def _stamp(self, rel: Relationship) -> Any:
        return (
            self.store.calendar_version(rel.employee.email),
            self.store.calendar_version(rel.partner.email),
            tuple(s.match for s in rel.program.series),
        )

    def prepare(self, relationships: Sequence[Relationship], since: datetime) -> None:
        """Read the candidates of the relationships that have none current, one query
        per calendar: a partner's calendar once for all their relationships, not once
        for each. On any error nothing is kept, and ``get`` reads one by one."""
        for _ in self.reading(relationships, since):
            pass

    def reading(self, relationships: Sequence[Relationship], since: datetime) -> Iterator[None]:
        """``prepare`` a calendar at a time, pausing after each: the sync step reads
        while it waits for the network. A relationship one of whose calendars changed
        after it was read here gets no entry (``get`` reads it again)."""
        wanted = [r for r in relationships if not self._current(r, since)]
        if len(wanted) < 2:
            return
        others: dict[str, set[str]] = {}
        for rel in wanted:
            others.setdefault(rel.employee.email, set()).add(rel.partner.email)
            others.setdefault(rel.partner.email, set()).add(rel.employee.email)
        read: dict[str, tuple[Any, list[Event]]] = {}
        try:
            for owner, names in others.items():
                version = self.store.calendar_version(owner)
                read[owner] = (version, self.store.maybe_candidates_of(owner, names, since))
                yield
            for rel in wanted:
                employee, partner = rel.employee.email, rel.partner.email
                if self._current(rel, since) or any(
                    read[o][0] != self.store.calendar_version(o) for o in (employee, partner)
                ):
                    continue
                events = (
                    read[employee][1]
                    if employee == partner
                    else list(heapq.merge(read[employee][1], read[partner][1], key=_start))
                )
                self._entries[rel.id] = (self._stamp(rel), since, classify.candidates(rel, events))
        except Exception:  # each relationship's own read (get) reports it
            return

    def _current(self, rel: Relationship, since: datetime) -> bool:
        hit = self._entries.get(rel.id)
        return hit is not None and hit[0] == self._stamp(rel) and hit[1] <= since

    def get(self, rel: Relationship, since: datetime) -> list[Event]:
        """The candidate events ending at or after ``since``, read again only when one
        of the two calendars changed in a way not patched in."""
        stamp = self._stamp(rel)
        hit = self._entries.get(rel.id)
        if hit is not None and hit[0] == stamp and hit[1] <= since:
            return [e for e in hit[2] if e.end >= since]
        events = self.store.maybe_candidates(rel.employee.email, rel.partner.email, since)
        found = classify.candidates(rel, events)
        self._entries[rel.id] = (stamp, since, found)
        return found

    def wrote(self, event: Event, owners: set[str], relationships: Sequence[Relationship]) -> None:
        """The agent stored ``event`` and dropped other copies of its booking
        (``Store.keep_only``, which changed the calendars of ``owners``)."""

        def patch(rel: Relationship, since: datetime, kept: list[Event]) -> list[Event]:
            events = [e for e in kept if e.key != event.key]
            if event.owner in (rel.employee.email, rel.partner.email):
                events.append(event)
                events.sort(key=lambda e: e.start)
            return events

        self._patch(owners, relationships, patch)

    def synced(self, owner: str, changes: Changes, relationships: Sequence[Relationship]) -> None:
        """The sync stored ``changes`` of ``owner``'s calendar (``Store.apply``)."""
        if changes.full:
            return  # everything may differ: read again when needed
        gone = set(changes.removed) | {e.id for e in changes.events}

        def patch(rel: Relationship, since: datetime, kept: list[Event]) -> list[Event] | None:
            rest = [e for e in kept if not (e.owner == owner and e.id in gone)]
            new = [e for e in changes.events if e.end >= since]
            uids = {e.uid for e in rest}
            if any(e.key and e.uid and e.uid not in uids for e in new):
                # a new booking's copies may hide among the events not kept
                return None
            merged = sorted([*rest, *new], key=lambda e: e.start)
            return classify.candidates(rel, merged)

        self._patch({owner}, relationships, patch)

    def _patch(
        self, owners: Iterable[str], relationships: Sequence[Relationship], patch: Patch
    ) -> None:
        """Apply ``patch`` to the entries that were current just before the write that
        moved each of ``owners`` one version on; forget the others."""
        owners = set(owners)
        if self._index[0] is not relationships:
            index: dict[str, list[Relationship]] = {}
            for r in relationships:
                index.setdefault(r.employee.email, []).append(r)
                index.setdefault(r.partner.email, []).append(r)
            self._index = (relationships, index)
        touched = {r.id: r for o in owners for r in self._index[1].get(o, [])}
        for rid, rel in touched.items():
            hit = self._entries.get(rid)
            if hit is None:
                continue
            before = tuple(
                (epoch, writes - (person in owners))
                for person in (rel.employee.email, rel.partner.email)
                for epoch, writes in [self.store.calendar_version(person)]
            )
            current = hit[0] == (*before, self._stamp(rel)[2])
            events = patch(rel, hit[1], hit[2]) if current else None
            if events is None:
                del self._entries[rid]
            else:
                self._entries[rid] = (self._stamp(rel), hit[1], events)
