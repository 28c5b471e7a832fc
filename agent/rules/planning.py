"""The planner: a snapshot of the calendars and the store, and ``now``, in; actions out.

It works over scheduling units: a partner and all their relationships, because the
partner's load (meetings a day and a week) ties those relationships together. Units are
planned one after the other over one picture of everyone's busy time, so a slot given
to one unit is busy for the next (an employee may have a leader and a mentor).

All booking policy lives here: what is due, conflicts with booked meetings, the load
caps, the move budget (a move accepted by hand uses it up), waves (a relationship's
second series waits for its first, which ``skip_near`` looks at). The planner reads
nothing and writes nothing; after each planned booking or move it assesses the
relationship again as if it had happened, so the mails of the same tick see it.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from agent.core import locales
from agent.core.model import Attendee, Event, Interval, PartStat, Person, Relationship
from agent.core.records import StoredBooking
from agent.core.timestamps import to_store
from agent.rules import actions, cadence, classify, mailplan, messages, reschedule, slots
from agent.rules.actions import Accept, Action, Book, Move, Note
from agent.rules.classify import Meeting, Own, Status
from agent.rules.reschedule import OwnBooking, Review

#: how far back meetings count for the partner's load (days and ISO weeks)
LOAD_WINDOW = timedelta(days=8)


@dataclass(frozen=True)
class Unit:
    """A partner and all their relationships: what one planning pass covers."""

    partner: str
    relationships: tuple[Relationship, ...]

    @property
    def people(self) -> set[str]:
        return {p.email for r in self.relationships for p in (r.employee, r.partner)}


def units(relationships: Iterable[Relationship]) -> list[Unit]:
    """Group relationships by partner, in the order the configuration lists them."""
    grouped: dict[str, list[Relationship]] = {}
    for rel in relationships:
        grouped.setdefault(rel.partner.email, []).append(rel)
    return [Unit(partner, tuple(rels)) for partner, rels in grouped.items()]


def touched(all_units: Iterable[Unit], emails: Iterable[str]) -> list[Unit]:
    """The units a change on these people's calendars can alter."""
    changed = set(emails)
    return [u for u in all_units if u.people & changed]


@dataclass
class Snapshot:
    """What one tick knows before it acts: meetings and assessments per relationship,
    the candidate events they came from, the agent's own bookings, what stands during
    each booked meeting, and whose calendar could not be read."""

    now: datetime
    meetings: dict[str, list[Meeting]]
    states: dict[str, list[cadence.SeriesState]]
    candidates: Mapping[str, Sequence[Event]]
    own: dict[str, Own]
    bookings: Mapping[str, StoredBooking]
    during: Mapping[str, Sequence[Event]] = field(default_factory=dict)
    unreadable: frozenset[str] = frozenset()
    #: whose free/busy could not be read: their bookings wait
    no_busy: frozenset[str] = frozenset()
    people: Mapping[str, Person] = field(default_factory=dict)
    #: when Cadence began watching each relationship (recaps only for what ended after)
    watched: Mapping[str, datetime] = field(default_factory=dict)
    mail: mailplan.MailContext | None = None
    #: the times employees picked on the pick-a-time page, by booking key: (the number
    #: of moves the booking had when it asked, the slot picked)
    picks: Mapping[str, tuple[int, Interval]] = field(default_factory=dict)
    #: employees whose cadence is paused for a leave, and when it resumes
    paused: Mapping[str, datetime] = field(default_factory=dict)


@dataclass(frozen=True)
class _Review:
    state: cadence.SeriesState
    row: StoredBooking
    meeting: Meeting | None
    decision: Review


@dataclass
class _Decisions:
    """What the first pass over a unit found: reviews of own bookings, needs, notes."""

    reviews: list[_Review] = field(default_factory=list)
    needs: list[cadence.BookingNeed] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)


