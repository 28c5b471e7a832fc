"""create/find/move/cancel: idempotent on the booking key, only the agent's own events."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from agent.connectors.microsoft import KEY_PROPERTY, MicrosoftCalendar
from agent.core.errors import PermanentError
from agent.core.model import EventDraft, Interval, Person, booking_key
from agent.core.retry import RetryPolicy
from tests.microsoft import fixtures
from tests.microsoft.conftest import NOW
from tests.microsoft.fixtures import graph_event
from tests.microsoft.server import GraphServer

WINDOW = Interval(NOW - timedelta(days=30), NOW + timedelta(days=14))


def draft(staff: list[Person], conference: str = "auto", days: int = 3) -> EventDraft:
    ana, ben = staff[0], staff[1]
    start = (NOW + timedelta(days=days)).replace(hour=9)
    return EventDraft(
        key=booking_key(
            f"{ana.email}/{ben.email}", "deep_dive", (NOW + timedelta(days=days)).date()
        ),
        organizer=ana,
        attendees=(ana, ben),
        title="Development Align: Ana & Ben",
        start=start,
        end=start + timedelta(hours=1),
        timezone="Europe/Berlin",
        description="Agenda follows by mail.",
        conference=conference,
    )


def test_create_tags_the_event_and_invites_the_attendee(
    server: GraphServer, cal: MicrosoftCalendar, staff: list[Person]
) -> None:
    d = draft(staff)
    event = cal.create(d)

    assert event.key == d.key and event.owner == staff[0].email
    assert event.start == d.start and event.end == d.end
    [stored] = server.events_of(staff[0].email)
    body = server.mailboxes[staff[0].email].events[stored["id"]].body
    assert body["transactionId"] == f"cadence-{d.key}"
    assert body["singleValueExtendedProperties"] == [{"id": KEY_PROPERTY, "value": d.key}]
    assert body["originalStartTimeZone"] == "W. Europe Standard Time"
    assert body["onlineMeeting"]["joinUrl"].startswith("https://")
    [copy] = server.events_of(staff[1].email)
    assert (
        copy["subject"] == d.title
        and copy["organizer"]["emailAddress"]["address"] == staff[0].email
    )


def test_create_twice_makes_one_event_and_one_post(
    server: GraphServer, cal: MicrosoftCalendar, staff: list[Person]
) -> None:
    d = draft(staff)
    first = cal.create(d)
    second = cal.create(d)

    assert second.id == first.id and second.key == d.key
    assert len(server.events_of(staff[0].email)) == 1
    assert server.counts["events.create"] == 1
    assert server.counts["events.list"] == 2  # looked up by tag before each create


@pytest.mark.parametrize("repeat", ["return", "conflict"])
def test_a_lost_response_is_retried_with_the_same_transaction_id(
    server: GraphServer, ca: Path, staff: list[Person], repeat: str
) -> None:
    server.duplicate_transaction = repeat
    slept: list[float] = []
    retry = RetryPolicy(attempts=3, sleep=slept.append, rand=lambda: 0.0)
    g = fixtures.graph(server, ca, retry=retry)
    cal = MicrosoftCalendar(g, staff)
    server.drop.add("drop-events.create")  # the server creates the event, then the line drops
    try:
        event = cal.create(draft(staff))
    finally:
        g.close()

    assert len(slept) == 1
    assert server.counts["events.create"] == 2
    assert [e["id"] for e in server.events_of(staff[0].email)] == [event.id]
    assert event.key == draft(staff).key
    # before the POST, and after a conflict
    assert server.counts["events.list"] == (2 if repeat == "conflict" else 1)


def test_find_returns_the_agent_event_and_ignores_others(
    server: GraphServer, cal: MicrosoftCalendar, staff: list[Person]
) -> None:
    d = draft(staff)
    server.add_event(staff[0].email, graph_event("Development Align: Ana & Ben", d.start, d.end))
    assert cal.find(staff[0], d.key) is None
    made = cal.create(d)
    found = cal.find(staff[0], d.key)
    assert found is not None and found.id == made.id and found.key == d.key
    assert cal.find(staff[0], "0" * 32) is None
    with pytest.raises(PermanentError):
        cal.find(staff[0], "x' or 1 eq 1")


def test_no_teams_meeting_when_the_calendar_does_not_allow_it(
    server: GraphServer, cal: MicrosoftCalendar, staff: list[Person]
) -> None:
    server.allowed_providers = []
    cal.create(draft(staff))
    cal.create(draft(staff, conference="none", days=4))
    assert all(
        "onlineMeeting" not in e or not e["onlineMeeting"] for e in server.events_of(staff[0].email)
    )
    assert server.counts["calendar"] == 1  # allowed providers are read once per organizer


def test_changes_carry_the_key_on_both_copies(
    server: GraphServer, cal: MicrosoftCalendar, staff: list[Person]
) -> None:
    d = draft(staff)
    cal.create(d)
    [mine] = cal.changes(staff[0], None, WINDOW).events
    [theirs] = cal.changes(staff[1], None, WINDOW).events
    assert mine.key == d.key  # from the organizer's transactionId
    assert theirs.key == d.key and theirs.uid == mine.uid  # from the body's reference
    assert theirs.organizer == staff[0].email


def test_move_changes_time_raises_sequence_and_updates_the_invitation(
    server: GraphServer, cal: MicrosoftCalendar, staff: list[Person]
) -> None:
    ana, ben = staff[0], staff[1]
    event = cal.create(draft(staff))
    cursor = cal.changes(ben, None, WINDOW).cursor
    to = Interval(event.start + timedelta(days=1), event.end + timedelta(days=1))

    moved = cal.move(ana, event, to)

    assert moved.id == event.id and moved.interval == to
    assert moved.sequence > event.sequence and moved.key == event.key
    assert cal.find(ana, event.key or "").sequence == 1  # type: ignore[union-attr]
    [copy] = cal.changes(ben, cursor, WINDOW).events
    assert copy.interval == to


def test_cancel_removes_own_event_and_cancels_the_invitation(
    server: GraphServer, cal: MicrosoftCalendar, staff: list[Person]
) -> None:
    ana, ben = staff[0], staff[1]
    event = cal.create(draft(staff))
    ana_cursor = cal.changes(ana, None, WINDOW).cursor
    ben_cursor = cal.changes(ben, None, WINDOW).cursor

    cal.cancel(ana, event)
    cal.cancel(ana, event)  # already gone: nothing to do

    assert cal.changes(ana, ana_cursor, WINDOW).removed == (event.id,)
    [copy] = cal.changes(ben, ben_cursor, WINDOW).events
    assert copy.cancelled and not copy.blocks_time
    assert server.counts["events.cancel"] == 2


def test_foreign_events_are_never_touched(
    server: GraphServer, cal: MicrosoftCalendar, staff: list[Person]
) -> None:
    ana = staff[0]
    server.add_event(
        ana.email, graph_event("1:1", NOW + timedelta(days=1), NOW + timedelta(days=1, hours=1))
    )
    [foreign] = cal.changes(ana, None, WINDOW).events
    server.reset_counts()

    with pytest.raises(PermanentError, match="did not create"):
        cal.cancel(ana, foreign)
    with pytest.raises(PermanentError, match="did not create"):
        cal.move(ana, foreign, Interval(NOW, NOW + timedelta(hours=1)))
    # an invitation's copy carries the reference, but only the organizer's copy is changed
    ben = staff[1]
    made = cal.create(draft(staff))
    [copy] = [e for e in cal.changes(ben, None, WINDOW).events if e.uid == made.uid]
    assert copy.key == made.key
    with pytest.raises(PermanentError, match="only its organizer"):
        cal.move(ben, copy, Interval(NOW, NOW + timedelta(hours=1)))
    with pytest.raises(PermanentError, match="only its organizer"):
        cal.cancel(ben, copy)
    # and Graph itself refuses an attendee's change of the time
    with pytest.raises(PermanentError, match="ErrorAccessDenied"):
        cal.move(ben, replace(copy, organizer=ben.email), Interval(NOW, NOW + timedelta(hours=1)))

    assert server.counts["events.delete"] == server.counts["events.cancel"] == 0
    assert "1:1" in [e["subject"] for e in server.events_of(ana.email)]


def test_times_are_sent_in_the_organizers_windows_zone_or_utc(
    server: GraphServer, cal: MicrosoftCalendar, staff: list[Person]
) -> None:
    from agent.connectors.microsoft import format_dtz

    d = draft(staff)
    assert format_dtz(d.start, "Europe/Zurich")["timeZone"] == "W. Europe Standard Time"
    assert format_dtz(d.start, "America/Sao_Paulo") == {
        "dateTime": "2026-11-26T06:00:00",
        "timeZone": "E. South America Standard Time",
    }
    assert format_dtz(d.start, "Etc/Unknown-Zone")["timeZone"] == "UTC"
    for zone in ("Europe/Zurich", "Asia/Kolkata", "America/St_Johns"):
        event = cal.create(replace(d, key=booking_key(zone, "x", NOW.date()), timezone=zone))
        assert event.start == d.start and event.end == d.end
