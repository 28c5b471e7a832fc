"""changes(): calendarView/delta full sync, paging, incremental rounds, expiry, mapping."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from agent.connectors.microsoft import MicrosoftCalendar
from agent.core.errors import CursorExpired
from agent.core.model import Interval, PartStat, Person
from tests.microsoft.conftest import NOW
from tests.microsoft.fixtures import graph_event
from tests.microsoft.server import GraphServer

WINDOW = Interval(NOW - timedelta(days=400), NOW + timedelta(days=14))


def hour(days: int, h: int = 10) -> datetime:
    return (NOW + timedelta(days=days)).replace(hour=h)


def test_full_sync_follows_next_links_and_returns_every_event(
    server: GraphServer, cal: MicrosoftCalendar, staff: list[Person]
) -> None:
    ana = staff[0]
    server.max_page_size = 2
    ids = {
        server.add_event(ana.email, graph_event(f"e{i}", hour(i), hour(i, 11))) for i in range(5)
    }
    server.add_event(ana.email, graph_event("far future", hour(300), hour(300, 11)))
    server.reset_counts()

    changes = cal.changes(ana, None, WINDOW)

    assert changes.full
    assert {e.id for e in changes.events} == ids  # the one beyond window + slack is not there
    assert server.counts["delta"] == 3  # 2 + 2 + 1 per page, the last with the deltaLink
    cursor = json.loads(changes.cursor)
    assert "$deltatoken=" in cursor["link"]


def test_second_round_is_one_request_and_quiet(
    server: GraphServer, cal: MicrosoftCalendar, staff: list[Person]
) -> None:
    ana = staff[0]
    server.add_event(ana.email, graph_event("standup", hour(1), hour(1, 11)))
    first = cal.changes(ana, None, WINDOW)
    server.reset_counts()

    second = cal.changes(ana, first.cursor, WINDOW)

    assert second.quiet and not second.full
    assert dict(server.counts) == {"delta": 1}  # the token is cached: no token request


def test_incremental_round_reports_new_changed_and_removed(
    server: GraphServer, cal: MicrosoftCalendar, staff: list[Person]
) -> None:
    ana = staff[0]
    keep = server.add_event(ana.email, graph_event("keep", hour(1), hour(1, 11)))
    gone = server.add_event(ana.email, graph_event("gone", hour(2), hour(2, 11)))
    cursor = cal.changes(ana, None, WINDOW).cursor

    new = server.add_event(ana.email, graph_event("new", hour(3), hour(3, 11)))
    with server.lock:
        box = server.mailboxes[ana.email]
        box.events[keep].body["subject"] = "kept, renamed"
        server._touch(box, box.events[keep])
        server._delete(box, box.events[gone], notify=False)

    changes = cal.changes(ana, cursor, WINDOW)

    assert not changes.full
    assert {e.id: e.title for e in changes.events} == {keep: "kept, renamed", new: "new"}
    assert changes.removed == (gone,)


def test_expired_delta_token_raises_cursor_expired_then_full_sync_works(
    server: GraphServer, cal: MicrosoftCalendar, staff: list[Person]
) -> None:
    ana = staff[0]
    server.add_event(ana.email, graph_event("x", hour(1), hour(1, 11)))
    cursor = cal.changes(ana, None, WINDOW).cursor
    server.expire_delta_tokens()

    with pytest.raises(CursorExpired, match="410 syncStateNotFound"):
        cal.changes(ana, cursor, WINDOW)
    again = cal.changes(ana, None, WINDOW)
    assert again.full and len(again.events) == 1


@pytest.mark.parametrize("cursor", ["garbage", '{"link": "ftp://x"}', "{}"])
def test_a_cursor_of_another_kind_is_expired(
    cal: MicrosoftCalendar, staff: list[Person], cursor: str
) -> None:
    with pytest.raises(CursorExpired):
        cal.changes(staff[0], cursor, WINDOW)


def test_window_is_re_anchored_when_it_slides_past_the_synced_range(
    server: GraphServer, cal: MicrosoftCalendar, staff: list[Person]
) -> None:
    ana = staff[0]
    first = cal.changes(ana, None, WINDOW)
    later = Interval(WINDOW.start + timedelta(days=20), WINDOW.end + timedelta(days=20))
    assert not cal.changes(ana, first.cursor, later).full  # still inside the slack
    much_later = Interval(WINDOW.start + timedelta(days=45), WINDOW.end + timedelta(days=45))
    server.reset_counts()
    resynced = cal.changes(ana, first.cursor, much_later)
    assert resynced.full
    assert "startDateTime=" in server.log[0][1]


def test_recurring_series_expands_into_instances_with_unique_ids(
    server: GraphServer, cal: MicrosoftCalendar, staff: list[Person]
) -> None:
    ana = staff[0]
    start = datetime(2026, 11, 24, 9, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    body = graph_event(
        "weekly 1:1",
        start,
        start + timedelta(minutes=30),
        rrule="FREQ=WEEKLY;COUNT=3",
        zone="Europe/Berlin",
    )
    master = server.add_event(ana.email, body)

    events = cal.changes(ana, None, WINDOW).events

    assert len(events) == 3
    assert len({e.id for e in events}) == len(events)
    assert all(e.id.startswith(master) for e in events)
    assert all(e.start.astimezone(ZoneInfo("Europe/Berlin")).hour == 9 for e in events)


def test_all_day_out_of_office_free_and_declined_are_mapped(
    server: GraphServer, cal: MicrosoftCalendar, staff: list[Person]
) -> None:
    ana, ben = staff[0], staff[1]
    server.add_event(
        ana.email,
        graph_event(
            "holiday",
            datetime(2026, 11, 26),
            datetime(2026, 11, 27),
            all_day=True,
            zone="W. Europe Standard Time",
            show_as="oof",
        ),
    )
    server.add_event(ana.email, graph_event("focus", hour(1), hour(1, 12), transparent=True))
    meeting = server.add_event(ben.email, graph_event("review", hour(2), hour(2, 11), [ana]))
    copy_id = server.mailboxes[ben.email].events[meeting].copies[ana.email]
    server.respond(ana.email, copy_id, "declined")

    events = {e.title: e for e in cal.changes(ana, None, WINDOW).events}

    holiday = events["holiday"]
    berlin = ZoneInfo("Europe/Berlin")
    assert holiday.all_day and holiday.kind == "outOfOffice"
    assert holiday.start == datetime(2026, 11, 26, tzinfo=berlin)
    assert holiday.end == datetime(2026, 11, 27, tzinfo=berlin)
    assert events["focus"].transparent and not events["focus"].blocks_time
    review = events["review"]
    assert review.organizer == ben.email and review.key is None
    assert review.partstat(ana.email) == PartStat.DECLINED and not review.blocks_time


def test_a_malformed_item_is_skipped_and_the_rest_returned(
    server: GraphServer, cal: MicrosoftCalendar, staff: list[Person]
) -> None:
    ana = staff[0]
    good = server.add_event(ana.email, graph_event("good", hour(1), hour(1, 11)))
    bad = server.add_event(ana.email, graph_event("bad", hour(2), hour(2, 11)))
    original = server.mailboxes[ana.email].events[bad].render

    def broken(*args: object, **kwargs: object) -> dict[str, object]:
        item = original(*args, **kwargs)  # type: ignore[arg-type]
        item["start"] = {"dateTime": "not a time", "timeZone": "UTC"}
        return item

    server.mailboxes[ana.email].events[bad].render = broken  # type: ignore[method-assign]

    changes = cal.changes(ana, None, WINDOW)

    assert [e.id for e in changes.events] == [good]
    assert [s.ref for s in changes.skipped] == [bad]


def test_delta_refuses_expand_like_graph(
    server: GraphServer, cal: MicrosoftCalendar, staff: list[Person]
) -> None:
    from agent.core.errors import PermanentError

    with pytest.raises(PermanentError, match="ErrorInvalidUrlQuery"):
        cal.graph.send(
            "GET",
            f"/users/{staff[0].email}/calendarView/delta",
            params={
                "startDateTime": "2026-11-01T00:00:00Z",
                "endDateTime": "2026-12-01T00:00:00Z",
                "$expand": "x",
            },
        )
