"""Free/busy and the agent's own events on a real Radicale: create, find, move, cancel."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar
import pytest

from agent.connectors.caldav import CalDAVCalendar, make_client
from agent.connectors.caldav.replies import ReplyCollector
from agent.connectors.smtp import ImapReader
from agent.core.errors import PermanentError, TransientError
from agent.core.model import EventDraft, Interval, PartStat, Person
from agent.core.retry import RetryPolicy
from tests.caldav.servers import Radicale, client_ics, free_port

BERLIN = ZoneInfo("Europe/Berlin")
WINDOW = Interval(datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 12, 31, tzinfo=UTC))
KEY = "0123456789abcdef0123456789abcdef"


def draft(team: dict[str, Person], start: datetime, key: str = KEY) -> EventDraft:
    ben, ana = team["ben"], team["ana"]
    return EventDraft(
        key=key,
        organizer=ben,
        attendees=(ana,),
        title="Development Align: Ana & Ben",
        start=start,
        end=start + timedelta(hours=1),
        timezone="Europe/Berlin",
        description="Goals, strengths, gaps.\nBring your plan.",
        relationship="ana@example.org/ben@example.org",
        series="deep_dive",
        stage="align",
    )


def objects(radicale: Radicale, user: str) -> list[Path]:
    return sorted((radicale.folder / "collection-root" / user / "calendar").glob("*.ics"))


def test_busy_is_computed_from_events_when_the_report_is_refused(
    tmp_path: Path, team: dict[str, Person]
) -> None:
    with Radicale(tmp_path / "nofb", refuse={"free-busy-query"}) as server:
        server.make_calendar("ana")
        url = server.calendar_url("ana")
        weekly = client_ics(
            "w",
            "Weekly",
            datetime(2026, 10, 19, 9, tzinfo=BERLIN),
            datetime(2026, 10, 19, 10, tzinfo=BERLIN),
            rrule="FREQ=WEEKLY;COUNT=2",
        )
        server.put(url + "w.ics", weekly)
        server.put(
            url + "f.ics",
            client_ics(
                "f",
                "Free",
                datetime(2026, 10, 20, 9, tzinfo=UTC),
                datetime(2026, 10, 20, 10, tzinfo=UTC),
                transparent=True,
            ),
        )
        cal = CalDAVCalendar(
            make_client(server.url, "cadence", "x"),
            calendars={team["ana"].email: url},
            retry=RetryPolicy.none(),
        )
        try:
            busy = cal.busy([team["ana"]], WINDOW)[team["ana"].email]
            assert busy == [
                Interval(
                    datetime(2026, 10, 19, 7, tzinfo=UTC), datetime(2026, 10, 19, 8, tzinfo=UTC)
                ),
                Interval(
                    datetime(2026, 10, 26, 8, tzinfo=UTC), datetime(2026, 10, 26, 9, tzinfo=UTC)
                ),
            ]
            # the refusal is remembered: the next call goes straight to the events
            cal.busy([team["ana"]], WINDOW)
            assert server.count("REPORT", "free-busy-query") == 1
        finally:
            cal.close()


def test_create_writes_a_tagged_event_with_timezones(
    calendar: CalDAVCalendar, radicale: Radicale, team: dict[str, Person]
) -> None:
    start = datetime(2026, 10, 26, 9, tzinfo=BERLIN)  # the day after the DST change
    event = calendar.create(draft(team, start))

    assert event.key == KEY and event.owner == team["ben"].email
    assert event.start == datetime(2026, 10, 26, 8, tzinfo=UTC)
    assert event.organizer == team["ben"].email
    assert event.partstat(team["ana"].email) == PartStat.NEEDS_ACTION
    assert event.sequence == 0

    stored = radicale.get(radicale.calendar_url("ben") + f"{KEY}.ics")
    assert stored is not None
    cal = icalendar.Calendar.from_ical(stored)
    assert "METHOD" not in cal  # a calendar object resource never carries METHOD
    assert cal.get_missing_tzids() == set() and cal.get_used_tzids() == {"Europe/Berlin"}
    (vevent,) = cal.walk("VEVENT")
    assert str(vevent["UID"]) == f"{KEY}@cadence"
    assert str(vevent["X-CADENCE-KEY"]) == KEY
    values = vevent["ATTENDEE"]
    values = values if isinstance(values, list) else [values]
    attendees = {str(a).removeprefix("mailto:"): a.params for a in values}
    assert attendees["ana@example.org"]["SCHEDULE-AGENT"] == "CLIENT"
    assert vevent["DESCRIPTION"] == "Goals, strengths, gaps.\nBring your plan."

    # the server expands it at the right UTC time across the DST change
    busy = calendar.busy([team["ben"]], WINDOW)[team["ben"].email]
    assert busy == [event.interval]


def test_create_is_idempotent_on_the_key(
    calendar: CalDAVCalendar, radicale: Radicale, team: dict[str, Person]
) -> None:
    start = datetime(2026, 11, 10, 10, tzinfo=BERLIN)
    first = calendar.create(draft(team, start))
    # a retry after a crash, from a fresh connector: the PUT gets 412 and reads it back
    fresh = CalDAVCalendar(
        make_client(radicale.url, "cadence", "x"),
        calendars={p.email: radicale.calendar_url(u) for u, p in team.items()},
        retry=RetryPolicy.none(),
    )
    try:
        again = fresh.create(draft(team, start + timedelta(hours=2)))
    finally:
        fresh.close()
    assert again == first
    assert [p.name for p in objects(radicale, "ben")] == [f"{KEY}.ics"]
    assert calendar.find(team["ben"], KEY) == first
    assert calendar.find(team["ben"], "f" * 32) is None
    assert calendar.find(team["ana"], KEY) is None


def test_find_locates_the_key_when_a_client_renamed_the_object(
    calendar: CalDAVCalendar, radicale: Radicale, team: dict[str, Person]
) -> None:
    event = calendar.create(draft(team, datetime(2026, 11, 10, 10, tzinfo=BERLIN)))
    url = radicale.calendar_url("ben")
    data = radicale.get(url + f"{KEY}.ics")
    assert data is not None
    radicale.delete(url + f"{KEY}.ics")
    radicale.put(url + "renamed-by-client.ics", data)
    found = calendar.find(team["ben"], KEY)
    assert found is not None and found.key == KEY and found.id == f"{KEY}@cadence"
    assert found.start == event.start


def test_move_and_cancel_raise_the_sequence(
    calendar: CalDAVCalendar, radicale: Radicale, team: dict[str, Person]
) -> None:
    ben = team["ben"]
    event = calendar.create(draft(team, datetime(2026, 11, 10, 10, tzinfo=BERLIN)))
    to = Interval(datetime(2026, 11, 12, 14, tzinfo=UTC), datetime(2026, 11, 12, 15, tzinfo=UTC))

    moved = calendar.move(ben, event, to)
    assert moved.interval == to and moved.sequence == 1 and moved.key == KEY
    stored = icalendar.Calendar.from_ical(radicale.get(radicale.calendar_url("ben") + f"{KEY}.ics"))
    (vevent,) = stored.walk("VEVENT")
    # the wall time stays in the event's own zone
    assert vevent["DTSTART"].params["TZID"] == "Europe/Berlin"
    assert vevent.decoded("DTSTART") == datetime(2026, 11, 12, 15, tzinfo=BERLIN)

    calendar.cancel(ben, moved)
    cancelled = calendar.find(ben, KEY)
    assert cancelled is not None and cancelled.cancelled and cancelled.sequence == 2
    assert not cancelled.blocks_time
    assert calendar.busy([ben], WINDOW)[ben.email] == []
    # cancelling again changes nothing
    calendar.cancel(ben, cancelled)
    again = calendar.find(ben, KEY)
    assert again is not None and again.sequence == 2


def test_other_peoples_events_are_never_touched(
    calendar: CalDAVCalendar, radicale: Radicale, team: dict[str, Person]
) -> None:
    ben = team["ben"]
    url = radicale.calendar_url("ben")
    t = datetime(2026, 11, 3, 9, tzinfo=UTC)
    radicale.put(url + "theirs.ics", client_ics("theirs", "Not ours", t, t + timedelta(hours=1)))
    (theirs,) = calendar.changes(ben, None, WINDOW).events
    before = radicale.get(url + "theirs.ics")

    with pytest.raises(PermanentError):
        calendar.cancel(ben, theirs)
    with pytest.raises(PermanentError):
        calendar.move(ben, theirs, Interval(t, t + timedelta(hours=2)))
    # a forged key on someone else's event is refused too: nothing carries that tag
    from dataclasses import replace

    forged = replace(theirs, key="e" * 32)
    with pytest.raises(PermanentError):
        calendar.move(ben, forged, Interval(t, t + timedelta(hours=2)))
    assert radicale.get(url + "theirs.ics") == before
    assert radicale.count("PUT") == 1  # only the test's own PUT


def test_http_failures_become_cadence_errors(
    calendar: CalDAVCalendar, radicale: Radicale, team: dict[str, Person]
) -> None:
    ana = team["ana"]
    radicale.fail.append((503, "7"))
    with pytest.raises(TransientError) as transient:
        calendar.changes(ana, None, WINDOW)
    assert transient.value.retry_after == 7

    radicale.fail.append((429, None))
    with pytest.raises(TransientError):
        calendar.busy([ana], WINDOW)

    radicale.fail.append((500, None))
    with pytest.raises(TransientError):
        calendar.find(ana, KEY)

    radicale.fail.append((401, None))
    with pytest.raises(PermanentError, match="401"):
        calendar.changes(ana, None, WINDOW)

    missing = CalDAVCalendar(
        make_client(radicale.url, "cadence", "x"),
        calendars={ana.email: radicale.calendar_url("nobody")},
        retry=RetryPolicy.none(),
    )
    try:
        with pytest.raises(PermanentError):
            missing.changes(ana, None, WINDOW)
    finally:
        missing.close()


def test_transient_failures_are_retried_honouring_retry_after(
    radicale: Radicale, team: dict[str, Person]
) -> None:
    slept: list[float] = []
    cal = CalDAVCalendar(
        make_client(radicale.url, "cadence", "x"),
        calendars={p.email: radicale.calendar_url(u) for u, p in team.items()},
        retry=RetryPolicy(attempts=3, sleep=slept.append, rand=lambda: 0.0),
    )
    try:
        radicale.fail.extend([(503, "2"), (502, None)])
        assert cal.changes(team["ana"], None, WINDOW).full
        assert slept == [2.0, 0.5]
    finally:
        cal.close()


def test_unreachable_server_is_transient(team: dict[str, Person]) -> None:

    url = f"http://127.0.0.1:{free_port()}/"
    cal = CalDAVCalendar(
        make_client(url, "cadence", "x", timeout=2),
        calendars={team["ana"].email: url + "ana/calendar/"},
        retry=RetryPolicy.none(),
    )
    try:
        with pytest.raises(TransientError):
            cal.changes(team["ana"], None, WINDOW)
    finally:
        cal.close()


def test_an_unreachable_mailbox_never_stops_the_sync(
    calendar: CalDAVCalendar, team: dict[str, Person], caplog: pytest.LogCaptureFixture
) -> None:
    down = ImapReader(
        "127.0.0.1",
        free_port(),
        ssl_mode="plain",
        username="u",
        password="p",
        timeout=2,
        retry=RetryPolicy.none(),
    )
    calendar.replies = ReplyCollector(down, {p.email: p for p in team.values()})
    window = Interval(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 31, tzinfo=UTC))
    for person in team.values():
        assert calendar.changes(person, None, window).full
    # one attempt per interval, not one per calendar
    assert sum("replies not read" in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("user", ["ana", "chloe"])  # UTC-3 and UTC+9
def test_all_day_absence_blocks_the_owners_whole_local_day(
    calendar: CalDAVCalendar, radicale: Radicale, team: dict[str, Person], user: str
) -> None:
    from datetime import date, time

    owner = team[user]
    radicale.put(
        radicale.calendar_url(user) + "off.ics",
        client_ics("off", "Off", date(2026, 11, 5), date(2026, 11, 6)),
    )
    local_day = Interval(
        datetime.combine(date(2026, 11, 5), time(), owner.zone),
        datetime.combine(date(2026, 11, 6), time(), owner.zone),
    )
    (busy,) = calendar.busy([owner], WINDOW)[owner.email]
    assert busy.contains(local_day)
    # and the events agree: the same day in the owner's zone
    (event,) = calendar.changes(owner, None, WINDOW).events
    assert event.all_day and event.interval == local_day


def test_https_with_a_private_ca(tmp_path: Path, team: dict[str, Person]) -> None:
    from tests.caldav.servers import tls_pair

    with (
        tls_pair(tmp_path) as (context, bundle),
        Radicale(tmp_path / "tls", tls=context, verify=str(bundle)) as server,
    ):
        url = server.make_calendar("ana")
        server.put(
            url + "a.ics",
            client_ics(
                "a",
                "Over TLS",
                WINDOW.start + timedelta(days=3),
                WINDOW.start + timedelta(days=3, hours=1),
            ),
        )
        trusted = CalDAVCalendar(
            make_client(server.url, "cadence", "x", ca_bundle=str(bundle)),
            calendars={team["ana"].email: url},
            retry=RetryPolicy.none(),
        )
        untrusted = CalDAVCalendar(
            make_client(server.url, "cadence", "x"),
            calendars={team["ana"].email: url},
            retry=RetryPolicy.none(),
        )
        try:
            with pytest.raises(PermanentError, match="ca_bundle"):
                untrusted.changes(team["ana"], None, WINDOW)
            assert [e.title for e in trusted.changes(team["ana"], None, WINDOW).events] == [
                "Over TLS"
            ]
        finally:
            trusted.close()
            untrusted.close()
