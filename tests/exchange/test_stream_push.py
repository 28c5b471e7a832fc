"""Exchange streaming subscriptions in a running service, against the local EWS server: a
decline answered by a move as soon as it is streamed, one connection for every calendar;
a restarted service picking up its subscriptions, or making them again once the server
forgot them, without duplicates; a lost subscription made again and its calendar read;
a server without streaming left to pull; a burst of changes debounced into one
reaction; a connection refused for good leaving its calendars to the tick; one store
for the streamer's life, on either backend, and one read of it for lost subscriptions."""

from __future__ import annotations

import time
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from sqlalchemy import event

from agent.app import pulling, streaming
from agent.app.service import Service
from agent.core.model import Channel
from agent.store.push import PushRows
from agent.store.sqlite import Store
from agent.tick import pulls
from tests.exchange import test_push as pulled
from tests.exchange.server import EwsServer
from tests.exchange.test_push import ANA, BEN, CHLOE, booked, reads, wait_for
from tests.stores import ADMIN, use_store


def exchange(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, push: str = ""
) -> AbstractContextManager[tuple[EwsServer, Path]]:
    """The pull tests' server and config, streaming (the default) and ``push`` more."""
    return pulled.exchange(tmp_path, monkeypatch, "  exchange: stream\n" + push)


def serving(path: Path) -> AbstractContextManager[Service]:
    return pulled.serving(path, "streamer")


def rows(service: Service) -> dict[str, tuple[str, str, str]]:
    """Each calendar's subscription: (state, id, stream or a watermark)."""
    store = Store(service.settings.store)
    try:
        return {
            o: (r.state, r.channel.id, "stream" if pulls.streamed(r) else "pull")
            for o, r in PushRows(store).all().items()
        }
    finally:
        store.close()


def streams(service: Service, result: str) -> float:
    value: float = service.metrics.push_streams.labels(result)._value.get()
    return value


def quiet(service: Service) -> None:
    """Wait until every reaction has run."""
    assert service.push is not None
    wait_for(lambda: not service.push.reactor.pending)  # type: ignore[union-attr]
    time.sleep(1.5)  # a change the service made itself is told and debounced
    wait_for(lambda: not service.push.reactor.pending)  # type: ignore[union-attr]
    with service._running:  # a reaction under way ends
        pass


def test_a_decline_is_moved_as_soon_as_it_is_streamed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with exchange(tmp_path, monkeypatch) as (server, path), serving(path) as service:
        service.tick()
        assert server.counts["Subscribe"] == 3
        assert {s.owner for s in server.subscriptions.values() if s.streaming} == {
            ANA,
            BEN,
            CHLOE,
        }
        assert {v[0::2] for v in rows(service).values()} == {("active", "stream")}
        wait_for(lambda: server.held == 1)  # one connection carries all three
        assert server.counts["GetStreamingEvents"] == 1
        quiet(service)
        meeting = booked(server)
        start = meeting.start
        chloe = reads(server, CHLOE)

        declined = time.monotonic()
        server.respond(BEN, meeting.id, "Decline")
        wait_for(lambda: booked(server).start != start)
        # streamed at once, then the debounce (1 s) and the focused tick
        assert time.monotonic() - declined < 6
        assert booked(server).id == meeting.id
        assert reads(server, CHLOE) == chloe  # only the changed calendars were read
        assert server.counts["GetEvents"] == 0  # nothing was pulled
        text = service.metrics.exposition().decode()
        assert "cadence_push_stream_connections 1.0" in text
        assert "cadence_push_reaction_seconds_count" in text

        # the next tick reads no calendar and subscribes nothing again
        quiet(service)
        before = sum(reads(server, e) for e in (ANA, BEN, CHLOE))
        service.tick()
        assert sum(reads(server, e) for e in (ANA, BEN, CHLOE)) == before
        assert server.counts["Subscribe"] == 3


def test_a_restart_picks_up_its_subscriptions_or_makes_them_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with exchange(tmp_path, monkeypatch) as (server, path):
        with serving(path) as service:
            service.tick()
            wait_for(lambda: server.held == 1)
            quiet(service)
        wait_for(lambda: server.held == 0)  # the connection ended with the service
        ids = {s.id for s in server.subscriptions.values()}
        meeting = booked(server)
        start = meeting.start
        # while no service runs, Ben declines: the server keeps the events
        server.respond(BEN, meeting.id, "Decline")
        with serving(path) as service:  # no tick: the kept rows are enough
            wait_for(lambda: booked(server).start != start)
            assert {s.id for s in server.subscriptions.values()} == ids
            assert server.counts["Subscribe"] == 3  # picked up, not made again
            quiet(service)
            service.tick()
            assert server.counts["Subscribe"] == 3

        # stopped for longer than the server keeps them: made again, once each
        server.expire()
        with serving(path) as service:
            wait_for(lambda: len(server.subscriptions) == 3)
            wait_for(lambda: server.held == 1)
            assert server.counts["Subscribe"] == 6
            assert {s.owner for s in server.subscriptions.values()} == {ANA, BEN, CHLOE}
            assert {s.id for s in server.subscriptions.values()}.isdisjoint(ids)
            kept = rows(service)
            assert {v[1] for v in kept.values()} == {s.id for s in server.subscriptions.values()}
            assert streams(service, "lost") == 1  # one connection named all three
            quiet(service)
            service.tick()
            assert server.counts["Subscribe"] == 6


