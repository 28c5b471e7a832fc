"""Reading calendars from a real Radicale: full and incremental sync, recurrences, fallbacks."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from agent.connectors.caldav import HORIZON_SLACK, CalDAVCalendar, make_client
from agent.connectors.caldav.sync import _Cursor
from agent.core.errors import CursorExpired
from agent.core.model import Interval, PartStat, Person
from agent.core.retry import RetryPolicy
from tests.caldav.servers import Radicale, client_ics

BERLIN = ZoneInfo("Europe/Berlin")
WINDOW = Interval(datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 12, 31, tzinfo=UTC))


def at(day: int, month: int = 11, hour: int = 10, zone: ZoneInfo = BERLIN) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=zone)


def by_id(changes_events: tuple) -> dict:  # type: ignore[type-arg]
    return {e.id: e for e in changes_events}


def test_full_sync_reads_every_kind_of_event(
    calendar: CalDAVCalendar, radicale: Radicale, team: dict[str, Person]
) -> None:
    ana, ben = team["ana"], team["ben"]
    url = radicale.calendar_url("ana")
    radicale.put(
        url + "meeting.ics",
        client_ics(
            "meeting",
            "Check-in: Ana & Ben",
            at(3),
            at(3, hour=11),
            organizer=ana.email,
            attendees=[ana.email, ben.email],
        ),
    )
    radicale.put(
        url + "holiday.ics", client_ics("holiday", "Off", date(2026, 11, 5), date(2026, 11, 6))
    )
    radicale.put(
        url + "focus.ics", client_ics("focus", "Focus", at(4), at(4, hour=12), transparent=True)
    )
    radicale.put(
        url + "away.ics",
        client_ics("away", "Away", at(9), at(9, hour=17), extra=["X-MICROSOFT-CDO-BUSYSTATUS:OOF"]),
    )
    radicale.put(url + "old.ics", client_ics("old", "Long ago", at(1, 1), at(1, 1, hour=11)))

    changes = calendar.changes(ana, None, WINDOW)

    assert changes.full and not changes.removed and not changes.skipped
    events = by_id(changes.events)
    assert set(events) == {"meeting", "holiday", "focus", "away"}
    meeting = events["meeting"]
    assert meeting.owner == ana.email
    assert meeting.start == datetime(2026, 11, 3, 9, tzinfo=UTC)  # 10:00 CET
    assert meeting.organizer == ana.email
    assert meeting.partstat(ben.email) == PartStat.ACCEPTED
    assert meeting.key is None and meeting.uid == "meeting"
    holiday = events["holiday"]
    # all-day events cover the owner's local day (Ana is in São Paulo, UTC-3)
    assert holiday.all_day
    assert holiday.start == datetime(2026, 11, 5, 3, tzinfo=UTC)
    assert holiday.end == datetime(2026, 11, 6, 3, tzinfo=UTC)
    assert events["focus"].transparent and not events["focus"].blocks_time
    assert events["away"].kind == "outOfOffice"


def test_incremental_sync_reports_only_changes(
    calendar: CalDAVCalendar, radicale: Radicale, team: dict[str, Person]
) -> None:
    ana = team["ana"]
    url = radicale.calendar_url("ana")
    radicale.put(url + "a.ics", client_ics("a", "One", at(3), at(3, hour=11)))
    radicale.put(url + "b.ics", client_ics("b", "Two", at(4), at(4, hour=11)))
    first = calendar.changes(ana, None, WINDOW)
    assert set(by_id(first.events)) == {"a", "b"}

    before = len(radicale.requests)
    quiet = calendar.changes(ana, first.cursor, WINDOW)
    assert quiet.quiet and not quiet.full
    assert [r.report for r in radicale.requests[before:]] == ["sync-collection"]

    radicale.put(url + "a.ics", client_ics("a", "One, moved", at(5), at(5, hour=11)))
    radicale.put(url + "c.ics", client_ics("c", "Three", at(6), at(6, hour=11)))
    radicale.delete(url + "b.ics")
    before = len(radicale.requests)
    changed = calendar.changes(ana, quiet.cursor, WINDOW)

    assert not changed.full
    assert {e.id: e.title for e in changed.events} == {"a": "One, moved", "c": "Three"}
    assert by_id(changed.events)["a"].start == datetime(2026, 11, 5, 9, tzinfo=UTC)
    assert changed.removed == ("b",)
    # Radicale puts calendar-data in the sync reply: no multiget needed
    assert len(radicale.requests) - before == 1

    again = calendar.changes(ana, changed.cursor, WINDOW)
    assert again.quiet


def test_window_past_the_horizon_triggers_a_full_sync(
    calendar: CalDAVCalendar, radicale: Radicale, team: dict[str, Person]
) -> None:
    ana = team["ana"]
    url = radicale.calendar_url("ana")
    later = WINDOW.end + HORIZON_SLACK + timedelta(days=3)
    radicale.put(
        url + "late.ics", client_ics("late", "Far ahead", later, later + timedelta(hours=1))
    )
    first = calendar.changes(ana, None, WINDOW)
    assert "late" not in by_id(first.events)

    moved = Interval(WINDOW.start + timedelta(days=40), WINDOW.end + timedelta(days=40))
    second = calendar.changes(ana, first.cursor, moved)
    assert second.full
    assert "late" in by_id(second.events)


def test_recurring_event_is_expanded_across_the_dst_change(
    calendar: CalDAVCalendar, radicale: Radicale, team: dict[str, Person]
) -> None:
    ben = team["ben"]
    url = radicale.calendar_url("ben")
    # weekly on Mondays 09:00 Berlin time; Europe leaves summer time on 25 October 2026
    series = client_ics(
        "weekly",
        "Team sync",
        datetime(2026, 10, 12, 9, tzinfo=BERLIN),
        datetime(2026, 10, 12, 10, tzinfo=BERLIN),
        rrule="FREQ=WEEKLY;COUNT=5",
        extra=["EXDATE;TZID=Europe/Berlin:20261019T090000"],
    )
    radicale.put(url + "weekly.ics", series)

    first = calendar.changes(ben, None, WINDOW)
    starts = sorted(e.start for e in first.events)
    assert starts == [
        datetime(2026, 10, 12, 7, tzinfo=UTC),  # CEST, UTC+2
        datetime(2026, 10, 26, 8, tzinfo=UTC),  # CET, UTC+1: still 09:00 local
        datetime(2026, 11, 2, 8, tzinfo=UTC),
        datetime(2026, 11, 9, 8, tzinfo=UTC),
    ]
    assert len({e.id for e in first.events}) == 4
    assert all(e.id.startswith("weekly/") for e in first.events)
    assert all(e.end - e.start == timedelta(hours=1) for e in first.events)

    # the server's free/busy agrees because the object carries a VTIMEZONE
    busy = calendar.busy([ben], WINDOW)[ben.email]
    assert [b.start for b in busy] == starts

    # shorten the series: the instances that vanished are reported as removed
    radicale.put(url + "weekly.ics", series.replace("COUNT=5", "COUNT=3"))
    changed = calendar.changes(ben, first.cursor, WINDOW)
    assert sorted(changed.removed) == ["weekly/20261102T080000Z", "weekly/20261109T080000Z"]
    assert sorted(e.start for e in changed.events) == starts[:2]


def test_sync_without_sync_collection_uses_ctag_and_etags(
    tmp_path: Path, team: dict[str, Person]
) -> None:
    with Radicale(tmp_path / "old", refuse={"sync-collection"}, hide={"sync-token"}) as old:
        old.make_calendar("ana")
        url = old.calendar_url("ana")
        old.put(url + "a.ics", client_ics("a", "One", at(3), at(3, hour=11)))
        old.put(url + "b.ics", client_ics("b", "Two", at(4), at(4, hour=11)))
        cal = CalDAVCalendar(
            make_client(old.url, "cadence", "x"),
            calendars={team["ana"].email: url},
            retry=RetryPolicy.none(),
        )
        with _closing(cal):
            ana = team["ana"]
            first = cal.changes(ana, None, WINDOW)
            assert set(by_id(first.events)) == {"a", "b"}

            before = len(old.requests)
            quiet = cal.changes(ana, first.cursor, WINDOW)
            assert quiet.quiet
            assert [r.method for r in old.requests[before:]] == ["PROPFIND"]  # the ctag

            old.put(url + "a.ics", client_ics("a", "One, renamed", at(3), at(3, hour=11)))
            old.delete(url + "b.ics")
            changed = cal.changes(ana, quiet.cursor, WINDOW)
            assert [e.title for e in changed.events] == ["One, renamed"]
            assert changed.removed == ("b",)
            assert old.count("REPORT", "sync-collection") == 0


def test_server_that_stops_answering_sync_collection_gets_a_full_sync(
    calendar: CalDAVCalendar, radicale: Radicale, team: dict[str, Person]
) -> None:
    ana = team["ana"]
    radicale.put(
        radicale.calendar_url("ana") + "a.ics", client_ics("a", "One", at(3), at(3, hour=11))
    )
    first = calendar.changes(ana, None, WINDOW)
    radicale.refuse.add("sync-collection")
    second = calendar.changes(ana, first.cursor, WINDOW)
    assert second.full and {e.id for e in second.events} == {"a"}
    assert calendar.changes(ana, second.cursor, WINDOW).quiet


def test_refused_sync_token_raises_cursor_expired(
    calendar: CalDAVCalendar, radicale: Radicale, team: dict[str, Person]
) -> None:
    ana = team["ana"]
    first = calendar.changes(ana, None, WINDOW)
    cursor = _Cursor.decode(first.cursor)
    cursor.token = "http://radicale.org/ns/sync/" + "0" * 64
    with pytest.raises(CursorExpired):
        calendar.changes(ana, cursor.encode(), WINDOW)
    with pytest.raises(CursorExpired):
        calendar.changes(ana, "something-else", WINDOW)
    # a cursor of another calendar is refused as well
    with pytest.raises(CursorExpired):
        calendar.changes(team["ben"], first.cursor, WINDOW)


def test_malformed_object_is_skipped_not_fatal(
    calendar: CalDAVCalendar, radicale: Radicale, team: dict[str, Person]
) -> None:
    ana = team["ana"]
    url = radicale.calendar_url("ana")
    radicale.put(url + "good.ics", client_ics("good", "Fine", at(3), at(3, hour=11)))
    # a broken SEQUENCE: Radicale stores it, the expansion cannot read it
    broken = client_ics("bad", "Broken", at(4), at(4, hour=11), extra=["SEQUENCE:abc"])
    assert "SEQUENCE:abc" in broken
    radicale.put(url + "bad.ics", broken)
    changes = calendar.changes(ana, None, WINDOW)
    assert [e.id for e in changes.events] == ["good"]
    assert [(s.owner, s.ref) for s in changes.skipped] == [(ana.email, "bad")]


def test_calendar_is_discovered_from_the_principal(radicale: Radicale) -> None:
    from tests.caldav.conftest import person

    radicale.make_calendar("dana", "work")
    radicale.make_calendar("eli", "personal")
    dana, eli = person("dana@example.org"), person("eli@example.org")
    cal = CalDAVCalendar(
        make_client(radicale.url, "dana", "x"),
        usernames={dana.email: "dana", eli.email: "eli"},
        account_username="dana",
        retry=RetryPolicy.none(),
    )
    with _closing(cal):
        assert cal.calendar_url(dana) == radicale.calendar_url("dana", "work")
        assert cal.calendar_url(eli) == radicale.calendar_url("eli", "personal")
        radicale.put(
            radicale.calendar_url("eli", "personal") + "x.ics",
            client_ics("x", "Found", at(3), at(3, hour=11)),
        )
        assert [e.title for e in cal.changes(eli, None, WINDOW).events] == ["Found"]


class _closing:
    def __init__(self, cal: CalDAVCalendar) -> None:
        self.cal = cal

    def __enter__(self) -> CalDAVCalendar:
        return self.cal

    def __exit__(self, *exc: object) -> None:
        self.cal.close()


def test_sync_without_ctag_compares_etags(tmp_path: Path, team: dict[str, Person]) -> None:
    hide = {"sync-token", "getctag"}
    with Radicale(tmp_path / "bare", refuse={"sync-collection"}, hide=hide) as bare:
        bare.make_calendar("ana")
        url = bare.calendar_url("ana")
        bare.put(url + "a.ics", client_ics("a", "One", at(3), at(3, hour=11)))
        cal = CalDAVCalendar(
            make_client(bare.url, "cadence", "x"),
            calendars={team["ana"].email: url},
            retry=RetryPolicy.none(),
        )
        with _closing(cal):
            ana = team["ana"]
            first = cal.changes(ana, None, WINDOW)
            before = len(bare.requests)
            assert cal.changes(ana, first.cursor, WINDOW).quiet
            assert len(bare.requests) - before == 1  # one ETag listing, no ctag probe
            bare.put(url + "b.ics", client_ics("b", "Two", at(4), at(4, hour=11)))
            changed = cal.changes(ana, first.cursor, WINDOW)
            assert [e.id for e in changed.events] == ["b"]
