"""EWS streaming notifications through the connector, against the local EWS server: the
SOAP of a streaming Subscribe and of GetStreamingEvents held open, as exchangelib sends
and reads it."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.connectors.base import Stream, Streams
from agent.connectors.exchange import ExchangeCalendar
from agent.core.errors import PermanentError, TransientError
from agent.core.model import Person
from tests.exchange import fixtures
from tests.exchange.server import EwsServer
from tests.exchange.test_notify import CALENDAR_CHANGES

HOUR = timedelta(hours=1)
START = datetime(2026, 12, 7, 9, tzinfo=UTC)


class Reader:
    """Iterates a stream in a thread of its own; what it yields lands in ``got``."""

    def __init__(self, stream: Stream) -> None:
        self.stream = stream
        self.got: queue.Queue[tuple[str, str] | BaseException | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for item in self.stream:
                self.got.put(item)
        except BaseException as exc:  # handed to the test
            self.got.put(exc)
        self.got.put(None)  # the end

    def next(self, timeout: float = 10) -> tuple[str, str] | BaseException | None:
        return self.got.get(timeout=timeout)

    def close(self) -> None:
        self.stream.close()
        self.thread.join(10)


@pytest.fixture
def readers() -> Iterator[list[Reader]]:
    made: list[Reader] = []
    yield made
    for reader in made:
        reader.close()


def held(server: EwsServer, n: int) -> None:
    deadline = time.monotonic() + 10
    while server.held != n:
        assert time.monotonic() < deadline, f"{server.held} held connections, not {n}"
        time.sleep(0.02)


def test_a_change_is_streamed_as_it_happens(
    cal: ExchangeCalendar, server: EwsServer, staff: list[Person], readers: list[Reader]
) -> None:
    ana, ben, _ = staff
    assert isinstance(cal, Streams)
    sub = cal.subscribe_stream(ana)
    (kept,) = server.streams_of(ana.email)
    assert kept.id == sub
    assert kept.types == CALENDAR_CHANGES
    server.reset_counts()
    readers.append(reader := Reader(cal.stream(ana, [sub], timedelta(minutes=30))))
    held(server, 1)
    assert reader.next() == ("", "open")  # the first OK: the server holds it
    assert reader.got.empty()
    item = server.add_event(ana.email, "1:1", START, START + HOUR, [ben.email])
    assert reader.next() == (sub, "changed")
    server.delete(ana.email, item)
    assert reader.next() == (sub, "changed")
    assert server.counts["GetStreamingEvents"] == 1  # one connection for all of it


def test_several_subscriptions_share_one_connection(
    cal: ExchangeCalendar, server: EwsServer, staff: list[Person], readers: list[Reader]
) -> None:
    ana, ben, cy = staff
    subs = {p.email: cal.subscribe_stream(p) for p in staff}
    server.reset_counts()
    readers.append(reader := Reader(cal.stream(ana, list(subs.values()), HOUR)))
    held(server, 1)
    assert reader.next() == ("", "open")
    server.add_event(cy.email, "alone", START, START + HOUR, [])
    assert reader.next() == (subs[cy.email], "changed")
    server.add_event(ben.email, "alone", START, START + HOUR, [])
    assert reader.next() == (subs[ben.email], "changed")
    assert server.counts == {"GetStreamingEvents": 1}
    assert all(s.holder is not None for s in server.subscriptions.values())


def test_the_server_closes_at_the_timeout_and_a_new_connection_goes_on(
    cal: ExchangeCalendar, server: EwsServer, staff: list[Person], readers: list[Reader]
) -> None:
    ana, ben, _ = staff
    server.minute, server.heartbeat = 0.4, 0.1  # a ConnectionTimeout minute of 0.4 s
    sub = cal.subscribe_stream(ana)
    start = time.monotonic()
    readers.append(first := Reader(cal.stream(ana, [sub], timedelta(minutes=1))))
    assert first.next() == ("", "open")
    assert first.next() is None  # Closed after one (short) minute, heartbeats unseen
    assert 0.3 < time.monotonic() - start < 5
    # what happened while no connection held it waits for the next one
    server.add_event(ana.email, "between", START, START + HOUR, [ben.email])
    readers.append(second := Reader(cal.stream(ana, [sub], timedelta(minutes=1))))
    assert second.next() == ("", "open")
    assert second.next() == (sub, "changed")
    assert server.counts["GetStreamingEvents"] == 2


def test_an_unknown_subscription_is_reported_lost(
    cal: ExchangeCalendar, server: EwsServer, staff: list[Person], readers: list[Reader]
) -> None:
    ana, ben, _ = staff
    good, gone = cal.subscribe_stream(ana), cal.subscribe_stream(ben)
    server.expire(ben.email)
    readers.append(reader := Reader(cal.stream(ana, [good, gone], HOUR)))
    assert reader.next() == (gone, "lost")  # named by ErrorSubscriptionIds, never open
    assert reader.next() is None  # and the connection ends
    readers.append(alone := Reader(cal.stream(ana, [good], HOUR)))
    held(server, 1)
    server.add_event(ana.email, "1:1", START, START + HOUR, [])
    assert alone.next() == ("", "open")
    assert alone.next() == (good, "changed")


def test_a_subscription_left_without_connection_ends(
    cal: ExchangeCalendar, server: EwsServer, staff: list[Person], readers: list[Reader]
) -> None:
    ana = staff[0]
    server.stream_idle = 0.2
    sub = cal.subscribe_stream(ana)
    time.sleep(0.3)
    readers.append(reader := Reader(cal.stream(ana, [sub], HOUR)))
    assert reader.next() == (sub, "lost")


def test_close_ends_the_connection_from_another_thread(
    cal: ExchangeCalendar, server: EwsServer, staff: list[Person]
) -> None:
    ana = staff[0]
    reader = Reader(cal.stream(ana, [cal.subscribe_stream(ana)], HOUR))
    held(server, 1)
    assert reader.next() == ("", "open")
    reader.close()
    assert reader.next(timeout=5) is None  # ended without an error
    assert not reader.thread.is_alive()


def test_close_before_the_answer_arrives_still_ends_the_connection(
    cal: ExchangeCalendar, server: EwsServer, staff: list[Person]
) -> None:
    """The race of a close that comes before the reading thread holds the response: the
    thread finds the stream closed when the response arrives and shuts it itself."""
    ana = staff[0]
    stream = cal.stream(ana, [cal.subscribe_stream(ana)], HOUR)
    stream.close()  # before any request: close finds no response to shut
    reader = Reader(stream)
    assert reader.next(timeout=5) is None  # ended without an error, not held an hour
    reader.thread.join(5)
    assert not reader.thread.is_alive()


def test_a_mailbox_at_its_connection_limit_is_refused_another_for_a_while(
    cal: ExchangeCalendar,
    server: EwsServer,
    ca: Path,
    staff: list[Person],
    readers: list[Reader],
) -> None:
    ana = staff[0]
    server.connection_limit = 1
    sub = cal.subscribe_stream(ana)
    readers.append(first := Reader(cal.stream(ana, [sub], HOUR)))
    assert first.next() == ("", "open")
    # a connection of its own, as each of the service's streams has
    other = fixtures.ews(server, ca)
    try:
        second = Reader(ExchangeCalendar(other, staff).stream(ana, [sub], HOUR))
        refused, end = second.next(), second.next()
    finally:
        other.close()
    assert isinstance(refused, TransientError), refused  # another try later may be let in
    assert "ErrorExceededConnectionCount" in str(refused)
    assert "limit of open connections" in str(refused)
    assert end is None  # never open


def test_a_server_without_streaming_refuses_it(
    cal: ExchangeCalendar, server: EwsServer, staff: list[Person]
) -> None:
    server.offers_streaming = False
    with pytest.raises(PermanentError, match="ErrorInvalidSubscriptionRequest"):
        cal.subscribe_stream(staff[0])
    sub, _ = cal.subscribe(staff[0], HOUR)  # pull is still offered
    assert sub
