"""changes(): full sync, incremental sync with syncToken, 410 resync, mapping, skipping."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from agent.connectors import google
from agent.core.model import Interval, PartStat
from tests.google.harness import Workspace

T = datetime(2026, 12, 1, 13, tzinfo=UTC)
WINDOW = Interval(T - timedelta(days=400), T + timedelta(days=14))


def test_full_sync_maps_every_kind_of_event(ws: Workspace) -> None:
    cal, _ = ws.connect()
    ana, ben = ws.person("ana"), ws.person("ben")
    srv = ws.server
    plain = srv.add_event(ana.email, "Lunch", T, T + timedelta(hours=1), location="Cafe")
    srv.add_event(ana.email, "Holiday", date(2026, 12, 3), date(2026, 12, 5))
    srv.add_event(
        ana.email, "Away", T + timedelta(days=1), T + timedelta(days=2), eventType="outOfOffice"
    )
    srv.add_event(
        ana.email,
        "Free",
        T + timedelta(hours=3),
        T + timedelta(hours=4),
        transparency="transparent",
    )
    srv.add_event(
        ana.email, "Office", date(2026, 12, 2), date(2026, 12, 3), eventType="workingLocation"
    )
    invited = srv.add_event(
        ben.email,
        "Ben's review",
        T + timedelta(hours=5),
        T + timedelta(hours=6),
        attendees=[ana.email],
    )
    srv.calendar.respond(ana.email, invited, "declined")
    srv.add_event(ana.email, "Old", T - timedelta(days=500), T - timedelta(days=499))

    changes = cal.changes(ana, None, WINDOW)
    cal.close()

    assert changes.full and not changes.removed and not changes.skipped
    by_title = {e.title: e for e in changes.events}
    assert set(by_title) == {"Lunch", "Holiday", "Away", "Free", "Office", "Ben's review"}
    lunch = by_title["Lunch"]
    assert (lunch.id, lunch.start, lunch.end, lunch.location) == (
        plain,
        T,
        T + timedelta(hours=1),
        "Cafe",
    )
    assert lunch.owner == ana.email and lunch.organizer == ana.email and lunch.key is None
    holiday = by_title["Holiday"]
    assert holiday.all_day
    # all-day events span the owner's local days (America/Sao_Paulo is UTC-3)
    assert holiday.start == datetime(2026, 12, 3, 3, tzinfo=UTC)
    assert holiday.end == datetime(2026, 12, 5, 3, tzinfo=UTC)
    assert by_title["Away"].kind == "outOfOffice" and by_title["Away"].blocks_time
    assert by_title["Free"].transparent and not by_title["Free"].blocks_time
    assert by_title["Office"].transparent and by_title["Office"].kind == "default"
    review = by_title["Ben's review"]
    assert review.organizer == ben.email
    assert review.partstat(ana.email) == PartStat.DECLINED and not review.blocks_time
    assert review.partstat(ben.email) == PartStat.ACCEPTED
    assert ws.server.state.counts["calendar.events.list"] == 1


def test_recurring_events_are_expanded_with_unique_ids(ws: Workspace) -> None:
    cal, _ = ws.connect()
    ana = ws.person("ana")
    start = T - timedelta(days=28)
    master = ws.server.add_event(
        ana.email,
        "Team sync",
        start,
        start + timedelta(minutes=30),
        recurrence=["RRULE:FREQ=WEEKLY;COUNT=6"],
    )
    changes = cal.changes(ana, None, WINDOW)
    ids = [e.id for e in changes.events]
    assert len(ids) == 6 == len(set(ids))
    assert all(i.startswith(master + "_") for i in ids)
    assert sorted(e.start for e in changes.events)[1] == start + timedelta(days=7)

    # one instance cancelled on the calendar shows up in the next incremental sync
    cancelled_id = sorted(ids)[2]
    original = next(e for e in changes.events if e.id == cancelled_id)
    zone = ws.server.state.calendars[ana.email].timezone
    ws.server.state.put(
        ana.email,
        {
            "id": cancelled_id,
            "recurringEventId": master,
            "status": "cancelled",
            "summary": "Team sync",
            "originalStartTime": {"dateTime": original.start.isoformat(), "timeZone": zone},
            "start": {"dateTime": original.start.isoformat(), "timeZone": zone},
            "end": {"dateTime": original.end.isoformat(), "timeZone": zone},
        },
    )
    later = cal.changes(ana, changes.cursor, WINDOW)
    assert [(e.id, e.cancelled) for e in later.events] == [(cancelled_id, True)]
    full = cal.changes(ana, None, WINDOW)
    assert len(full.events) == 5 and cancelled_id not in {e.id for e in full.events}
    cal.close()


def test_incremental_sync_is_quiet_then_reports_changes(ws: Workspace) -> None:
    cal, _ = ws.connect()
    ana = ws.person("ana")
    first = ws.server.add_event(ana.email, "Lunch", T, T + timedelta(hours=1))
    full = cal.changes(ana, None, WINDOW)
    quiet = cal.changes(ana, full.cursor, WINDOW)
    assert quiet.quiet and not quiet.full
    assert ws.server.state.counts["calendar.events.list"] == 2

    second = ws.server.add_event(
        ana.email, "Coffee", T + timedelta(days=1), T + timedelta(days=1, hours=1)
    )
    ws.server.add_event(
        ana.email, "Far away", T + timedelta(days=30), T + timedelta(days=30, hours=1)
    )
    ws.server.state.calendars[ana.email].events[first]["status"] = "cancelled"
    ws.server.state._touch(ws.server.state.calendars[ana.email], first)
    news = cal.changes(ana, quiet.cursor, WINDOW)
    assert {(e.id, e.cancelled) for e in news.events} == {(second, False), (first, True)}
    assert cal.changes(ana, news.cursor, WINDOW).quiet
    cal.close()


def test_deletion_reported_by_id_only_is_removed(ws: Workspace) -> None:
    cal, _ = ws.connect()
    ana = ws.person("ana")
    gone = ws.server.add_event(ana.email, "Lunch", T, T + timedelta(hours=1))
    full = cal.changes(ana, None, WINDOW)
    cal_state = ws.server.state.calendars[ana.email]
    cal_state.events[gone] = {"id": gone, "status": "cancelled", "kind": "calendar#event"}
    ws.server.state._touch(cal_state, gone)
    news = cal.changes(ana, full.cursor, WINDOW)
    assert news.removed == (gone,) and not news.events
    cal.close()


def test_pages_are_followed_and_the_token_comes_from_the_last(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(google.calendar, "PAGE_SIZE", 2)
    cal, _ = ws.connect()
    ana = ws.person("ana")
    for n in range(5):
        ws.server.add_event(
            ana.email, f"E{n}", T + timedelta(hours=n), T + timedelta(hours=n, minutes=30)
        )
    full = cal.changes(ana, None, WINDOW)
    assert sorted(e.title for e in full.events) == [f"E{n}" for n in range(5)]
    assert ws.server.state.counts["calendar.events.list"] == 3
    assert cal.changes(ana, full.cursor, WINDOW).quiet
    cal.close()


def test_a_malformed_event_is_skipped_not_fatal(ws: Workspace) -> None:
    cal, _ = ws.connect()
    ana = ws.person("ana")
    ws.server.add_event(ana.email, "Good", T, T + timedelta(hours=1))
    ws.server.state.put(
        ana.email,
        {
            "id": "brokenevent1",
            "summary": "Bad",
            "start": {"dateTime": "2026-12-01T25:99:00Z"},
            "end": {"dateTime": "2026-12-01T10:00:00Z"},
        },
    )
    changes = cal.changes(ana, None, Interval(T - timedelta(days=1), T + timedelta(days=1)))
    cal.close()
    assert [e.title for e in changes.events] == ["Good"]
    assert [(s.owner, s.ref) for s in changes.skipped] == [(ana.email, "brokenevent1")]
