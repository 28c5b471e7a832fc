"""changes(): the calendar view as Events, and the id/change-key cursor."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from agent.connectors.exchange import ExchangeCalendar
from agent.core.errors import CursorExpired
from agent.core.model import Interval, PartStat, Person
from tests.exchange.server import EwsServer

WINDOW = Interval(datetime(2026, 11, 1, tzinfo=UTC), datetime(2027, 1, 31, tzinfo=UTC))
START = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)


def test_full_sync_expands_occurrences_and_maps_fields(
    cal: ExchangeCalendar, server: EwsServer, staff: list[Person]
) -> None:
    ana, ben, _ = staff
    server.add_event(
        ana.email,
        "Standup",
        START,
        START + timedelta(minutes=15),
        rrule_text="FREQ=WEEKLY;COUNT=3",
        zone="Europe/Berlin",
    )
    server.add_event(ana.email, "Focus", START, START + timedelta(hours=2), free_busy="Free")
    server.add_event(ana.email, "Away", START, START + timedelta(hours=8), free_busy="OOF")
    holiday = datetime(2026, 12, 24, tzinfo=UTC) - timedelta(hours=1)  # Berlin midnight
    server.add_event(
        ana.email,
        "Holiday",
        holiday,
        holiday + timedelta(days=1),
        all_day=True,
        zone="Europe/Berlin",
    )
    server.add_event(ana.email, "1:1 Ana & Ben", START, START + timedelta(hours=1), [ben.email])

    changes = cal.changes(ana, None, WINDOW)

    assert changes.full and not changes.removed and not changes.skipped
    standups = sorted(e.start for e in changes.events if e.title == "Standup")
    assert standups == [START + timedelta(weeks=i) for i in range(3)]
    assert len({e.id for e in changes.events}) == len(changes.events) == 7
    by_title = {e.title: e for e in changes.events}
    assert by_title["Focus"].transparent and not by_title["Focus"].blocks_time
    assert by_title["Away"].kind == "outOfOffice"
    day = by_title["Holiday"]
    assert day.all_day and ana.local(day.start).date() == date(2026, 12, 24)
    assert ana.local(day.start).hour == 0 and day.end - day.start == timedelta(days=1)
    meeting = by_title["1:1 Ana & Ben"]
    assert meeting.organizer == ana.email and meeting.key is None
    assert meeting.partstat(ben.email) is PartStat.NEEDS_ACTION
    # one FindItem for the ids, one GetItem for all of them (batched)
    assert dict(server.counts) == {"FindItem": 1, "GetItem": 1}


def test_quiet_cursor_costs_one_request_and_changes_come_through(
    cal: ExchangeCalendar, server: EwsServer, staff: list[Person]
) -> None:
    ana, ben, _ = staff
    item = server.add_event(ana.email, "1:1", START, START + timedelta(hours=1), [ben.email])
    gone = server.add_event(ana.email, "Dentist", START, START + timedelta(hours=1))
    full = cal.changes(ana, None, WINDOW)
    server.reset_counts()

    quiet = cal.changes(ana, full.cursor, WINDOW)
    assert quiet.quiet and dict(server.counts) == {"FindItem": 1}

    server.respond(ben.email, item, "Decline")
    del server.mailboxes[ana.email].items[gone]
    later = cal.changes(ana, quiet.cursor, WINDOW)
    assert not later.full
    assert [e.partstat(ben.email) for e in later.events] == [PartStat.DECLINED]
    assert later.removed == (gone,)
    assert cal.changes(ana, later.cursor, WINDOW).quiet


def test_an_invitation_copy_carries_the_key_from_the_body(
    cal: ExchangeCalendar, server: EwsServer, staff: list[Person]
) -> None:
    ana, ben, _ = staff
    server.add_event(
        ana.email,
        "Deep dive",
        START,
        START + timedelta(hours=1),
        [ben.email],
        body="Agenda\n\n[cadence:0123456789abcdef]",
    )
    [copy] = cal.changes(ben, None, WINDOW).events
    assert copy.key == "0123456789abcdef" and copy.organizer == ana.email
    assert copy.partstat(ben.email) is PartStat.NEEDS_ACTION
    assert copy.description == "Agenda"
    # the organizer's own item has no tag: it was not made by the agent
    assert [e.key for e in cal.changes(ana, None, WINDOW).events] == [None]


def test_window_past_the_anchor_resyncs_in_full(
    cal: ExchangeCalendar, server: EwsServer, staff: list[Person]
) -> None:
    ana = staff[0]
    first = cal.changes(ana, None, WINDOW)
    moved = Interval(WINDOW.start + timedelta(days=60), WINDOW.end + timedelta(days=60))
    again = cal.changes(ana, first.cursor, moved)
    assert again.full
    assert cal.changes(ana, again.cursor, moved).quiet


@pytest.mark.parametrize("cursor", ["garbage", "ews1:not-base64!", "ews1:" + "QUFB"])
def test_a_foreign_cursor_expires(cal: ExchangeCalendar, staff: list[Person], cursor: str) -> None:
    with pytest.raises(CursorExpired):
        cal.changes(staff[0], cursor, WINDOW)


def test_an_unreadable_item_is_skipped_not_fatal(
    cal: ExchangeCalendar, server: EwsServer, staff: list[Person]
) -> None:
    ana = staff[0]
    server.add_event(ana.email, "Fine", START, START + timedelta(hours=1))
    bad = server.add_event(ana.email, "Broken", START, START + timedelta(hours=1))
    server.corrupt(bad)
    changes = cal.changes(ana, None, WINDOW)
    assert [e.title for e in changes.events] == ["Fine"]
    assert [s.ref for s in changes.skipped] == [bad]


def test_a_busy_calendar_is_read_in_pieces_and_the_cursor_remembers(
    cal: ExchangeCalendar, server: EwsServer, staff: list[Person]
) -> None:
    ana = staff[0]
    server.find_count_limit = 40
    server.add_event(
        ana.email,
        "Hourly",
        START - timedelta(days=10),
        START - timedelta(days=10, minutes=-30),
        rrule_text="FREQ=DAILY;COUNT=100",
    )
    full = cal.changes(ana, None, WINDOW)
    assert len([e for e in full.events if e.title == "Hourly"]) == 100
    assert full.full and server.counts["FindItem"] > 2
    server.reset_counts()
    quiet = cal.changes(ana, full.cursor, WINDOW)
    assert quiet.quiet and not quiet.removed
    assert 2 < server.counts["FindItem"] <= 8  # no failed attempt first: it starts split
    assert dict(server.counts).keys() == {"FindItem"}
