"""The behaviour every provider promises, run against each provider's local server.

Backends live in tests/connectors/backends/, one module per provider.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import tests.connectors.backends as backends_pkg
from agent.core.errors import PermanentError
from agent.core.model import EventDraft, Interval, OutgoingMail

NAMES = sorted(m.name for m in pkgutil.iter_modules(backends_pkg.__path__))
WINDOW = Interval(datetime(2026, 11, 1, tzinfo=UTC), datetime(2027, 1, 31, tzinfo=UTC))
START = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)


@pytest.fixture(params=NAMES)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    module = importlib.import_module(f"tests.connectors.backends.{request.param}")
    with module.backend(tmp_path) as b:
        yield b


def draft(b: Any, key: str = "0123456789abcdef0123456789abcdef") -> EventDraft:
    ana, ben = b.people[0], b.people[1]
    return EventDraft(
        key=key,
        organizer=ana,
        attendees=(ben,),
        title="Development Align: Ana & Ben",
        start=START,
        end=START + timedelta(hours=1),
        timezone=ana.timezone,
        series="deep_dive",
        stage="align",
        conference="none",
    )


def test_create_is_idempotent_on_the_key(backend: Any) -> None:
    first = backend.calendar.create(draft(backend))
    second = backend.calendar.create(draft(backend))
    assert first.key == second.key == draft(backend).key
    ana = backend.people[0]
    events = [e for e in backend.calendar.changes(ana, None, WINDOW).events if e.key == first.key]
    assert len(events) == 1
    assert events[0].start == START and events[0].end == START + timedelta(hours=1)
    assert {a.email for a in events[0].attendees} >= {backend.people[1].email}


def test_find_returns_the_agents_event_by_key(backend: Any) -> None:
    ana = backend.people[0]
    assert backend.calendar.find(ana, draft(backend).key) is None
    created = backend.calendar.create(draft(backend))
    found = backend.calendar.find(ana, created.key)
    assert found is not None and found.key == created.key and found.start == START


def test_changes_show_a_create_and_are_quiet_after(backend: Any) -> None:
    ana = backend.people[0]
    full = backend.calendar.changes(ana, None, WINDOW)
    assert full.full
    quiet = backend.calendar.changes(ana, full.cursor, WINDOW)
    assert not quiet.events and not quiet.removed
    backend.calendar.create(draft(backend))
    after = backend.calendar.changes(ana, quiet.cursor, WINDOW)
    assert any(e.key == draft(backend).key for e in after.events)
    settled = backend.calendar.changes(ana, after.cursor, WINDOW)
    assert not settled.events and not settled.removed


def test_busy_matches_events(backend: Any) -> None:
    ana, ben, cleo = backend.people[:3]
    backend.add_event(ben, "Lunch", START, START + timedelta(hours=1))
    backend.add_event(
        ben, "Free time", START + timedelta(hours=2), START + timedelta(hours=3), transparent=True
    )
    backend.add_event(
        ben,
        "Standup",
        START - timedelta(days=2),
        START - timedelta(days=2) + timedelta(minutes=15),
        rrule="FREQ=DAILY;COUNT=5",
    )
    busy = backend.calendar.busy(
        [ana, ben, cleo], Interval(START - timedelta(days=3), START + timedelta(days=3))
    )
    assert set(busy) >= {ana.email, ben.email, cleo.email}
    ben_busy = busy[ben.email]
    assert any(iv.start <= START and iv.end >= START + timedelta(hours=1) for iv in ben_busy)
    assert not any(
        iv.overlaps(Interval(START + timedelta(hours=2), START + timedelta(hours=3)))
        for iv in ben_busy
    )
    standups = [
        iv for iv in ben_busy if iv.duration <= timedelta(minutes=15) + timedelta(minutes=1)
    ]
    assert len(standups) >= 4
    assert busy[cleo.email] == []


def test_move_and_cancel_touch_only_own_events(backend: Any) -> None:
    ana = backend.people[0]
    created = backend.calendar.create(draft(backend))
    later = Interval(START + timedelta(days=1), START + timedelta(days=1, hours=1))
    moved = backend.calendar.move(ana, created, later)
    assert moved.start == later.start and moved.key == created.key
    assert moved.sequence > created.sequence
    backend.add_event(ana, "Someone else's", START, START + timedelta(hours=1))
    theirs = next(
        e for e in backend.calendar.changes(ana, None, WINDOW).events if e.title == "Someone else's"
    )
    with pytest.raises(PermanentError):
        backend.calendar.cancel(ana, theirs)
    with pytest.raises(PermanentError):
        backend.calendar.move(ana, theirs, later)
    backend.calendar.cancel(ana, moved)
    remaining = [
        e for e in backend.calendar.changes(ana, None, WINDOW).events if e.key == created.key
    ]
    assert all(e.cancelled for e in remaining)
    assert any(
        e.title == "Someone else's" and not e.cancelled
        for e in backend.calendar.changes(ana, None, WINDOW).events
    )


def test_mail_is_delivered_once_with_the_right_headers(backend: Any) -> None:
    ana, ben = backend.people[0], backend.people[1]
    mail = OutgoingMail(
        key="contract:agenda",
        sender=ana.email,
        sender_name=ana.name,
        to=(ana.email, ben.email),
        subject="Agenda: Development Align with Ben",
        text="plain text",
        html="<p>html</p>",
        message_id="<contract.agenda@cadence>",
        in_reply_to="<earlier@cadence>",
        references=("<earlier@cadence>",),
    )
    backend.mailer.send(mail)
    delivered = [m for m in backend.delivered() if m["Message-ID"] == "<contract.agenda@cadence>"]
    assert len(delivered) == 1
    msg = delivered[0]
    assert msg["Subject"] == "Agenda: Development Align with Ben"
    assert ana.email in msg["From"] and ben.email in msg["To"]
    assert msg["In-Reply-To"] == "<earlier@cadence>"
    assert msg.get_body(preferencelist=("plain",)) is not None
    assert msg.get_body(preferencelist=("html",)) is not None
