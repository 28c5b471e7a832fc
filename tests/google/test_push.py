"""Push from the fake Google to a running service: channels opened by the tick, a decline
answered by a move within the debounce window, forged notifications refused, bursts
debounced, expired channels renewed, missed changes caught by the safety-net poll, and
channels picked up again after a restart."""

from __future__ import annotations

import re
import socket
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from typer.testing import CliRunner

from agent.app.cli import app
from agent.app.service import Service
from agent.store.push import PushRows
from agent.store.sqlite import Store
from agent.tick import metrics as metrics_mod
from agent.tick.engine import Engine
from agent.tick.push import quiet
from tests.google.harness import PROGRAMS, Workspace, workspace

ANA, BEN, CHLOE = "ana@acme.example", "ben@acme.example", "chloe@acme.example"
#: Chloe is led by Ben too: her relationship is in Ben's unit, her calendar is not Ben's
RELATIONSHIPS = PROGRAMS.replace(
    "relationships:\n",
    "relationships:\n"
    "  - {employee: chloe@acme.example, partner: ben@acme.example, role: leader,"
    " program: leader-cycle}\n",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def push_yaml(port: int, extra: str = "") -> str:
    return (
        f"service: {{host: 127.0.0.1, port: {port}}}\n"
        f"push:\n  public_url: http://127.0.0.1:{port}/push\n  debounce: 1s\n{extra}"
    )


@contextmanager
def serving(ws: Workspace) -> Iterator[Service]:
    service = Service(ws.settings)
    assert service.push is not None
    service.push.start()
    service.start_http()
    try:
        yield service
    finally:
        service.stop_http()
        service.push.stop()
        metrics_mod.deactivate()


@contextmanager
def pushed(tmp_path: Path, extra: str = "") -> Iterator[tuple[Workspace, int]]:
    port = free_port()
    with workspace(tmp_path, rest=RELATIONSHIPS + push_yaml(port, extra)) as ws:
        now = datetime.now(UTC)
        held = now - timedelta(days=120)
        for employee in (ANA, CHLOE):
            ws.server.add_event(
                employee, "Development Align", held, held + timedelta(hours=1), [BEN]
            )
        yield ws, port


def wait_for(check: Callable[[], bool], seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def lists_of(ws: Workspace, email: str) -> int:
    with ws.server.state.lock:
        wanted = f"/calendars/{urllib.parse.quote(email)}/events?"
        return sum(
            1
            for line in ws.server.state.log
            if line.startswith("GET ")
            and wanted in line.replace("@", "%40")
            and "ExtendedProperty" not in line
        )


def anas_booking(ws: Workspace) -> dict:
    with ws.server.state.lock:
        return next(
            e
            for e in ws.server.state.calendars[ANA].events.values()
            if e.get("status") != "cancelled" and "cadenceKey" in str(e.get("extendedProperties"))
        )


def test_a_decline_is_answered_by_a_move_syncing_only_the_notified_calendars(
    tmp_path: Path,
) -> None:
    with pushed(tmp_path) as (ws, _), serving(ws) as service:
        srv = ws.server
        service.tick()
        # the tick opened one channel per calendar; Google's "sync" messages were answered
        for email in (ANA, BEN, CHLOE):
            assert len(srv.state.push.on(email)) == 1
        srv.state.push.drain()
        assert {state for _, state, status in srv.state.push.delivered if status == 200} == {"sync"}
        booking = anas_booking(ws)
        chloe_lists = lists_of(ws, CHLOE)
        assert chloe_lists == 1  # the first tick read her calendar

        declined_at = time.monotonic()
        srv.calendar.respond(BEN, booking["id"], "declined")
        wait_for(lambda: anas_booking(ws)["start"] != booking["start"])
        reacted = time.monotonic() - declined_at
        assert reacted < 10  # the debounce (1 s) and one focused tick

        moved = anas_booking(ws)
        assert moved["id"] == booking["id"]  # the same event, moved
        assert lists_of(ws, CHLOE) == chloe_lists  # Chloe's calendar was not read

        def audited() -> bool:
            store = Store(ws.settings.store)
            try:
                rows = store.audit_rows(kind="move", limit=10)
            finally:
                store.close()
            return any("declined by ben@acme.example" in r["message"] for r in rows)

        # the reaction's tick records the move after making it: on a loaded machine the
        # event can be seen moved before the row is written
        wait_for(audited)
        text = service.metrics.exposition().decode()
        assert 'cadence_push_notifications_total{provider="google",result="accepted"}' in text
        assert 'cadence_push_channels{state="active"} 3.0' in text
        assert "cadence_push_reaction_seconds_count" in text
        # cadence status shows each person's channel
        shown = CliRunner().invoke(app, ["status", "--config", str(ws.path)]).output
        for email in (ANA, BEN, CHLOE):
            assert re.search(rf"{re.escape(email)}\s+active\s+20", shown), shown


def test_a_burst_gives_one_sync_and_forged_notifications_do_nothing(tmp_path: Path) -> None:
    with pushed(tmp_path) as (ws, _), serving(ws) as service:
        srv = ws.server
        service.tick()
        srv.state.push.drain()
        (channel,) = srv.state.push.on(CHLOE)
        before = lists_of(ws, CHLOE)
        # a forged token, a wrong resource, an unknown channel: refused, nothing read
        assert srv.state.push.forge(channel, **{"X-Goog-Channel-Token": "guess"}) == 403
        assert srv.state.push.forge(channel, **{"X-Goog-Resource-ID": "other"}) == 403
        assert srv.state.push.forge(channel, **{"X-Goog-Channel-ID": "nope"}) == 403
        time.sleep(1.5)
        assert lists_of(ws, CHLOE) == before
        text = service.metrics.exposition().decode()
        assert 'cadence_push_notifications_total{provider="google",result="rejected"} 3.0' in text

        # ten changes in a second: one sync of Chloe's calendar
        now = datetime.now(UTC) + timedelta(days=40)
        for n in range(10):
            start = now + timedelta(hours=n)
            srv.add_event(CHLOE, f"Busy {n}", start, start + timedelta(minutes=30))
        srv.state.push.drain()
        wait_for(lambda: lists_of(ws, CHLOE) > before)
        time.sleep(1.5)  # anything still queued would have run by now
        assert lists_of(ws, CHLOE) == before + 1


def test_only_its_own_paths_and_small_bodies(tmp_path: Path) -> None:
    with pushed(tmp_path) as (ws, port), serving(ws):
        base = f"http://127.0.0.1:{port}"

        def post(path: str, body: bytes) -> int:
            request = urllib.request.Request(base + path, data=body, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    return int(answer.status)
            except urllib.error.HTTPError as exc:
                return int(exc.code)

        assert post("/push/other", b"") == 404
        assert post("/push/google", b"x" * 100_000) == 413
        assert post("/push/google", b"") == 403  # no channel headers


def test_expired_channel_renewed_missed_change_polled_and_restart_reuses_channels(
    tmp_path: Path,
) -> None:
    with pushed(tmp_path, "  poll: 1h\n  renew_before: 1d\n") as (ws, _):
        srv = ws.server
        with serving(ws) as service:
            service.tick()
            first = {e: srv.state.push.on(e)[0].id for e in (ANA, BEN, CHLOE)}
            # Google grants a week; within renew_before of its end a tick renews it
            store = Store(ws.settings.store)
            try:
                now = datetime.now(UTC)
                assert quiet(ws.settings, store, now) == {ANA, BEN, CHLOE}
                srv.state.push.expire(BEN)
                # a day before the end: renewed (new channel, old one stopped)
                with Engine(ws.settings) as engine:
                    assert service.push is not None
                    service.push.upkeep(engine, now + timedelta(days=6, hours=1))
                (renewed,) = srv.state.push.on(BEN)
                assert renewed.id != first[BEN]
                assert PushRows(store).all()[BEN].channel.id == renewed.id
                # a channel past its end (the service was down): a new one is opened
                watches = srv.state.counts["calendar.events.watch"]
                with Engine(ws.settings) as engine:
                    service.push.upkeep(engine, now + timedelta(days=8))
                assert srv.state.counts["calendar.events.watch"] == watches + 3
                assert PushRows(store).all()[BEN].channel.id != renewed.id
                # an hour later the poll is due again: the safety net reads every calendar
                assert quiet(ws.settings, store, now + timedelta(hours=2)) == frozenset()
            finally:
                store.close()

            # a change whose notification is lost: the next poll finds it
            srv.state.push.paused = True
            start = datetime.now(UTC) + timedelta(days=3)
            srv.add_event(CHLOE, "Missed", start, start + timedelta(hours=1))
            before = lists_of(ws, CHLOE)
            with Engine(ws.settings) as engine:
                report = engine.tick(datetime.now(UTC) + timedelta(hours=2))
            assert report.ok and lists_of(ws, CHLOE) == before + 1
            srv.state.push.paused = False

        # a restart: the channels still live are picked up, not opened again
        opened = srv.state.counts["calendar.events.watch"]
        with serving(ws) as again:
            again.tick()
            srv.state.push.drain()
            assert srv.state.counts["calendar.events.watch"] == opened
            booking = anas_booking(ws)
            srv.calendar.respond(BEN, booking["id"], "declined")
            wait_for(lambda: anas_booking(ws)["start"] != booking["start"])


def test_a_leaver_s_channel_is_stopped(tmp_path: Path) -> None:
    with pushed(tmp_path) as (ws, _), serving(ws) as service:
        service.tick()
        (channel,) = ws.server.state.push.on(CHLOE)
        ws.path.write_text(
            ws.path.read_text().replace(
                "  - {employee: chloe@acme.example, partner: ben@acme.example, role: leader,"
                " program: leader-cycle}\n",
                "",
            )
        )
        from agent.settings import config

        service.settings = config.load(ws.path)
        service.tick()
        assert ws.server.state.push.on(CHLOE) == []
        assert ws.server.state.counts["calendar.channels.stop"] == 1
        assert channel.id not in {c.id for c in ws.server.state.push.by_id.values()}


def test_a_new_public_url_moves_every_channel(tmp_path: Path) -> None:
    with pushed(tmp_path) as (ws, port), serving(ws) as service:
        service.tick()
        old = {c.id for e in (ANA, BEN, CHLOE) for c in ws.server.state.push.on(e)}
        moved = f"http://localhost:{port}/push"
        ws.path.write_text(ws.path.read_text().replace(f"http://127.0.0.1:{port}/push", moved))
        from agent.settings import config

        service.settings = config.load(ws.path)
        service.tick()
        for email in (ANA, BEN, CHLOE):
            (channel,) = ws.server.state.push.on(email)  # the old one was stopped
            assert channel.id not in old and channel.address == moved + "/google"
        assert ws.server.state.counts["calendar.channels.stop"] == 3
        # and the new address is the one that gets notified, and heard
        booking = anas_booking(ws)
        ws.server.calendar.respond(BEN, booking["id"], "declined")
        wait_for(lambda: anas_booking(ws)["start"] != booking["start"])
