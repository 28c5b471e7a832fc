"""Retry-After per mailbox across threads, and the Teams lookup during a booking sweep.

The fake Graph records when each request arrived and which were throttled; a mailbox
that asked to wait must see no request from any thread before the wait is over, counted
from when its answer went out.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from agent.connectors.microsoft import Graph, MicrosoftCalendar
from agent.core.model import Person
from agent.core.retry import RetryPolicy
from tests.microsoft import fixtures
from tests.microsoft.server import GraphServer
from tests.microsoft.test_events import draft

#: real pauses: these tests are about time
REAL = RetryPolicy(attempts=3, base=0.3, rand=lambda: 1.0)


def early_calls(server: GraphServer, mailbox: str) -> list[str]:
    """Requests to ``mailbox`` that arrived after a throttled answer, before its wait was over."""
    seen = [a for a in server.arrivals if a[1] == mailbox]
    early = []
    for at, _, route, after in seen:
        if after is None:
            continue
        early += [
            f"{r} {t - at:.3f}s after a {route} was told to wait {after:g}s"
            for t, _, r, _ in seen
            if at < t < at + after
        ]
    return early


def run_in_threads(*calls: tuple[float, Callable[[], object]]) -> list[BaseException]:
    """Start each call after its delay (seconds) in a thread of its own; return errors."""
    errors: list[BaseException] = []

    def run(delay: float, call: Callable[[], object]) -> None:
        time.sleep(delay)
        try:
            call()
        except BaseException as exc:  # reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=c) for c in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    return errors


def real_graph(server: GraphServer, ca: Path) -> Graph:
    return fixtures.graph(server, ca, retry=REAL)


def test_a_wait_holds_for_every_thread_even_one_whose_request_was_already_retrying(
    server: GraphServer, ca: Path, staff: list[Person]
) -> None:
    ana = staff[0].email
    g = real_graph(server, ca)
    g.token()
    # thread 1's first GET is refused without a wait (0.3 s backoff); meanwhile thread 2
    # is told to wait 1 s: thread 1's retry must wait for that too
    server.throttle("calendar", times=1, retry_after=0, status=503)
    server.throttle("mailboxSettings", times=1, retry_after=1)
    try:
        errors = run_in_threads(
            (0.0, lambda: g.send("GET", f"/users/{ana}/calendar")),
            (0.1, lambda: g.send("GET", f"/users/{ana}/mailboxSettings")),
        )
    finally:
        g.close()
    assert not errors
    assert early_calls(server, ana) == []
    assert server.counts["calendar"] == 2 and server.counts["mailboxSettings"] == 2


def test_a_wait_is_not_cleared_by_another_threads_success(
    server: GraphServer, ca: Path, staff: list[Person]
) -> None:
    ana = staff[0].email
    g = real_graph(server, ca)
    g.token()
    server.slow["calendar"] = 0.4  # in flight while mailboxSettings is throttled
    server.throttle("mailboxSettings", times=1, retry_after=1)
    try:
        errors = run_in_threads(
            (0.0, lambda: g.send("GET", f"/users/{ana}/calendar")),
            (0.1, lambda: g.send("GET", f"/users/{ana}/mailboxSettings")),
            # after the slow GET succeeded, before the wait is over
            (0.6, lambda: g.send("GET", f"/users/{ana}/events")),
        )
    finally:
        g.close()
    assert not errors
    assert early_calls(server, ana) == []
    assert server.counts["events.list"] == 1


def test_a_throttled_part_of_a_batch_holds_its_mailbox_for_other_threads(
    server: GraphServer, ca: Path, staff: list[Person]
) -> None:
    ana, ben = staff[0].email, staff[1].email
    g = real_graph(server, ca)
    g.token()
    server.throttle("mailboxSettings", times=1, retry_after=1)
    requests = [{"method": "GET", "url": f"/users/{who}/mailboxSettings"} for who in (ana, ben)]
    try:
        errors = run_in_threads(
            (0.0, lambda: g.batch(requests)),
            (0.3, lambda: g.send("GET", f"/users/{ana}/events")),
        )
    finally:
        g.close()
    assert not errors
    assert early_calls(server, ana) == []
    assert server.counts["mailboxSettings"] == 3


def test_the_teams_lookup_is_made_once_by_threads_booking_for_one_organizer(
    server: GraphServer, ca: Path, staff: list[Person]
) -> None:
    g = fixtures.graph(server, ca)
    cal = MicrosoftCalendar(g, staff)
    server.slow["calendar"] = 0.3  # both threads reach the lookup while it is asked
    drafts = [draft(staff, days=3), draft(staff, days=4)]
    try:
        errors = run_in_threads(*((0.0, lambda d=d: cal.create(d)) for d in drafts))
    finally:
        g.close()
    assert not errors
    assert server.counts["calendar"] == 1
    assert all(e["isOnlineMeeting"] for e in server.events_of(staff[0].email))


def test_a_failed_teams_lookup_books_without_a_link_and_asks_again_next_time(
    server: GraphServer, ca: Path, staff: list[Person]
) -> None:
    g = fixtures.graph(server, ca)
    cal = MicrosoftCalendar(g, staff)
    server.broken.add("calendar")
    try:
        first = cal.create(draft(staff, days=3))
        server.broken.clear()
        second = cal.create(draft(staff, days=4))
    finally:
        g.close()
    assert "without a Teams link" in first.note and staff[0].email in first.note
    assert second.note == ""
    by_key = {
        e["singleValueExtendedProperties"][0]["value"]: e
        for e in (
            server.mailboxes[staff[0].email].events[s["id"]].body
            for s in server.events_of(staff[0].email)
        )
    }
    without, with_link = by_key[first.key], by_key[second.key]
    assert not without.get("isOnlineMeeting") and "No Teams link" in without["body"]["content"]
    assert with_link["isOnlineMeeting"] and "No Teams link" not in with_link["body"]["content"]
    assert server.counts["calendar"] == 2  # the failure was not remembered


def test_a_meeting_without_a_conference_never_asks(
    server: GraphServer, ca: Path, staff: list[Person]
) -> None:
    g = fixtures.graph(server, ca)
    cal = MicrosoftCalendar(g, staff)
    server.broken.add("calendar")
    try:
        event = cal.create(replace(draft(staff), conference="none"))
    finally:
        g.close()
    assert event.note == "" and server.counts["calendar"] == 0