def test_a_lost_subscription_is_made_again_and_its_calendar_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with exchange(tmp_path, monkeypatch, "  stream_timeout: 1m\n") as (server, path):
        server.minute = 1.0  # the connection is opened again every second
        with serving(path) as service:
            service.tick()
            wait_for(lambda: server.held == 1)
            quiet(service)
            (old,) = server.streams_of(ANA)
            before = reads(server, ANA)
            # the server forgets Ana's subscription, and a change happens that no event
            # will tell
            server.expire(ANA)
            meeting = booked(server)
            start = meeting.start
            server.respond(BEN, meeting.id, "Decline")
            wait_for(lambda: len(server.streams_of(ANA)) == 1)
            (new,) = server.streams_of(ANA)
            assert new.id != old.id
            wait_for(lambda: reads(server, ANA) > before)
            wait_for(lambda: booked(server).start != start)
            wait_for(lambda: rows(service)[ANA] == ("active", new.id, "stream"))
            assert streams(service, "lost") == 1
            assert streams(service, "closed") >= 1  # the timeout: opened again
            assert len(server.subscriptions) == 3

            # lost again at once: a server that cannot keep it gets a pull one instead
            server.expire(ANA)
            wait_for(lambda: rows(service)[ANA][2] == "pull")
            assert streams(service, "lost") == 2
            wait_for(lambda: server.counts["GetEvents"] >= 2)  # the puller asks it
            quiet(service)
            service.tick()
            assert rows(service)[ANA][2] == "pull"  # not asked to stream at each tick


def test_a_server_without_streaming_is_left_to_pull(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with exchange(tmp_path, monkeypatch) as (server, path), serving(path) as service:
        server.offers_streaming = False
        service.tick()
        assert server.counts["Subscribe"] == 6  # refused streaming, then pull
        assert {v[0::2] for v in rows(service).values()} == {("active", "pull")}
        store = Store(service.settings.store)
        try:
            kept = PushRows(store).all().values()
        finally:
            store.close()
        assert all((r.error or "").startswith(pulls.NO_STREAMING) for r in kept)
        assert all(r.channel.resource_id.startswith(pulls.NOT_STREAMED) for r in kept)
        meeting = booked(server)
        start = meeting.start
        wait_for(lambda: server.counts["GetEvents"] >= 3)
        server.respond(BEN, meeting.id, "Decline")
        wait_for(lambda: booked(server).start != start)
        assert server.counts["GetStreamingEvents"] == 0
        quiet(service)
        service.tick()
        assert server.counts["Subscribe"] == 6  # not asked to stream at each upkeep

        # a server that offers no subscriptions at all: polled at every tick
        server.offers_subscriptions = False
        server.expire()  # the puller finds them gone; neither kind is had again
        wait_for(lambda: {v[0] for v in rows(service).values()} == {"refused"})
        quiet(service)
        before = {e: reads(server, e) for e in (ANA, BEN, CHLOE)}
        service.tick()
        assert all(reads(server, e) > before[e] for e in (ANA, BEN, CHLOE))


def test_a_burst_of_changes_is_one_reaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with exchange(tmp_path, monkeypatch) as (server, path), serving(path) as service:
        service.tick()
        wait_for(lambda: server.held == 1)
        quiet(service)
        before = reads(server, CHLOE)
        counted = _reactions(service)
        later = datetime.now(UTC) + timedelta(days=3)
        for hour in range(5):  # Chloe blocks five hours, one by one
            at = later + timedelta(hours=hour)
            server.add_event(CHLOE, f"Focus {hour}", at, at + timedelta(hours=1))
        wait_for(lambda: reads(server, CHLOE) > before)
        quiet(service)
        assert reads(server, CHLOE) == before + 1  # read once for all five
        assert _reactions(service) == counted + 1


def _reactions(service: Service) -> float:
    text = service.metrics.exposition().decode()
    for line in text.splitlines():
        if line.startswith("cadence_push_reaction_seconds_count"):
            return float(line.split()[-1])
    return 0.0


def test_a_connection_refused_for_good_leaves_its_calendars_to_the_tick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streaming, "RETRY", 0.5)  # the pause before the next connection
    with exchange(tmp_path, monkeypatch) as (server, path), serving(path) as service:
        server.fail("GetStreamingEvents", "ErrorAccessDenied")
        service.tick()
        wait_for(lambda: {v[0] for v in rows(service).values()} == {"failed"})
        assert streams(service, "failed") == 1
        old = {v[1] for v in rows(service).values()}
        quiet(service)
        before = {e: reads(server, e) for e in (ANA, BEN, CHLOE)}
        service.tick()  # read, since their subscriptions failed, and subscribed again
        assert all(reads(server, e) > before[e] for e in (ANA, BEN, CHLOE))
        assert {v[0::2] for v in rows(service).values()} == {("active", "stream")}
        assert old.isdisjoint(v[1] for v in rows(service).values())
        wait_for(lambda: server.held == 1)


