"""The planner alone: snapshots in, actions out, no connector and no store."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.model import Event, Interval, Relationship
from agent.core.records import StoredBooking
from agent.rules import cadence, classify, planning
from agent.rules.actions import Accept, Action, Book, Move, Note
from agent.rules.classify import Own
from tests.factories import at, meeting_event, person, relationship

NOW = at("2026-11-23T09:00:00+00:00")


def Row(
    key: str,
    relationship: str,
    series: str,
    stage: str | None,
    status: str,
    start: datetime,
    end: datetime,
    moves: int = 0,
) -> StoredBooking:
    return StoredBooking(
        key, relationship, series, status, stage, start=start, end=end, moves=moves
    )


def snapshot(
    rels: Sequence[Relationship],
    events: Sequence[Event] = (),
    bookings: Sequence[StoredBooking] = (),
    during: dict[str, list[Event]] | None = None,
    now: datetime = NOW,
) -> planning.Snapshot:
    own = {b.key: Own(b.relationship, b.series, b.stage) for b in bookings}
    snap = planning.Snapshot(
        now=now,
        meetings={},
        states={},
        candidates={},
        own=own,
        bookings={b.key: b for b in bookings},
        during=during or {},
        people={p.email: p for r in rels for p in (r.employee, r.partner)},
    )
    for rel in rels:
        mine = [e for e in events if e.owner in (rel.employee.email, rel.partner.email)]
        found = classify.meetings(rel, mine, own, now)
        snap.candidates[rel.id] = mine  # type: ignore[index]
        snap.meetings[rel.id] = found
        snap.states[rel.id] = cadence.assess(rel, found, now)
    return snap


def plan(snap: planning.Snapshot, busy: dict[str, list[Interval]] | None = None) -> list[Action]:
    relationships = {s.relationship.id: s.relationship for v in snap.states.values() for s in v}
    return planning.plan(snap, busy or {}, planning.units(relationships.values()))


def booked(actions: Sequence[object]) -> list[Book]:
    return [a for a in actions if isinstance(a, Book)]


def test_units_group_relationships_by_partner_and_follow_changes() -> None:
    ben, chloe = person("ben"), person("chloe")
    ana_ben = relationship(person("ana"), ben)
    cy_ben = relationship(person("cy"), ben)
    ana_chloe = relationship(person("ana"), chloe)
    units = planning.units([ana_ben, ana_chloe, cy_ben])
    assert [(u.partner, [r.id for r in u.relationships]) for u in units] == [
        (ben.email, [ana_ben.id, cy_ben.id]),
        (chloe.email, [ana_chloe.id]),
    ]
    assert [u.partner for u in planning.touched(units, ["cy@acme.example"])] == [ben.email]
    assert [u.partner for u in planning.touched(units, ["ana@acme.example"])] == [
        ben.email,
        chloe.email,
    ]
    assert planning.touched(units, ["zoe@acme.example"]) == []


def test_a_planned_deep_dive_keeps_the_check_in_away() -> None:
    """Both series are due; the deep dive is planned first and the check-in, which
    ``skip_near`` keeps 14 days from a deep dive, is not booked beside it."""
    rel = relationship()
    held = NOW - timedelta(days=120)
    events = [meeting_event(rel, "Development Align: Ana & Ben", held)]
    events.append(meeting_event(rel, "Development check-in: Ana & Ben", NOW - timedelta(days=40)))
    actions = plan(snapshot([rel], events))
    books = booked(actions)
    assert [b.series for b in books] == ["deep_dive"]
    assert books[0].draft.stage == "advance"
    skipped = [a for a in actions if isinstance(a, Note) and a.outcome == "skipped"]
    assert [a.series for a in skipped] == ["check_in"]


def test_one_employee_in_two_units_never_gets_two_meetings_at_once() -> None:
    """Ana's leader and her mentor are planned in turn over one picture of busy time."""
    ana = person("ana")
    with_ben = relationship(ana, person("ben"))
    with_chloe = relationship(ana, person("chloe"))
    actions = plan(snapshot([with_ben, with_chloe]))
    slots = [Interval(b.draft.start, b.draft.end) for b in booked(actions)]
    assert len(slots) == 2  # never held: a deep dive each; the check-ins keep away (skip_near)
    for i, a in enumerate(slots):
        for b in slots[i + 1 :]:
            assert not a.overlaps(b)


