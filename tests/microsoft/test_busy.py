"""busy(): getSchedule in groups of 20, periods under 62 days, several calls in one $batch."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from agent.connectors.microsoft import MicrosoftCalendar
from agent.core.errors import PermanentError
from agent.core.model import Interval, Person
from agent.core.retry import RetryPolicy
from tests.microsoft import fixtures
from tests.microsoft.conftest import NOW
from tests.microsoft.fixtures import graph_event
from tests.microsoft.server import GraphServer


def at(days: int, hour: int) -> Interval:
    start = (NOW + timedelta(days=days)).replace(hour=hour)
    return Interval(start, start + timedelta(hours=1))


def test_busy_matches_events_and_ignores_free_time(
    server: GraphServer, cal: MicrosoftCalendar, staff: list[Person]
) -> None:
    ana, ben, chloe = staff
    busy, tentative, oof, free = at(1, 9), at(1, 11), at(2, 9), at(2, 13)
    server.add_event(ana.email, graph_event("busy", busy.start, busy.end, [ben]))
    server.add_event(
        ana.email, graph_event("maybe", tentative.start, tentative.end, show_as="tentative")
    )
    server.add_event(ben.email, graph_event("away", oof.start, oof.end, show_as="oof"))
    server.add_event(chloe.email, graph_event("focus", free.start, free.end, transparent=True))
    server.reset_counts()

    result = cal.busy(staff, Interval(NOW, NOW + timedelta(days=7)))

    assert result == {ana.email: [busy, tentative], ben.email: [busy, oof], chloe.email: []}
    assert server.counts["getSchedule"] == 1 and server.counts["batch"] == 0


def test_many_people_and_a_long_window_go_in_one_batch(ca: Path, tmp_path: Path) -> None:
    crowd = [f"p{i:02d}@contoso.example" for i in range(45)]
    with GraphServer(crowd) as server:
        g = fixtures.graph(server, server.write_ca(tmp_path / "ca2.pem"))
        people = [Person(e, e, "UTC", fixtures.HOURS) for e in crowd]
        cal = MicrosoftCalendar(g, people)
        meeting = at(70, 10)
        server.add_event(crowd[44], graph_event("late", meeting.start, meeting.end))
        server.reset_counts()
        try:
            result = cal.busy(people, Interval(NOW, NOW + timedelta(days=100)))
        finally:
            g.close()

    assert result[crowd[44]] == [meeting] and len(result) == 45
    # 3 groups of at most 20 x 2 periods under 62 days = 6 getSchedule calls in 1 round trip
    assert server.counts["batch"] == 1 and server.counts["getSchedule"] == 6
    for route, target in server.log:
        assert route in ("batch", "getSchedule", "token", "openid"), target


def test_an_inner_429_is_retried_alone_after_its_retry_after(
    server: GraphServer, ca: Path, staff: list[Person]
) -> None:
    slept: list[float] = []
    g = fixtures.graph(server, ca, retry=RetryPolicy(attempts=3, sleep=slept.append))
    cal = MicrosoftCalendar(g, staff)
    meeting = at(70, 10)
    server.add_event(staff[0].email, graph_event("late", meeting.start, meeting.end))
    server.throttle("getSchedule", times=1, retry_after=7)
    server.reset_counts()
    try:
        result = cal.busy(staff, Interval(NOW, NOW + timedelta(days=100)))
    finally:
        g.close()

    assert result[staff[0].email] == [meeting]
    assert slept == [7.0]
    assert server.counts["batch"] == 1 and server.counts["getSchedule"] == 3  # 2 + the retry


def test_inner_requests_to_one_mailbox_wait_for_the_longest_retry_after_before_any_retry(
    server: GraphServer, ca: Path, staff: list[Person]
) -> None:
    waits: list[tuple[float, int]] = []  # each pause and the getSchedule calls before it
    g = fixtures.graph(
        server,
        ca,
        retry=RetryPolicy(
            attempts=3, sleep=lambda s: waits.append((s, server.counts["getSchedule"]))
        ),
    )
    cal = MicrosoftCalendar(g, staff)
    # 100 days: two getSchedule calls asked from the same mailbox, in one $batch
    server.throttle("getSchedule", times=1, retry_after=0, status=503)
    server.throttle("getSchedule", times=1, retry_after=7)
    server.reset_counts()
    try:
        cal.busy(staff, Interval(NOW, NOW + timedelta(days=100)))
    finally:
        g.close()

    paused = [(s, calls) for s, calls in waits if s > 0]
    assert paused == [(7.0, 2)]  # 7 s before either request is asked again
    assert server.counts["getSchedule"] == 4


def test_server_refuses_what_graph_refuses(cal: MicrosoftCalendar, staff: list[Person]) -> None:
    body = {
        "schedules": [f"x{i}@contoso.example" for i in range(21)],
        "startTime": {"dateTime": "2026-11-23T00:00:00", "timeZone": "UTC"},
        "endTime": {"dateTime": "2026-11-24T00:00:00", "timeZone": "UTC"},
    }
    path = f"/users/{staff[0].email}/calendar/getSchedule"
    with pytest.raises(PermanentError, match="ErrorInvalidParameter"):
        cal.graph.send("POST", path, json_body=body)
    body.update(
        schedules=[staff[0].email], endTime={"dateTime": "2027-01-24T00:00:00", "timeZone": "UTC"}
    )
    with pytest.raises(PermanentError, match="ErrorTimeIntervalTooBig"):
        cal.graph.send("POST", path, json_body=body)
    many = [{"method": "GET", "url": f"/users/{staff[0].email}/mailboxSettings"}] * 21
    with pytest.raises(PermanentError, match="must not exceed 20"):
        cal.graph.send(
            "POST",
            "/$batch",
            json_body={"requests": [dict(r, id=str(i)) for i, r in enumerate(many)]},
        )


def test_mailbox_settings_give_iana_zone_and_working_hours(
    server: GraphServer, cal: MicrosoftCalendar, staff: list[Person]
) -> None:
    server.mailboxes[staff[1].email].settings = {
        "timeZone": "Eastern Standard Time",
        "workingHours": {
            "daysOfWeek": ["monday", "tuesday", "thursday"],
            "startTime": "08:30:00.0000000",
            "endTime": "16:00:00.0000000",
            "timeZone": {"name": "Eastern Standard Time"},
        },
    }
    zone, hours = cal.mailbox_settings(staff[1])
    assert zone == "America/New_York"
    assert sorted(hours.days) == [0, 1, 3]
    assert str(hours.on(3)[0]) == "08:30-16:00"


def test_mailbox_settings_in_utc(
    server: GraphServer, cal: MicrosoftCalendar, staff: list[Person]
) -> None:
    settings = server.mailboxes[staff[2].email].settings
    settings["workingHours"]["timeZone"] = {"name": "tzone://Microsoft/Utc"}
    zone, hours = cal.mailbox_settings(staff[2])
    assert zone == "UTC" and sorted(hours.days) == [0, 1, 2, 3, 4]


def test_a_schedule_error_fails_that_mailbox_alone(
    server: GraphServer, cal: MicrosoftCalendar, staff: list[Person]
) -> None:
    ana = staff[0]
    meeting = at(1, 9)
    server.add_event(ana.email, graph_event("busy", meeting.start, meeting.end))
    gone = Person("gone@contoso.example", "Gone", "UTC", fixtures.HOURS)

    result = cal.busy([*staff, gone], Interval(NOW, NOW + timedelta(days=7)))

    assert gone.email not in result  # unknown time is not free time
    assert "ErrorMailboxNotFound" in result.failed[gone.email]
    assert set(result) == {p.email for p in staff} and result[ana.email] == [meeting]
