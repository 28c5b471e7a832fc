"""``Store.maybe_candidates`` reads a superset of a relationship's candidate events: the
candidates found in it are exactly those found in the two whole calendars."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.core.model import Attendee, Event, PartStat
from agent.rules import classify
from agent.store.kept import KeptCandidates
from agent.store.sqlite import Store
from tests.factories import person, relationship

BASE = datetime(2026, 11, 1, tzinfo=UTC)
ANA, BEN = person("ana"), person("kit")
KELVIN = "\u212ait@acme.example"  # the Kelvin sign: Python lowers it to Kit's address
REL = relationship(ANA, BEN)
#: how the people may be written on an event: other cases, a look-alike that lowers
#: to Kit's address (the Kelvin sign), strangers
NAMES = st.sampled_from(
    [
        ANA.email,
        BEN.email,
        BEN.email.upper(),
        "Kit@Acme.Example",
        KELVIN,
        "kIt@acme.example",
        "carl@acme.example",
        "kït@acme.example",
        "kit@acme.example.org",
        "xkit@acme.example",
    ]
)
TITLES = st.sampled_from(["Deep dive", "Check-in", "Lunch", "Align with Ben", "advocate"])


@st.composite
def events(draw: st.DrawFn, owner: str, n: int) -> Event:
    start = BASE + timedelta(hours=draw(st.integers(-2000, 2000)))
    uid = draw(st.sampled_from(["", "u1", "u2", f"{owner}-{n}"]))
    return Event(
        owner=owner,
        id=f"{owner}-{n}",
        uid=uid,
        key=draw(st.sampled_from([None, None, None, "k1", "k2"])),
        title=draw(TITLES),
        start=start,
        end=start + timedelta(hours=1),
        all_day=draw(st.booleans()),
        organizer=draw(st.one_of(st.none(), NAMES)),
        attendees=tuple(Attendee(a, PartStat.ACCEPTED) for a in draw(st.lists(NAMES, max_size=3))),
    )


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(data=st.data(), since_hours=st.integers(-2500, 2500))
def test_the_same_candidates_as_from_the_whole_calendars(
    data: st.DataObject, since_hours: int
) -> None:
    store = Store()
    try:
        _same_candidates(store, data, since_hours)
    finally:
        store.close()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), since_hours=st.integers(-2500, 2500))
def test_the_same_candidates_on_postgresql(
    postgres: str, data: st.DataObject, since_hours: int
) -> None:
    """PostgreSQL finds them with its own SQL (ILIKE, strpos, octet_length)."""
    store = Store(postgres)
    try:
        store.db.execute("DELETE FROM events")
        _same_candidates(store, data, since_hours)
    finally:
        store.close()


def _same_candidates(store: Store, data: st.DataObject, since_hours: int) -> None:
    for owner in (ANA.email, BEN.email):
        for n in range(data.draw(st.integers(0, 12))):
            store.put_event(data.draw(events(owner, n)))
    store.put_event(
        Event(
            ANA.email,
            "kelvin",
            "Deep dive",
            BASE,
            BASE + timedelta(hours=1),
            attendees=(Attendee(KELVIN, PartStat.ACCEPTED),),
        )
    )
    since = BASE + timedelta(hours=since_hours)
    whole = classify.candidates(REL, store.events([ANA.email, BEN.email], since))
    some = store.maybe_candidates(ANA.email, BEN.email, since)
    assert classify.candidates(REL, some) == whole
    assert len(some) <= len(store.events([ANA.email, BEN.email], since))


def test_strangers_meetings_are_not_read(store_at: Path | str) -> None:
    store = Store(store_at)
    try:
        for n in range(50):
            start = BASE + timedelta(hours=n)
            store.put_event(
                Event(
                    ANA.email,
                    f"x{n}",
                    "Deep dive",
                    start,
                    start + timedelta(hours=1),
                    attendees=(Attendee("carl@acme.example", PartStat.ACCEPTED),),
                )
            )
        store.put_event(
            Event(
                ANA.email,
                "with-kit",
                "Deep dive",
                BASE,
                BASE + timedelta(hours=1),
                attendees=(Attendee("Kit@acme.example", PartStat.ACCEPTED),),
            )
        )
        found = store.maybe_candidates(ANA.email, BEN.email, BASE - timedelta(days=1))
        assert [e.id for e in found] == ["with-kit"]
    finally:
        store.close()


@pytest.mark.slow
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_read_for_many_relationships_at_once(data: st.DataObject) -> None:
    """A partner's calendar read once for all their relationships gives each the
    candidates of its own two whole calendars."""
    people = [ANA, BEN, person("lea"), person("max")]
    rels = [relationship(p, BEN) for p in people if p is not BEN]
    rels.append(relationship(person("lea"), person("max")))
    store = Store()
    try:
        for who in people:
            for n in range(data.draw(st.integers(0, 8))):
                store.put_event(data.draw(events(who.email, n)))
        since = BASE - timedelta(days=30)
        kept = KeptCandidates(store)
        kept.prepare(rels, since)
        assert all(kept._current(rel, since) for rel in rels)  # read by prepare, not get
        for rel in rels:
            whole = store.events([rel.employee.email, rel.partner.email], since)
            assert kept.get(rel, since) == classify.candidates(rel, whole)
    finally:
        store.close()


def test_a_calendar_written_after_it_was_read_is_read_again() -> None:
    """What ``reading`` read before a sync wrote a calendar is not kept for it."""
    lea, tom = person("lea"), person("tom")
    first, second = relationship(ANA, BEN), relationship(lea, tom)
    store = Store()
    try:
        since = BASE - timedelta(days=30)
        kept = KeptCandidates(store)
        steps = kept.reading([first, second], since)
        next(steps)  # Ana's calendar read
        dive = Event(
            ANA.email,
            "new",
            "Deep dive",
            BASE,
            BASE + timedelta(hours=1),
            attendees=(Attendee(BEN.email, PartStat.ACCEPTED),),
        )
        store.put_event(dive)  # then written, as a sync would
        for _ in steps:
            pass
        assert not kept._current(first, since)
        assert kept._current(second, since)
        assert [e.id for e in kept.get(first, since)] == ["new"]
    finally:
        store.close()
