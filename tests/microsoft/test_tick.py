"""A whole tick against the local Graph server under throttling (the tick itself is in
tests/connectors/test_contract.py); the setup here is shared by the Graph tick tests."""

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


def test_a_failed_teams_lookup_books_the_meeting_and_the_audit_says_so(
    setup: tuple[GraphServer, Path],
) -> None:
    server, path = setup
    server.broken.add("calendar")  # the allowed-providers lookup answers 500
    with Engine(config.load(path), retry=RetryPolicy.none()) as engine:
        report = engine.tick(NOW)
        rows = engine.store.audit_rows(kind="book")
    assert report.ok, report.errors
    assert report.count("book") == 1
    [made] = [e for e in server.events_of("ana@contoso.example") if e.get("transactionId")]
    assert not made.get("isOnlineMeeting")
    [row] = rows
    assert "without a Teams link" in row["message"]
