"""Claims: the first record of a booking or mail holds its key, so that two processes
racing on one booking make one event and send one mail, on SQLite and on PostgreSQL."""

from __future__ import annotations

import multiprocessing
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.store.claims import Claimed
from agent.store.sqlite import Store

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def booking(key: str) -> dict[str, str]:
    return {"key": key, "relationship": "a/b", "series": "dd", "status": "pending"}


def mail(key: str) -> dict[str, str]:
    return {"key": key, "meeting": "m", "kind": "agenda", "status": "pending"}


def test_two_connections_racing_on_one_key_one_wins(store_at: Path | str) -> None:
    stores = [Store(store_at), Store(store_at)]
    try:
        for round_ in range(10):
            barrier = threading.Barrier(2)
            won: list[int] = []
            lost: list[int] = []

            def race(
                i: int, key: str, barrier: threading.Barrier, won: list[int], lost: list[int]
            ) -> None:
                barrier.wait()
                try:
                    stores[i].claim_booking(booking(key), NOW)
                    won.append(i)
                except Claimed:
                    lost.append(i)

            threads = [
                threading.Thread(target=race, args=(i, f"k{round_}", barrier, won, lost))
                for i in (0, 1)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert len(won) == 1 and len(lost) == 1, (won, lost)
            # the winner makes the event; the loser, planning from before, never does
            stores[won[0]].save_booking({"key": f"k{round_}", "status": "booked"}, NOW)
            with pytest.raises(Claimed, match="booked already"):
                stores[lost[0]].claim_booking(booking(f"k{round_}"), NOW)
    finally:
        for s in stores:
            s.close()


def test_a_mail_claim_keeps_a_sending_row_and_refuses_another_process(
    store_at: Path | str,
) -> None:
    one, two = Store(store_at), Store(store_at)
    try:
        one.claim_outbox(mail("m1"), NOW)
        one.save_outbox({"key": "m1", "status": "sending"}, NOW)
        with pytest.raises(Claimed, match="another process"):
            two.claim_outbox(mail("m1"), NOW)
        one.claim_outbox(mail("m1"), NOW)  # its own claim, again: fine
        assert one.outbox("m1")["status"] == "sending"  # type: ignore[index]
        one.save_outbox({"key": "m1", "status": "sent"}, NOW)
        with pytest.raises(Claimed, match="sent already"):
            two.claim_outbox(mail("m1"), NOW)
    finally:
        one.close()
        two.close()


def test_a_dead_processs_claim_ends_with_its_lease_or_the_next_locked_tick(
    store_at: Path | str,
) -> None:
    dead, next_ = Store(store_at), Store(store_at)
    try:
        dead.claim_booking(booking("k1"), NOW)
        dead.claim_booking(booking("k2"), NOW)
        with pytest.raises(Claimed):
            next_.claim_booking(booking("k1"), NOW)
        # the lease ran out: the process that held it is gone
        past = (datetime.now(UTC) - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        next_.db.execute("UPDATE bookings SET claimed_until = ? WHERE key = 'k1'", [past])
        next_.claim_booking(booking("k1"), NOW)
        # a tick holding the tick lock ends every claim
        next_.interrupt_running()
        next_.claim_booking(booking("k2"), NOW)
    finally:
        dead.close()
        next_.close()


def _worker(url: str, keys: list[str], log: str, start: multiprocessing.synchronize.Event) -> None:
    """One process: claim each booking, "make its event" (a line in the log), then
    claim and "send" its mail; skip what another process holds."""
    store = Store(url)
    start.wait()
    for key in keys:
        try:
            store.claim_booking(booking(key), NOW)
        except Claimed:
            continue
        with open(log, "a", encoding="utf-8") as out:
            out.write(f"event {key}\n")
        store.save_booking({"key": key, "status": "booked"}, NOW)
        try:
            store.claim_outbox(mail(f"{key}:agenda"), NOW)
        except Claimed:
            continue
        with open(log, "a", encoding="utf-8") as out:
            out.write(f"mail {key}\n")
        store.save_outbox({"key": f"{key}:agenda", "status": "sent"}, NOW)
    store.close()


def test_two_processes_racing_on_postgresql_make_one_event_and_one_mail(
    postgres: str, tmp_path: Path
) -> None:
    Store(postgres).close()  # made before, so neither process migrates
    keys = [f"a/b/dd/{n}" for n in range(40)]
    log = tmp_path / "effects.log"
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    workers = [
        context.Process(target=_worker, args=(postgres, keys, str(log), start)) for _ in range(3)
    ]
    for w in workers:
        w.start()
    start.set()
    for w in workers:
        w.join(120)
        assert w.exitcode == 0
    lines = log.read_text(encoding="utf-8").splitlines()
    assert sorted(lines) == sorted([f"event {k}" for k in keys] + [f"mail {k}" for k in keys])


def test_the_tick_lock_on_postgresql_is_one_holder_and_dies_with_it(postgres: str) -> None:
    import signal
    import subprocess
    import sys
    import time

    from agent.app.lock import Busy, TickLock

    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom agent.app.lock import TickLock\n"
         f"lock = TickLock({postgres!r})\nlock.acquire()\nprint('held', flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(Busy, match="server pid"):
            TickLock(postgres).acquire()
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        time.sleep(0.2)
        with TickLock(postgres, wait=10), pytest.raises(Busy):
            TickLock(postgres).acquire()
        with TickLock(postgres):
            pass
    finally:
        holder.kill()
        holder.wait(10)
        if holder.stdout is not None:
            holder.stdout.close()


def _keys_on_calendars(folder: Path) -> list[str]:
    import icalendar

    found = []
    for path in sorted((folder / "calendars").glob("*.ics")):
        for comp in icalendar.Calendar.from_ical(path.read_bytes()).walk("VEVENT"):
            if comp.get("X-CADENCE-KEY"):
                found.append(str(comp["X-CADENCE-KEY"]))
    return found


def test_a_tick_leaves_a_booking_another_process_holds_to_it(
    workspace: Path, store_at: Path | str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The executor's first record is the claim: a tick that finds the key held books
    nothing for it and sends none of its mail; once the holder is gone, a tick with the
    tick lock takes it up."""
    from agent.settings import config
    from agent.tick.engine import Engine
    from tests.conftest import NOW as TICK
    from tests.stores import use_store

    use_store(workspace, store_at)
    settings = config.load(workspace)
    with Engine(settings) as engine:
        planned = [a for a in engine.tick(TICK, dry_run=True).actions if a.kind == "book"]
    assert len(planned) >= 2
    held = planned[0]
    other = Store(settings.store_at)
    try:
        row = {"key": held.data["key"], "relationship": held.relationship,
               "series": held.series, "status": "pending"}  # fmt: skip
        other.claim_booking(row, TICK)
        # a process that does not hold the tick lock (a worker) ends no claims
        monkeypatch.setattr(Store, "release_claims", lambda self: None)
        with Engine(settings) as engine:
            report = engine.tick(TICK)
        assert report.ok, report.errors
        assert report.count("book") == len(planned) - 1
        deferred = [a for a in report.actions if a.outcome == "deferred"]
        assert [a.kind for a in deferred] == ["book"] and "another process" in deferred[0].detail
        assert held.data["key"] not in _keys_on_calendars(workspace.parent)
        assert other.outbox_rows(held.data["key"]) == []
        monkeypatch.undo()
    finally:
        other.close()
    # the holder died; the next tick holds the tick lock and takes the booking up
    with Engine(settings) as engine:
        report = engine.tick(TICK)
    assert report.count("book") == 1
    keys = _keys_on_calendars(workspace.parent)
    assert keys.count(held.data["key"]) >= 1 and len(set(keys)) == len(planned)
