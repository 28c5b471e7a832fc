"""The whole tick against the local Graph server: lapse found, booking made, agenda sent,
rerun quiet at about one request per calendar."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.core.retry import RetryPolicy
from agent.settings import config
from agent.tick.engine import Engine
from tests import programs
from tests.microsoft.fixtures import (
    ACCOUNT_SETTINGS,
    add_deep_dives,
    graph_event,
    people,
    write_config,
)
from tests.microsoft.server import GraphServer
from tests.programs import TITLE as TITLE  # re-exported: the Graph crash test reads it here

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # a Monday
SECRET_ENV = "CADENCE_GRAPH_SECRET"
CONFIG = programs.config("m365", ACCOUNT_SETTINGS)


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[GraphServer, Path]]:
    staff = people()
    ben = staff[1]
    with GraphServer([p.email for p in staff]) as server:
        path = write_config(server, tmp_path, CONFIG, SECRET_ENV)
        monkeypatch.setenv(SECRET_ENV, server.client_secret or "")
        # Ana and Ben held a deep dive 120 days ago: lapsed. Chloe and Ben met 20 days ago.
        add_deep_dives(server, staff, NOW - timedelta(days=120), NOW - timedelta(days=20))
        # Ben is busy on Wednesday and Thursday daytime, every slot of it
        for day in (2, 3):
            start = (NOW + timedelta(days=day)).replace(hour=7)
            server.add_event(ben.email, graph_event("Offsite", start, start + timedelta(hours=10)))
        yield server, path


def test_tick_books_sends_agenda_and_reruns_quietly(setup: tuple[GraphServer, Path]) -> None:
    server, path = setup
    settings = config.load(path)
    ana, ben = "ana@contoso.example", "ben@contoso.example"

    with Engine(settings, retry=RetryPolicy.none()) as engine:
        first = engine.tick(NOW)
        assert first.ok, first.errors
        lapses = [a for a in first.actions if a.kind == "lapse"]
        booked = [a for a in first.actions if a.kind == "book" and a.outcome == "done"]
        assert [a.relationship for a in lapses] == [f"{ana}/{ben}"]
        assert [a.relationship for a in booked] == [f"{ana}/{ben}"]
        key = booked[0].data["key"]
        [event] = [e for e in server.events_of(ana) if e.get("transactionId") == f"cadence-{key}"]
        start = datetime.fromisoformat(event["start"]["dateTime"][:19]).replace(tzinfo=UTC)
        assert start >= NOW + timedelta(days=2)
        assert start.weekday() not in (2, 3)  # Ben's offsite
        assert event["onlineMeeting"]["joinUrl"]
        assert any(e["subject"] == event["subject"] for e in server.events_of(ben))  # invited
        assert server.counts["events.create"] == 1

        # the day before, the agenda goes out from Ana's mailbox
        before = start - timedelta(hours=12)
        second = engine.tick(before)
        assert second.ok, second.errors
        assert [a.kind for a in second.actions if a.outcome == "done"] == ["agenda"]
        [agenda] = server.sent
        assert agenda["From"].endswith(f"<{ana}>") and ben in agenda["To"]
        assert agenda["Message-ID"].endswith("@cadence>")

        # a rerun finds nothing to do and costs one delta request per calendar
        server.reset_counts()
        third = engine.tick(before + timedelta(minutes=10))
        assert third.ok, third.errors
        assert [a for a in third.actions if a.outcome in ("done", "already")] == []
        assert dict(server.counts) == {"delta": 3}
        assert len(server.sent) == 1 and server.counts["events.create"] == 0

    # a fresh process adds the token request and the OpenID configuration, nothing else
    server.reset_counts()
    with Engine(config.load(path), retry=RetryPolicy.none()) as engine:
        fourth = engine.tick(before + timedelta(minutes=20))
        assert fourth.ok, fourth.errors
        assert dict(server.counts) == {"openid": 1, "token": 1, "delta": 3}

        # after the meeting, the recap answers the agenda in the same thread
        recap_tick = engine.tick(start + timedelta(hours=3, minutes=5))
        assert recap_tick.ok, recap_tick.errors
    assert [a.kind for a in recap_tick.actions if a.outcome == "done"] == ["recap"]
    recap = server.sent[-1]
    assert recap["In-Reply-To"] == agenda["Message-ID"]
    assert agenda["Message-ID"] in recap["References"]


def test_throttled_graph_still_books_after_retry_after(setup: tuple[GraphServer, Path]) -> None:
    server, path = setup
    slept: list[float] = []
    server.throttle("getSchedule", times=1, retry_after=4)
    server.throttle("events.create", times=1, retry_after=2, status=503)
    retry = RetryPolicy(attempts=3, sleep=slept.append, rand=lambda: 0.0)
    with Engine(config.load(path), retry=retry) as engine:
        report = engine.tick(NOW)
    assert report.ok, report.errors
    assert report.count("book") == 1
    assert slept == [4.0, 2.0]
    assert len([e for e in server.events_of("ana@contoso.example") if e.get("transactionId")]) == 1


def test_expired_delta_tokens_resync_in_full_and_book_nothing_twice(
    setup: tuple[GraphServer, Path],
) -> None:
    server, path = setup
    with Engine(config.load(path), retry=RetryPolicy.none()) as engine:
        assert engine.tick(NOW).ok
        server.expire_delta_tokens()
        server.reset_counts()
        again = engine.tick(NOW + timedelta(minutes=10))
    assert again.ok, again.errors
    assert [a for a in again.actions if a.kind == "book" and a.outcome == "done"] == []
    assert server.counts["events.create"] == 0
    assert server.counts["delta"] == 6  # a refused cursor, then a full sync, per calendar