def expiries(service: Service) -> dict[str, datetime]:
    store = Store(service.settings.store)
    try:
        return {o: r.channel.expires for o, r in PushRows(store).all().items()}
    finally:
        store.close()


def test_only_a_connection_the_server_holds_keeps_its_calendars_watched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection refused again and again (here: the mailbox is at its limit of open
    connections) must not keep its subscriptions alive: its calendars are then read at
    every tick once those expire, instead of looking watched while nothing is told."""
    monkeypatch.setattr(streaming, "RETRY", 0.2)  # the pause before the next connection
    monkeypatch.setattr(streaming, "LOOK", 0.1)  # and the look that opens it
    with exchange(tmp_path, monkeypatch) as (server, path), serving(path) as service:
        server.connection_limit = 0
        service.tick()
        made = expiries(service)
        time.sleep(1.1)  # the store keeps whole seconds: a later mark would show
        tried = streams(service, "failed")
        wait_for(lambda: streams(service, "failed") >= tried + 2)  # asked again, refused
        assert expiries(service) == made  # not kept alive by asking
        # refused for a while, not for good: the rows expire in their time (and the
        # tick then reads their calendars), they are not marked failed at once
        assert {v[0::2] for v in rows(service).values()} == {("active", "stream")}

        server.connection_limit = None  # a connection is let in, and held
        wait_for(lambda: server.held == 1)
        wait_for(lambda: all(expiries(service)[o] > made[o] for o in made))


def sessions(url: str) -> int:
    """How many sessions PostgreSQL has let into the database of ``url`` so far."""
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        row = conn.execute(
            "SELECT sessions FROM pg_stat_database WHERE datname = %s", [name]
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_the_streamer_keeps_one_store_for_its_life(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_at: Path | str
) -> None:
    monkeypatch.setattr(streaming, "LOOK", 0.05)  # many looks in a short while
    # no poll in the while: the streamer's looks are all that reads the store
    monkeypatch.setattr(pulling.Puller, "interval", property(lambda self: 3600.0))
    opened: list[Path | str] = []

    class Counted(Store):
        def __init__(self, path: Any = None, **kwargs: Any) -> None:
            opened.append(path)
            super().__init__(path, **kwargs)

    monkeypatch.setattr(streaming, "Store", Counted)
    looks: list[float] = []
    look = streaming.Streamer.look

    def counted(self: streaming.Streamer) -> list[streaming.Connection]:
        looks.append(time.monotonic())
        return look(self)

    monkeypatch.setattr(streaming.Streamer, "look", counted)
    with exchange(tmp_path, monkeypatch) as (server, path):
        use_store(path, store_at)
        with serving(path) as service:
            service.tick()
            wait_for(lambda: server.held == 1)  # the store the tick wrote was read
            quiet(service)
            before = sessions(store_at) if isinstance(store_at, str) else 0
            seen = len(looks)
            wait_for(lambda: len(looks) >= seen + 20)
            if isinstance(store_at, str):
                time.sleep(1.5)  # a connection that ended is counted within a second
                assert sessions(store_at) == before  # no connection made per look
            assert opened == [store_at]  # the store the service ticks on, opened once


def test_lost_subscriptions_read_the_store_once(tmp_path: Path) -> None:
    store = Store(tmp_path / "cadence.db")
    try:
        now = datetime.now(UTC)
        rows = PushRows(store)
        for owner in (ANA, BEN, CHLOE):  # each made again meanwhile: nothing to do
            rows.save(Channel(owner, "exchange", f"new-{owner}", "", "", now, ""), now)
        reads: list[str] = []

        @event.listens_for(store.db.engine, "before_cursor_execute")
        def _read(*args: Any) -> None:
            if "FROM push_channels" in args[2]:
                reads.append(args[2])

        side = SimpleNamespace(gauge=lambda rows: None)
        streamer = streaming.Streamer(side)  # type: ignore[arg-type]
        lost = {f"old-{o}": o for o in (ANA, BEN, CHLOE)}
        conn = streaming.Connection("contoso", lost, lost=[*lost, f"old-{ANA}"])
        streamer._remake(rows, conn)
        assert len(reads) == 1
    finally:
        store.close()
