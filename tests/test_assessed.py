"""One way to see relationships from the store, shared by the tick and the views."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from agent.rules.classify import Own
from agent.settings import config
from agent.store.assessed import (
    HISTORY,
    assess_from_store,
    assess_relationship,
    own_map,
)
from agent.store.sqlite import Store
from tests.conftest import NOW
from tests.test_scheduling import ANA_BEN, booking, tick


def test_the_agents_booking_is_its_own_meeting_and_the_series_is_scheduled(
    settings: config.Settings,
) -> None:
    tick(settings, NOW)
    booked = booking(settings, ANA_BEN)
    store = Store(settings.store)
    try:
        assessed = assess_from_store(settings, store, NOW)
        assert list(assessed) == [r.id for r in settings.relationships]
        ana_ben = assessed[ANA_BEN]
        mine = [m for m in ana_ben.meetings if m.key == booked.key]
        assert len(mine) == 1 and mine[0].start == booked.start
        deep = next(s for s in ana_ben.states if s.name == "deep_dive")
        assert deep.next_scheduled == mine[0]

        # the pure core gives the same from the same events and bookings
        own = own_map(store.bookings())
        assert own[booked.key] == Own(ANA_BEN, "deep_dive", booked.stage)
        rel = ana_ben.relationship
        events = store.events([rel.employee.email, rel.partner.email], NOW - HISTORY)
        assert assess_relationship(rel, events, own, NOW) == ana_ben

        # the bookings passed in decide whose the agent's event is
        elsewhere = dataclasses.replace(booked, relationship="eve@acme.example/ben@acme.example")
        alone = assess_from_store(settings, store, NOW, [rel], bookings=[elsewhere])
        assert list(alone) == [ANA_BEN]
        assert not [m for m in alone[ANA_BEN].meetings if m.key == booked.key]

        # events count from ``since``: a start after the booked meeting leaves none
        assert booked.end is not None
        late = assess_from_store(settings, store, NOW, [rel], since=booked.end + timedelta(days=1))
        assert not [m for m in late[ANA_BEN].meetings if m.start <= booked.start]
    finally:
        store.close()
