"""The store as workers of the task queue share it: writers side by side, and the ticks
a killed worker left running."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.store.sqlite import Store
from agent.store.stale import interrupt_stale
from tests.queue import services

#: read, then write, many times: as a tick does (an audit row after reading the last ones)
WRITER = r"""
import sys
from datetime import UTC, datetime
from agent.store.sqlite import Store
store = Store(sys.argv[1])
for n in range(300):
    store.audit_rows(kind="assess", limit=1)
    store.audit(None, datetime.now(UTC), "assess", f"{sys.argv[2]} {n}")
store.close()
"""


def test_processes_that_read_then_write_wait_for_each_other(tmp_path: Path) -> None:
    path = tmp_path / "cadence.db"
    Store(path).close()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(path), f"w{i}"],
            env=services.environ(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], errors
    store = Store(path)
    try:
        assert len(store.audit_rows(kind="assess", limit=5000)) == 1200
    finally:
        store.close()


def test_only_old_running_ticks_are_marked_interrupted(tmp_path: Path) -> None:
    store = Store(tmp_path / "cadence.db")
    now = datetime.now(UTC)
    try:
        old = store.begin_tick(now, now - timedelta(hours=1))
        young = store.begin_tick(now, now - timedelta(minutes=1))
        done = store.begin_tick(now, now - timedelta(hours=2))
        store.end_tick(done, "ok", {}, now)
        found = interrupt_stale(store, now - timedelta(minutes=30))
        assert [r["id"] for r in found] == [old]
        status = {t["id"]: t["status"] for t in store.ticks()}
        assert status == {old: "interrupted", young: "running", done: "ok"}
    finally:
        store.close()
