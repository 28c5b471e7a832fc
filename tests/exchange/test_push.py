"""Exchange pull subscriptions in a running service, against the local EWS server: a
decline answered by a move within one poll, only the changed calendars read, on a
PostgreSQL store too; a restarted service going on from the kept watermarks; a subscription the server lost
made again and its calendar read; a server that refuses subscriptions polled at every
tick, said once, and shown by ``cadence status`` and ``/metrics``."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.app.service import Service
from agent.settings import config
from agent.store.push import PushRows
from agent.store.sqlite import Store
from agent.tick import metrics as metrics_mod
from agent.views import pushstate
from tests import programs
from tests.environ import clean_environ
from tests.exchange.fixtures import ACCOUNT_SETTINGS, people, server_for, workspace
from tests.exchange.server import EwsServer, Item
from tests.google.test_push import free_port
from tests.stores import use_store

ANA, BEN, CHLOE = "ana@contoso.example", "ben@contoso.example", "chloe@contoso.example"
PASSWORD_ENV = "CADENCE_EWS_PASSWORD"


def wait_for(check: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@contextmanager
def exchange(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, push: str = "  exchange: pull\n"
) -> Iterator[tuple[EwsServer, Path]]:
    """The local EWS server with Ana's lapsed and Chloe's recent deep dive with Ben, and
    a config with ``push:`` (no public URL: Exchange needs none) asking every second,
    ``push`` its further keys (pull subscriptions unless they say otherwise)."""
    template = (
        programs.config("onprem", ACCOUNT_SETTINGS)
        + f"service:\n  host: 127.0.0.1\n  port: {free_port()}\n"
        + "push:\n  pull: 1s\n  debounce: 1s\n"
        + push
    )
    with clean_environ(), server_for(people()) as server:
        server.heartbeat = 0.2  # a streaming connection the client left is noticed soon
        path = workspace(server, tmp_path, template, PASSWORD_ENV, monkeypatch.setenv)
        now = datetime.now(UTC)
        for who, title, start in (
            (ANA, "Development Align: Ana & Ben", now - timedelta(days=120)),
            (CHLOE, "Deep dive: Chloe & Ben", now - timedelta(days=20)),
        ):
            server.add_event(who, title, start, start + timedelta(hours=1), [BEN])
        yield server, path


@contextmanager
def serving(path: Path, part: str = "puller") -> Iterator[Service]:
    """The service's push side started; ``part`` (puller, streamer) must be in it."""
    service = Service(config.load(path))
    assert service.push is not None and getattr(service.push, part) is not None
    service.push.start()
    try:
        yield service
    finally:
        service.push.stop()
        metrics_mod.deactivate()


def pulls(service: Service, result: str) -> float:
    value: float = service.metrics.push_pulls.labels(result)._value.get()
    return value


def polled(service: Service) -> None:
    """Wait until the puller has asked every subscription once more."""
    before = pulls(service, "quiet")
    wait_for(lambda: pulls(service, "quiet") >= before + 3)


def settle(service: Service) -> None:
    """Wait until the events of what the service itself did (a move is one) were asked
    for and their reaction has run."""
    polled(service)
    polled(service)
    assert service.push is not None
    wait_for(lambda: not service.push.reactor.pending)  # type: ignore[union-attr]
    with service._running:  # a reaction under way ends
        pass


def booked(server: EwsServer) -> Item:
    (item,) = [i for i in server.items_of(ANA) if i.ext]
    return item


def reads(server: EwsServer, email: str) -> int:
    """Calendar views of one mailbox: how often its calendar was read."""
    with server._lock:
        return sum(
            1
            for r in server.requests
            if r.operation == "FindItem"
            and r.impersonating == email
            and r.body.find(".//{*}CalendarView") is not None
        )


def rows(service: Service) -> dict[str, str]:
    store = Store(service.settings.store)
    try:
        return {o: r.state for o, r in PushRows(store).all().items()}
    finally:
        store.close()


def test_a_decline_is_moved_within_one_poll(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with exchange(tmp_path, monkeypatch) as (server, path), serving(path) as service:
        service.tick()
        assert server.counts["Subscribe"] == 3
        assert {s.owner for s in server.subscriptions.values()} == {ANA, BEN, CHLOE}
        assert rows(service) == dict.fromkeys((ANA, BEN, CHLOE), "active")
        meeting = booked(server)
        start = meeting.start  # the server's own item: it moves
        polled(service)  # the booking came before the subscriptions: nothing to tell
        chloe = reads(server, CHLOE)

        declined = time.monotonic()
        server.respond(BEN, meeting.id, "Decline")
        wait_for(lambda: booked(server).start != start)
        # within a poll (1 s), the debounce (1 s) and the focused tick
        assert time.monotonic() - declined < 8
        assert booked(server).id == meeting.id
        assert reads(server, CHLOE) == chloe  # only the changed calendars were read
        text = service.metrics.exposition().decode()
        assert 'cadence_push_channels{state="active"} 3.0' in text
        assert 'cadence_push_pulls_total{result="quiet"}' in text
        assert "cadence_push_reaction_seconds_count" in text

        # the next tick reads no calendar: every subscription is healthy
        settle(service)
        before = sum(reads(server, e) for e in (ANA, BEN, CHLOE))
        service.tick()
        assert sum(reads(server, e) for e in (ANA, BEN, CHLOE)) == before
        assert server.counts["Subscribe"] == 3

        # Chloe's relationship ends: her subscription is ended
        path.write_text(
            path.read_text().replace(
                "  - {employee: chloe@contoso.example, partner: ben@contoso.example,"
                " program: leader-cycle}\n",
                "",
            )
        )
        service.settings = config.load(path)
        service.tick()
        assert server.subscriptions_of(CHLOE) == []
        assert server.counts["Unsubscribe"] == 1


def test_the_puller_asks_through_a_server_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres: str
) -> None:
    with exchange(tmp_path, monkeypatch) as (server, path):
        use_store(path, postgres)
        with serving(path) as service:
            service.tick()
            meeting = booked(server)
            start = meeting.start
            polled(service)  # the subscriptions the tick kept in PostgreSQL were asked
            server.respond(BEN, meeting.id, "Decline")
            wait_for(lambda: booked(server).start != start)
            assert server.counts["GetEvents"] >= 3