def _decide(unit: Unit, snap: Snapshot) -> _Decisions:
    out = _Decisions()
    for rel in unit.relationships:
        unreadable = bool({rel.employee.email, rel.partner.email} & snap.unreadable)
        meetings = snap.meetings.get(rel.id, [])
        for state in snap.states.get(rel.id, []):
            row = snap.bookings.get(state.key)
            if row is not None and row.status in ("booked", "moving"):
                meeting = next((m for m in meetings if m.key == state.key), None)
                if row.status == "moving":
                    decision = Review("move", "finishing a move that was interrupted")
                else:
                    decision = reschedule.review(
                        state, _own_booking(row), meeting, conflicts(snap, rel, meeting), snap.now
                    )
                if decision.action != "keep" and not unreadable:
                    out.reviews.append(_Review(state, row, meeting, decision))
                continue
            need = cadence.booking_need(state, snap.now)
            if need is None:
                if state.skip_reason:
                    out.notes.append(_note(rel, state.name, state.skip_reason, "skip", "skipped"))
                continue
            resumes = snap.paused.get(rel.employee.email)
            if unreadable or (resumes is not None and resumes > snap.now):
                text = (
                    "calendar could not be read"
                    if unreadable
                    else f"paused for a leave until {resumes:%Y-%m-%d}"
                )
                out.notes.append(_note(rel, state.name, text, "book", "deferred"))
                continue
            out.needs.append(need)
    # a series another due series keeps away from (skip_near) goes first: the deep dive,
    # then the check-in only if it is still wanted beside it
    near = {(n.state.relationship.id, n.state.series.skip_near) for n in out.needs}
    out.needs.sort(
        key=lambda n: (
            n.state.due,
            n.state.relationship.id,
            (n.state.relationship.id, n.state.name) not in near,
            n.state.name,
        )
    )
    return out


def busy_wanted(plan_units: Sequence[Unit], snap: Snapshot) -> tuple[list[Person], Interval] | None:
    """Whose free/busy the plan needs, and over which span; None when nothing is searched."""
    ranges: list[tuple[datetime, datetime]] = []
    people: dict[str, Person] = {}
    for unit in plan_units:
        found = _decide(unit, snap)
        for r in found.reviews:
            if r.decision.action in ("move", "rebook", "ask"):
                ranges.append(cadence.search_range(r.state, snap.now))
            for p in (r.state.relationship.employee, r.state.relationship.partner):
                people[p.email] = p
        for n in found.needs:
            ranges.append((n.earliest, n.latest))
            for p in (n.state.relationship.employee, n.state.relationship.partner):
                people[p.email] = p
    if not ranges:
        return None
    span = Interval(
        min(a for a, _ in ranges) - timedelta(days=1),
        max(b for _, b in ranges) + timedelta(days=2),
    )
    return list(people.values()), span


def conflicts(snap: Snapshot, rel: Relationship, meeting: Meeting | None) -> list[str]:
    """What now stands in the way of a scheduled meeting: busy time or a day off."""
    if meeting is None or meeting.status is not Status.SCHEDULED:
        return []
    own_uid = meeting.event.uid if meeting.event else None
    found = []
    during = Interval(meeting.start, meeting.end)
    for event in snap.during.get(meeting.key or meeting.id, ()):
        if event.key == meeting.key or (own_uid and event.uid == own_uid):
            continue
        if event.blocks_time and event.interval.overlaps(during):
            who = snap.people.get(event.owner)
            name = who.first_name if who else event.owner
            what = (
                "out of office"
                if event.kind == "outOfOffice"
                else ("all day" if event.all_day else "busy")
            )
            found.append(f"{name} {what} ({event.title[:60]!r})")
    for person in (rel.employee, rel.partner):
        off = slots.day_off(person, meeting.start.astimezone(person.zone).date())
        if off:
            found.append(f"{person.first_name}: {off}")
    return sorted(set(found))


