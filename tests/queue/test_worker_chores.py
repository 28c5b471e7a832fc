"""Real ``cadence worker`` processes: the guard counts across a round, and the chores
delete old tick rows (``retention:``)."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.store.sqlite import Store
from tests.queue.test_worker import run_round, workspace


def rows(folder: Path, sql: str) -> list[tuple[object, ...]]:
    db = sqlite3.connect(folder / "var" / "cadence.db")
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def test_a_round_past_the_guard_holds_its_later_units(name: str, tmp_path: Path) -> None:
    # the demo's round: ben's unit 7 bookings and mails, chloe's 2, emma's 1; each within
    # 8, the round (10) past it
    folder = tmp_path / "guarded"
    path = workspace(folder, name)
    path.write_text(path.read_text() + "guard: {max_actions: 8}\n")
    run_round(folder, name, tmp_path)
    statuses = [r[0] for r in rows(folder, "SELECT status FROM ticks ORDER BY id")]
    assert statuses.count("held") >= 1, statuses
    ((tally,),) = rows(folder, "SELECT actions FROM guard_rounds")
    assert 0 < int(str(tally)) <= 8
    acted = rows(folder, "SELECT count(*) FROM bookings WHERE status = 'booked'")[0][0]
    sent = rows(folder, "SELECT count(*) FROM outbox WHERE status = 'sent'")[0][0]
    assert int(str(acted)) + int(str(sent)) <= 8
    ((hold,),) = rows(folder, "SELECT value FROM meta WHERE name = 'guard_hold'")
    assert "more than guard.max_actions (8)" in json.loads(str(hold))["reason"]


def test_the_chores_delete_old_tick_rows(name: str, tmp_path: Path) -> None:
    folder = tmp_path / "kept"
    path = workspace(folder, name)
    path.write_text(path.read_text() + "retention: {ticks: 30d}\n")
    store = Store(folder / "var" / "cadence.db")
    try:
        long_ago = datetime.now(UTC) - timedelta(days=45)
        old = store.begin_tick(long_ago, long_ago)
        # interrupted: finished, but not among the round's ticks ``run_round`` waits for
        store.end_tick(old, "interrupted", {}, long_ago)
        store.audit(old, long_ago, "assess", "long ago")
    finally:
        store.close()
    run_round(folder, name, tmp_path)
    ids = {r[0] for r in rows(folder, "SELECT id FROM ticks")}
    assert old not in ids and len(ids) >= 4
    assert not rows(folder, f"SELECT id FROM audit WHERE tick = {old}")