def test_a_restart_goes_on_from_the_kept_watermarks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with exchange(tmp_path, monkeypatch) as (server, path):
        with serving(path) as service:
            service.tick()
            # Chloe blocks an afternoon: her calendar is read, her watermark kept
            before = reads(server, CHLOE)
            later = datetime.now(UTC) + timedelta(days=3)
            server.add_event(CHLOE, "Focus", later, later + timedelta(hours=3))
            wait_for(lambda: reads(server, CHLOE) > before)
            settle(service)
        meeting = booked(server)
        start = meeting.start  # the server's own item: it moves
        ids = {s.id for s in server.subscriptions.values()}
        chloe = reads(server, CHLOE)
        # while no service runs, Ben declines
        server.respond(BEN, meeting.id, "Decline")
        with serving(path) as service:
            wait_for(lambda: booked(server).start != start)
            assert {s.id for s in server.subscriptions.values()} == ids
            assert server.counts["Subscribe"] == 3  # picked up, not made again
            settle(service)
            # Chloe's change is behind her kept watermark: not told, not read again
            assert reads(server, CHLOE) == chloe


def test_a_lost_subscription_is_made_again_and_its_calendar_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with exchange(tmp_path, monkeypatch) as (server, path), serving(path) as service:
        service.tick()
        polled(service)
        (old,) = server.subscriptions_of(ANA)
        before = reads(server, ANA)
        # the server forgets Ana's subscription (restarted, or not asked in time), and a
        # change happens that no event will tell
        server.expire(ANA)
        meeting = booked(server)
        start = meeting.start  # the server's own item: it moves
        server.respond(BEN, meeting.id, "Decline")
        wait_for(lambda: len(server.subscriptions_of(ANA)) == 1)
        (new,) = server.subscriptions_of(ANA)
        assert new.id != old.id
        wait_for(lambda: reads(server, ANA) > before)
        wait_for(lambda: booked(server).start != start)
        wait_for(lambda: rows(service)[ANA] == "active")
        assert pulls(service, "lost") == 1


def test_a_server_without_subscriptions_is_polled_at_every_tick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="cadence.push")
    with exchange(tmp_path, monkeypatch) as (server, path), serving(path) as service:
        server.offers_subscriptions = False
        service.tick()
        assert rows(service) == dict.fromkeys((ANA, BEN, CHLOE), "refused")
        before = {e: reads(server, e) for e in (ANA, BEN, CHLOE)}
        service.tick()
        assert all(reads(server, e) > before[e] for e in (ANA, BEN, CHLOE))
        assert server.counts["Subscribe"] == 3  # asked once, again a day later
        (said,) = [r for r in caplog.records if "stay polled" in r.getMessage()]
        assert "3 Exchange calendar(s)" in said.getMessage()  # once, not once per tick
        text = service.metrics.exposition().decode()
        assert 'cadence_push_channels{state="refused"} 3.0' in text
        status = pushstate.read(service.settings, datetime.now(UTC))
        assert {r["state"] for r in status} == {"polled"}
        assert all("ErrorInvalidSubscriptionRequest" in (r["error"] or "") for r in status)


@pytest.mark.slow
def test_a_busy_server_is_asked_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with exchange(tmp_path, monkeypatch) as (server, path), serving(path) as service:
        # Subscribe throttled beyond the retries (the calendars are subscribed to at
        # once, five tries each): nobody is subscribed, the next tick tries again
        server.throttle("Subscribe", times=15, back_off_ms=10)
        service.tick()
        assert server.counts["Subscribe"] == 15
        assert server.subscriptions == {}
        status = pushstate.read(service.settings, datetime.now(UTC))
        assert {r["state"] for r in status} == {"none"}
        service.tick()
        assert rows(service) == dict.fromkeys((ANA, BEN, CHLOE), "active")
        # GetEvents throttled: that round fails, the subscriptions stay and go on
        polled(service)
        ids = {s.id for s in server.subscriptions.values()}
        server.throttle("GetEvents", times=3, back_off_ms=10)
        wait_for(lambda: pulls(service, "failed") >= 3)
        polled(service)
        assert {s.id for s in server.subscriptions.values()} == ids
        assert rows(service) == dict.fromkeys((ANA, BEN, CHLOE), "active")