class Planner:
    """Plans unit after unit over one picture of busy time; holds no I/O."""

    def __init__(self, snap: Snapshot, busy: Mapping[str, Sequence[Interval]]) -> None:
        self.snap = snap
        self.now = snap.now
        self.busy: dict[str, list[Interval]] = {k: list(v) for k, v in busy.items()}
        for row in snap.bookings.values():
            if row.status == "booked" and row.start and row.end:
                for email in row.relationship.split("/"):
                    self.busy.setdefault(email, []).append(Interval(row.start, row.end))
        self.load: dict[str, Counter[Any]] = {}
        #: (phase, wave, order) per action, so that all units' actions run phase by phase
        self.order: list[tuple[tuple[int, int, int], Action]] = []

    # --- the plan of one unit --------------------------------------------------------------

    def unit(self, unit: Unit) -> None:
        found = _decide(unit, self.snap)
        for rel in unit.relationships:
            self.load.pop(rel.partner.email, None)
        for rel in unit.relationships:
            for m in self.snap.meetings.get(rel.id, []):
                if m.active and m.start >= self.now - LOAD_WINDOW:
                    self._count(rel, m.start, +1)
        for note in found.notes:
            self._add(0, 0, note)
        for r in found.reviews:
            self._review(r)
        needs, wave = found.needs, 0
        # in waves of one need per relationship: a relationship's second series waits
        # for its first (skip_near looks at it), while other relationships' go together
        while needs:
            later: list[cadence.BookingNeed] = []
            seen: set[str] = set()
            for need in needs:
                rid = need.state.relationship.id
                if rid in seen:
                    later.append(need)
                    continue
                seen.add(rid)
                self._need(need, wave)
            needs, wave = later, wave + 1
        if self.snap.mail is not None:
            for rel in unit.relationships:
                for send in mailplan.due(
                    self.snap.mail,
                    rel,
                    self.snap.meetings.get(rel.id, []),
                    self.snap.states.get(rel.id, []),
                    self.snap.own,
                ):
                    self._add(2, 0, send)

    def actions(self) -> list[Action]:
        """Every unit's actions, phase by phase: reviews, booking waves, then mail."""
        return [a for _, a in sorted(self.order, key=lambda item: item[0])]

    def _picked(
        self, key: str, moves: int, *busy: Sequence[Interval]
    ) -> tuple[Interval, str] | None:
        """The time the employee picked for this ask, while it is still ahead and free."""
        found = self.snap.picks.get(key)
        if found is None or found[0] != moves:
            return None
        slot = found[1]
        if slot.start <= self.now or any(
            b.start < slot.end and slot.start < b.end for spans in busy for b in spans
        ):
            return None
        return slot, "the time the employee picked"

    def _add(self, phase: int, wave: int, action: Action) -> None:
        self.order.append(((phase, wave, len(self.order)), action))

    # --- reviews of the agent's own bookings -----------------------------------------------

    def _review(self, r: _Review) -> None:
        state, row, meeting, decision = r.state, r.row, r.meeting, r.decision
        rel, name = state.relationship, state.name
        if decision.action == "accept":
            assert meeting is not None
            self._add(
                0,
                0,
                Accept(
                    state.key,
                    rel.id,
                    name,
                    decision.reason,
                    slot=Interval(meeting.start, meeting.end),
                    moves=max(row.moves, rel.program.max_moves),
                ),
            )
            return
        if decision.action == "hold":
            text = f"{name}: {decision.reason}"
            held = _note(rel, name, decision.reason, "move", "held-back", audit="hold")
            self._add(0, 0, dataclasses.replace(held, message=text))
            return
        earliest, latest = cadence.search_range(state, self.now)
        # the meeting's own time stays busy: it was declined, cancelled or lost
        mine = [Interval(meeting.start, meeting.end)] if meeting else []
        busy_e = [*self.busy.get(rel.employee.email, []), *mine]
        busy_p = [*self.busy.get(rel.partner.email, []), *mine]
        prefer = cadence.preferred_time(state)
        if meeting is not None and meeting.active:
            self._count(rel, meeting.start, -1)
        request = self._request(state, earliest, latest, prefer)
        picked = (
            self._picked(state.key, row.moves, busy_e, busy_p) if decision.action == "ask" else None
        )
        if picked is not None:
            decision = Review("move" if meeting else "rebook", f"{decision.reason}; {picked[1]}")
        elif decision.action == "ask":
            proposals = slots.find_slots(request, busy_e, busy_p, 3)
            if self.snap.mail is not None:
                mail = mailplan.ask(
                    self.snap.mail, rel, state, row.moves, decision.reason, proposals
                )
                if mail is not None:
                    self._add(0, 0, mail)
            return
        if picked is not None:
            slot, why = picked
        elif row.status == "moving" and row.start and row.end:
            slot = Interval(row.start, row.end)
            why = "the slot chosen before the interruption"
        else:
            result = slots.find_slot(request, busy_e, busy_p)
            if result.slot is None:
                text = f"{name}: {decision.reason}; no new slot: {result.reason}"
                self._add(0, 0, _note(rel, name, text, "move", "no-slot", audit="not-moved"))
                return
            slot, why = result.slot, result.reason
        if decision.action == "rebook":
            need = cadence.BookingNeed(state, earliest, latest, prefer, decision.reason)
            self._book(need, -1, slot=(slot, why), moves=row.moves + 1)
            return
        assert meeting is not None and meeting.event is not None
        data = {
            "from": to_store(meeting.start),
            "to": to_store(slot.start),
            "why": decision.reason,
            "slot_reason": why,
        }
        organizer_copy = meeting.event
        self._add(
            0,
            0,
            Move(
                state.key,
                rel.id,
                name,
                f"{decision.reason}; moved to {why}",
                organizer=rel.organizer,
                event=organizer_copy,
                slot=slot,
                moves=row.moves + (0 if row.status == "moving" else 1),
                data=data,
            ),
        )
        self._count(rel, slot.start, +1)
        self._take(rel, slot)
        moved = dataclasses.replace(
            organizer_copy,
            start=slot.start,
            end=slot.end,
            sequence=organizer_copy.sequence + 1,
            # a new time asks everyone again, as RFC 5546 organizers do
            attendees=tuple(
                Attendee(
                    a.email,
                    PartStat.ACCEPTED if a.email == rel.organizer.email else PartStat.NEEDS_ACTION,
                )
                for a in organizer_copy.attendees
            ),
        )
        self._reassess(rel, moved)

    # --- bookings ----------------------------------------------------------------------------

    def _need(self, need: cadence.BookingNeed, wave: int) -> None:
        rel, series = need.state.relationship, need.state.series
        # an earlier booking in this plan may have changed the picture (skip_near)
        fresh = next(s for s in self.snap.states[rel.id] if s.name == series.name)
        if fresh is not need.state:
            renewed = cadence.booking_need(fresh, self.now)
            if renewed is None:
                text = fresh.skip_reason or f"{series.name}: no longer needs a booking"
                skip = _note(rel, series.name, text, "skip", "skipped", audit="skip")
                self._add(1, wave, dataclasses.replace(skip, once=False))
                return
            need = renewed
        self._book(need, wave)

    def _book(
        self,
        need: cadence.BookingNeed,
        wave: int,
        slot: tuple[Interval, str] | None = None,
        moves: int = 0,
    ) -> None:
        """Choose the slot of one need; the slot is busy for every later choice."""
        state, rel, series = need.state, need.state.relationship, need.state.series
        phase = 0 if wave < 0 else 1
        if {rel.employee.email, rel.partner.email} & (self.snap.unreadable | self.snap.no_busy):
            text = "free/busy unavailable"
            self._add(phase, wave, _note(rel, series.name, text, "book", "deferred"))
            return
        if slot is None:
            request = self._request(state, need.earliest, need.latest, need.prefer)
            result = slots.find_slot(
                request,
                self.busy.get(rel.employee.email, []),
                self.busy.get(rel.partner.email, []),
            )
            if result.slot is None:
                text = f"{series.name} not booked: {result.reason}"
                self._add(
                    phase,
                    wave,
                    _note(rel, series.name, text, "book", "no-slot", audit="not-booked"),
                )
                return
            chosen, slot_reason = result.slot, result.reason
        else:
            chosen, slot_reason = slot
        mail = self.snap.mail  # the catalogues and the global language
        title = messages.event_title(
            rel,
            series.name,
            state.stage,
            mail.templates if mail else None,
            mail.language if mail else locales.SOURCE,
        )
        draft = actions.draft(
            rel,
            series.name,
            state.stage,
            state.key,
            title,
            chosen,
            description=f"{need.reason}\nBooked by Cadence ({slot_reason}).",
            conference=rel.program.booking.conference,
            relationship=rel.id,
        )
        data = {
            "key": draft.key,
            "start": to_store(chosen.start),
            "end": to_store(chosen.end),
            "stage": state.stage,
            "employee_local": f"{chosen.start.astimezone(rel.employee.zone):%a %Y-%m-%d %H:%M} {rel.employee.timezone}",
            "partner_local": f"{chosen.start.astimezone(rel.partner.zone):%a %Y-%m-%d %H:%M} {rel.partner.timezone}",
            "why": need.reason,
            "slot_reason": slot_reason,
            "title": title,
        }
        self._add(
            phase,
            wave,
            Book(
                draft.key,
                rel.id,
                series.name,
                need.reason,
                draft=draft,
                due=state.due,
                moves=moves,
                wave=wave,
                data=data,
            ),
        )
        self._count(rel, chosen.start, +1)
        self._take(rel, chosen)
        self.snap.own[draft.key] = Own(rel.id, series.name, state.stage)
        if self.snap.mail is not None:
            self.snap.mail.reasons[draft.key] = need.reason
        made = Event(
            owner=rel.organizer.email,
            id=draft.key,
            title=title,
            start=chosen.start,
            end=chosen.end,
            uid=draft.key,
            organizer=rel.organizer.email,
            attendees=(
                Attendee(rel.organizer.email, PartStat.ACCEPTED),
                Attendee(rel.attendee.email, PartStat.NEEDS_ACTION),
            ),
            key=draft.key,
        )
        self._reassess(rel, made)

    # --- the picture the plan keeps up to date ------------------------------------------------

    def _reassess(self, rel: Relationship, made: Event) -> None:
        """Assess ``rel`` again as if the planned booking or move had happened: ``made``
        stands for the organizer's copy; the others' stale copies are left out until the
        next sync brings them back, as the store does when the agent writes an event."""
        events = [e for e in self.snap.candidates.get(rel.id, ()) if e.key != made.key]
        events.append(made)
        candidates = dict(self.snap.candidates)
        candidates[rel.id] = events
        self.snap.candidates = candidates
        found = classify.meetings(rel, events, self.snap.own, self.now)
        self.snap.meetings[rel.id] = found
        self.snap.states[rel.id] = cadence.assess(rel, found, self.now)

    def _take(self, rel: Relationship, slot: Interval) -> None:
        for email in (rel.employee.email, rel.partner.email):
            self.busy.setdefault(email, []).append(slot)

    def _count(self, rel: Relationship, start: datetime, step: int) -> None:
        day = start.astimezone(rel.partner.zone).date()
        counter = self.load.setdefault(rel.partner.email, Counter())
        counter[day] += step
        counter[day.isocalendar()[:2]] += step

    def _request(
        self,
        state: cadence.SeriesState,
        earliest: datetime,
        latest: datetime,
        prefer: tuple[int, int, int] | None,
    ) -> slots.SlotRequest:
        rel, booking = state.relationship, state.relationship.program.booking
        counter = self.load.get(rel.partner.email, Counter())
        return slots.SlotRequest(
            employee=rel.employee,
            partner=rel.partner,
            duration=state.series.duration,
            earliest=earliest,
            latest=latest,
            window=booking.window,
            buffer=booking.buffer,
            granularity=booking.granularity,
            prefer=prefer,
            full_days=frozenset(
                k for k, n in counter.items() if isinstance(k, date) and n >= booking.max_per_day
            ),
            full_weeks=frozenset(
                k for k, n in counter.items() if isinstance(k, tuple) and n >= booking.max_per_week
            ),
        )


def _note(
    rel: Relationship,
    series: str,
    text: str,
    record: str,
    outcome: str,
    audit: str | None = None,
) -> Note:
    return Note(
        f"{rel.id}:{series}", rel.id, series, text, kind=record, outcome=outcome, audit=audit
    )


def _own_booking(row: StoredBooking) -> OwnBooking:
    assert row.start is not None and row.end is not None
    return OwnBooking(row.key, row.start, row.end, row.moves)


def plan(
    snap: Snapshot, busy: Mapping[str, Sequence[Interval]], plan_units: Iterable[Unit]
) -> list[Action]:
    """Plan every unit in turn over one picture of busy time; return the actions in the
    order the executor takes them."""
    planner = Planner(snap, busy)
    for unit in plan_units:
        planner.unit(unit)
    return planner.actions()