def test_the_partner_load_caps_a_day() -> None:
    """Ben leads five people who are all due: at most two of their meetings a day."""
    ben = person("ben")
    rels = [relationship(person(n), ben) for n in ("ana", "cy", "dee", "eli", "fay")]
    actions = plan(snapshot(rels))
    days: dict[object, int] = {}
    for b in booked(actions):
        day = b.draft.start.astimezone(ben.zone).date()
        days[day] = days.get(day, 0) + 1
    assert days and max(days.values()) <= 2


def deep_dive_key(rel: Relationship) -> str:
    """The booking key the planner gives the relationship's next deep dive."""
    states = cadence.assess(rel, [], NOW)
    return next(s.key for s in states if s.name == "deep_dive")


def test_a_meeting_moved_by_hand_is_accepted_and_uses_up_the_moves() -> None:
    rel = relationship()
    key = deep_dive_key(rel)
    booked_at = NOW + timedelta(days=5)
    moved_to = booked_at + timedelta(days=1)
    event = meeting_event(rel, "Development Align: Ana & Ben", moved_to, key=key)
    row = Row(
        key, rel.id, "deep_dive", "align", "booked", booked_at, booked_at + timedelta(hours=1)
    )
    actions = plan(snapshot([rel], [event], [row]))
    accepted = [a for a in actions if isinstance(a, Accept)]
    assert len(accepted) == 1 and accepted[0].moves == rel.program.max_moves
    assert accepted[0].slot.start == moved_to
    assert not booked(actions) or all(b.series != "deep_dive" for b in booked(actions))


def test_an_absence_over_a_booked_meeting_moves_it() -> None:
    rel = relationship()
    key = deep_dive_key(rel)
    start = NOW + timedelta(days=6)
    event = meeting_event(rel, "Development Align: Ana & Ben", start, key=key)
    away = Event(
        owner=rel.partner.email,
        id="ooo",
        title="Out of office",
        start=start - timedelta(hours=3),
        end=start + timedelta(hours=5),
        kind="outOfOffice",
    )
    row = Row(key, rel.id, "deep_dive", "align", "booked", start, start + timedelta(hours=1))
    snap = snapshot([rel], [event], [row], during={key: [away]})
    actions = plan(snap, {rel.partner.email: [away.interval]})
    moves = [a for a in actions if isinstance(a, Move)]
    assert len(moves) == 1 and "out of office" in moves[0].reason
    assert not moves[0].slot.overlaps(away.interval)
    assert moves[0].moves == 1
    # the plan's picture follows the move: the relationship's mails see the new time
    assert snap.meetings[rel.id][0].start == moves[0].slot.start


people = st.sampled_from(["ana", "cy", "dee", "eli"])
partners = st.sampled_from(["ben", "chloe"])


@settings(max_examples=40, deadline=None)
@given(
    pairs=st.lists(st.tuples(people, partners), min_size=1, max_size=6, unique=True),
    busy_hours=st.lists(st.integers(min_value=0, max_value=24 * 20), max_size=12),
)
def test_planned_bookings_never_overlap_each_other_or_busy_time(
    pairs: list[tuple[str, str]], busy_hours: list[int]
) -> None:
    rels = [relationship(person(e), person(p)) for e, p in pairs]
    everyone = {p.email for r in rels for p in (r.employee, r.partner)}
    busy = {
        email: [
            Interval(NOW + timedelta(hours=h), NOW + timedelta(hours=h + 2)) for h in busy_hours
        ]
        for email in sorted(everyone)[:2]
    }
    actions = plan(snapshot(rels), busy)
    books = booked(actions)
    for i, a in enumerate(books):
        mine = Interval(a.draft.start, a.draft.end)
        who = {a.draft.organizer.email, *(p.email for p in a.draft.attendees)}
        for email in who:
            assert not any(mine.overlaps(b) for b in busy.get(email, []))
        for b in books[i + 1 :]:
            other = {b.draft.organizer.email, *(p.email for p in b.draft.attendees)}
            if who & other:
                assert not mine.overlaps(Interval(b.draft.start, b.draft.end))
