"""create/find/move/cancel and busy against the fake Calendar v3."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from agent.core.errors import PermanentError
from agent.core.model import Event, EventDraft, Interval, PartStat, booking_key
from tests.google.harness import Workspace, workspace

T = datetime(2026, 12, 1, 13, tzinfo=UTC)
KEY = booking_key("ana@acme.example/ben@acme.example", "check_in", T.date())


def draft(ws: Workspace, key: str = KEY, conference: str = "auto") -> EventDraft:
    return EventDraft(
        key=key,
        organizer=ws.person("ana"),
        attendees=(ws.person("ben"),),
        title="Development check-in: Ana & Ben",
        start=T,
        end=T + timedelta(minutes=15),
        timezone="America/Sao_Paulo",
        description="Agenda follows by mail.",
        conference=conference,
        series="check_in",
    )


def stored(ws: Workspace, owner: str, event_id: str = KEY) -> dict:
    return ws.server.state.calendars[owner].events[event_id]


def test_create_books_with_the_key_as_id_a_tag_a_meet_link_and_invitations(ws: Workspace) -> None:
    cal, _ = ws.connect()
    event = cal.create(draft(ws))
    cal.close()
    assert (event.id, event.key, event.owner, event.organizer) == (
        KEY,
        KEY,
        "ana@acme.example",
        "ana@acme.example",
    )
    assert (event.start, event.end, event.title) == (
        T,
        T + timedelta(minutes=15),
        "Development check-in: Ana & Ben",
    )
    assert event.partstat("ben@acme.example") == PartStat.NEEDS_ACTION
    organizer_copy = stored(ws, "ana@acme.example")
    assert organizer_copy["extendedProperties"]["private"]["cadenceKey"] == KEY
    assert organizer_copy["hangoutLink"].startswith("https://meet.google.com/")
    assert organizer_copy["start"]["timeZone"] == "America/Sao_Paulo"
    # Google puts the meeting on the attendee's calendar; the private tag stays with the organizer
    attendee_copy = stored(ws, "ben@acme.example")
    assert attendee_copy["extendedProperties"] == {"shared": {"cadenceKey": KEY}}
    assert ws.server.state.notifications == [
        ("REQUEST", "ana@acme.example", KEY, ("ben@acme.example",))
    ]


def test_create_without_conference_asks_for_none(ws: Workspace) -> None:
    cal, _ = ws.connect()
    cal.create(draft(ws, conference="none"))
    cal.close()
    assert "conferenceData" not in stored(ws, "ana@acme.example")


def test_create_is_idempotent_a_retry_uses_the_existing_event(ws: Workspace) -> None:
    cal, _ = ws.connect()
    first = cal.create(draft(ws))
    second = cal.create(draft(ws))
    cal.close()
    assert first == second
    events = [e for e in ws.server.state.calendars["ana@acme.example"].events.values()]
    assert len(events) == 1
    counts = ws.server.state.counts
    assert (counts["calendar.events.insert"], counts["calendar.events.get"]) == (2, 1)


def test_create_after_cancel_restores_by_patch(ws: Workspace) -> None:
    cal, _ = ws.connect()
    ana = ws.person("ana")
    first = cal.create(draft(ws))
    cal.cancel(ana, first)
    assert stored(ws, "ben@acme.example")["status"] == "cancelled"
    again = cal.create(draft(ws))
    cal.close()
    assert again.id == KEY and not again.cancelled and again.sequence > first.sequence
    assert stored(ws, "ana@acme.example")["status"] == "confirmed"
    assert stored(ws, "ben@acme.example")["status"] == "confirmed"
    assert ws.server.state.counts["calendar.events.patch"] == 1


def test_create_refuses_an_id_taken_by_someone_elses_event(ws: Workspace) -> None:
    cal, _ = ws.connect()
    ws.server.state.put(
        "ana@acme.example",
        {
            "id": KEY,
            "summary": "Not ours",
            "start": {"dateTime": T.isoformat()},
            "end": {"dateTime": (T + timedelta(hours=1)).isoformat()},
        },
    )
    with pytest.raises(PermanentError, match="not the agent's"):
        cal.create(draft(ws))
    cal.close()
    assert stored(ws, "ana@acme.example")["summary"] == "Not ours"


def test_find_returns_only_the_agents_event_on_that_calendar(ws: Workspace) -> None:
    cal, _ = ws.connect()
    made = cal.create(draft(ws))
    assert cal.find(ws.person("ana"), KEY) == made
    assert cal.find(ws.person("ana"), "0" * 32) is None
    assert cal.find(ws.person("ben"), KEY) is None  # the attendee's copy carries no tag
    cal.cancel(ws.person("ana"), made)
    assert cal.find(ws.person("ana"), KEY) is None
    cal.close()


def test_move_keeps_id_and_meet_link_and_raises_sequence(ws: Workspace) -> None:
    cal, _ = ws.connect()
    ana = ws.person("ana")
    made = cal.create(draft(ws))
    link = stored(ws, "ana@acme.example")["hangoutLink"]
    to = Interval(T + timedelta(days=1), T + timedelta(days=1, minutes=15))
    moved = cal.move(ana, made, to)
    cal.close()
    assert (moved.id, moved.start, moved.end) == (KEY, to.start, to.end)
    assert moved.sequence == made.sequence + 1
    assert stored(ws, "ana@acme.example")["hangoutLink"] == link
    assert stored(ws, "ben@acme.example")["start"] == stored(ws, "ana@acme.example")["start"]


def test_move_and_cancel_refuse_events_the_agent_did_not_create(ws: Workspace) -> None:
    cal, _ = ws.connect()
    ana = ws.person("ana")
    ident = ws.server.add_event(ana.email, "Lunch", T, T + timedelta(hours=1))
    theirs = next(e for e in cal.changes(ana, None, Interval(T, T + timedelta(hours=2))).events)
    before = sum(ws.server.state.counts.values())
    with pytest.raises(PermanentError):
        cal.cancel(ana, theirs)
    with pytest.raises(PermanentError):
        cal.move(ana, theirs, Interval(T, T + timedelta(hours=1)))
    cal.close()
    assert sum(ws.server.state.counts.values()) == before
    assert stored(ws, ana.email, ident)["status"] == "confirmed"


def test_cancel_twice_is_done(ws: Workspace) -> None:
    cal, _ = ws.connect()
    ana = ws.person("ana")
    made = cal.create(draft(ws))
    cal.cancel(ana, made)
    cal.cancel(ana, made)
    cal.close()
    assert stored(ws, ana.email)["status"] == "cancelled"
    assert [n[0] for n in ws.server.state.notifications] == ["REQUEST", "CANCEL"]


def test_busy_matches_events_and_ignores_free_and_declined(ws: Workspace) -> None:
    cal, _ = ws.connect()
    ana, ben, chloe = ws.person("ana"), ws.person("ben"), ws.person("chloe")
    srv = ws.server
    srv.add_event(ana.email, "A", T, T + timedelta(hours=1))
    srv.add_event(ana.email, "B", T + timedelta(minutes=30), T + timedelta(hours=2))
    srv.add_event(
        ana.email,
        "Free",
        T + timedelta(hours=3),
        T + timedelta(hours=4),
        transparency="transparent",
    )
    declined = srv.add_event(ben.email, "Ben's", T, T + timedelta(hours=1), attendees=[chloe.email])
    srv.calendar.respond(chloe.email, declined, "declined")
    window = Interval(T - timedelta(days=1), T + timedelta(days=1))
    busy = cal.busy([ana, ben, chloe], window)
    cal.close()
    assert busy == {
        ana.email: [Interval(T, T + timedelta(hours=2))],
        ben.email: [Interval(T, T + timedelta(hours=1))],
        chloe.email: [],
    }
    assert ws.server.state.counts["calendar.freebusy.query"] == 1


def test_busy_asks_50_calendars_per_query_in_one_http_batch(tmp_path) -> None:
    people = tuple((f"p{n:03}@acme.example", f"Person {n}", "UTC") for n in range(120))
    with workspace(tmp_path, people=people) as ws:
        cal, _ = ws.connect()
        for n in range(0, 120, 7):
            ws.server.add_event(
                f"p{n:03}@acme.example", "x", T + timedelta(minutes=n), T + timedelta(minutes=n + 5)
            )
        busy = cal.busy(ws.people, Interval(T - timedelta(hours=1), T + timedelta(days=1)))
        cal.close()
        counts = ws.server.state.counts
    assert len(busy) == 120
    assert busy["p007@acme.example"] == [
        Interval(T + timedelta(minutes=7), T + timedelta(minutes=12))
    ]
    assert busy["p001@acme.example"] == []
    assert (counts["batch"], counts["calendar.freebusy.query"]) == (1, 3)


def test_busy_over_a_long_window_is_split(ws: Workspace) -> None:
    cal, _ = ws.connect()
    ana = ws.person("ana")
    late = T + timedelta(days=150)
    ws.server.add_event(ana.email, "Late", late, late + timedelta(hours=1))
    busy = cal.busy([ana], Interval(T, T + timedelta(days=200)))
    cal.close()
    assert busy[ana.email] == [Interval(late, late + timedelta(hours=1))]
    assert ws.server.state.counts["calendar.freebusy.query"] == 3


def test_busy_of_a_deleted_calendar_is_an_error_not_free(ws: Workspace) -> None:
    # a person the config knows whose calendar is gone; the contract suite covers a
    # person the server never had
    cal, _ = ws.connect()
    del ws.server.state.calendars["chloe@acme.example"]
    busy = cal.busy(ws.people, Interval(T, T + timedelta(days=1)))
    cal.close()
    assert "chloe@acme.example" not in busy
    assert re.search(r"chloe@acme\.example.*notFound", busy.failed["chloe@acme.example"])
    assert set(busy) == {p.email for p in ws.people} - {"chloe@acme.example"}


def test_created_events_show_in_changes_and_busy(ws: Workspace) -> None:
    cal, _ = ws.connect()
    ana, ben = ws.person("ana"), ws.person("ben")
    window = Interval(T - timedelta(days=1), T + timedelta(days=2))
    cursors = {p.email: cal.changes(p, None, window).cursor for p in (ana, ben)}
    made = cal.create(draft(ws))
    mine = cal.changes(ana, cursors[ana.email], window).events
    theirs = cal.changes(ben, cursors[ben.email], window).events
    busy = cal.busy([ana, ben], window)
    cal.close()
    assert mine == (made,)
    assert isinstance(theirs[0], Event) and theirs[0].id == KEY and theirs[0].key == KEY
    assert theirs[0].owner == ben.email and theirs[0].organizer == ana.email
    assert busy[ben.email] == [made.interval]


def test_a_shared_tag_alone_does_not_make_the_organizers_event_the_agents(ws: Workspace) -> None:
    cal, _ = ws.connect()
    ana = ws.person("ana")
    ws.server.add_event(
        ana.email,
        "Forged",
        T,
        T + timedelta(hours=1),
        extendedProperties={"shared": {"cadenceKey": KEY}},
    )
    (event,) = cal.changes(ana, None, Interval(T, T + timedelta(hours=2))).events
    cal.close()
    assert event.key is None


def test_a_proxy_endpoint_receives_every_request_batches_included(tmp_path) -> None:
    people = tuple((f"p{n:03}@acme.example", f"Person {n}", "UTC") for n in range(60))
    with workspace(tmp_path, people=people) as ws:
        srv = ws.server
        srv.mounts = {"gw/cal/batch/calendar/v3": "batch/calendar/v3", "gw/cal/": "calendar/v3/"}
        ws.path.write_text(
            ws.path.read_text().replace(srv.endpoints["calendar"], srv.url + "gw/cal/")
        )
        from agent.settings import config

        ws.settings = config.load(ws.path)
        cal, _ = ws.connect()
        srv.add_event("p000@acme.example", "x", T, T + timedelta(hours=1))
        busy = cal.busy(ws.people, Interval(T, T + timedelta(days=1)))
        assert cal.changes(ws.people[0], None, Interval(T, T + timedelta(days=1))).events
        cal.close()
    assert busy["p000@acme.example"] == [Interval(T, T + timedelta(hours=1))]
    api = [line for line in srv.state.log if "/token" not in line]
    assert api and all(line.split()[1].startswith("/gw/cal/") for line in api if " /" in line)
    assert srv.state.counts["batch"] == 1


def test_create_restores_a_deleted_event_that_kept_only_its_id(ws: Workspace) -> None:
    ws.server.state.put(
        "ana@acme.example",
        {
            "id": KEY,
            "status": "cancelled",
            "start": {"dateTime": T.isoformat()},
            "end": {"dateTime": T.isoformat()},
        },
    )
    cal, _ = ws.connect()
    event = cal.create(draft(ws))
    cal.close()
    assert (event.key, event.start, event.cancelled) == (KEY, T, False)
    assert stored(ws, "ana@acme.example")["extendedProperties"]["private"]["cadenceKey"] == KEY
    assert stored(ws, "ben@acme.example")["status"] == "confirmed"
