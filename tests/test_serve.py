from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.store.broken import StoreError
from agent.store.sqlite import Store


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_ticks_at_start_and_stops_cleanly(workspace: Path, sig: signal.Signals) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENCE_")}
    # no health endpoint: the default port may be taken on a shared machine
    workspace.write_text(workspace.read_text() + "\nservice:\n  port: 0\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.app.cli", "serve", "--config", str(workspace)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    db = workspace.parent / "var" / "cadence.db"
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            if db.exists():
                try:
                    store = Store(db)
                except (sqlite3.OperationalError, StoreError):  # serve is still creating the schema
                    time.sleep(0.2)
                    continue
                last = store.last_tick()
                store.close()
                if last and last["finished_at"]:
                    break
            time.sleep(0.2)
        else:
            raise AssertionError("no tick finished")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "stopped" in err
    assert last["status"] == "ok"
    assert list((workspace.parent / "outbox").glob("*.eml"))


@pytest.mark.slow
def test_sigterm_mid_tick_finishes_the_tick_and_a_restart_is_quiet(
    workspace: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "paused"
    workspace.write_text(workspace.read_text() + "\nservice:\n  port: 0\n")  # no endpoint
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENCE_")}
    env |= {
        "CADENCE_PAUSE_AT": "10",
        "CADENCE_PAUSE_FILE": str(marker),
        "CADENCE_PAUSE_SECONDS": "2",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.app.cli", "serve", "--config", str(workspace)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 150
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the tick never reached the pause point"
        proc.send_signal(signal.SIGTERM)  # in the middle of the tick, at a booking
        _, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    store = Store(workspace.parent / "var" / "cadence.db")
    last = store.last_tick()
    statuses = {r.status for r in store.bookings()} | {r["status"] for r in store.outbox_rows()}
    store.close()
    assert last is not None and last["status"] == "ok" and last["finished_at"]
    assert statuses <= {"booked", "sent"}
    again = subprocess.run(
        [sys.executable, "-m", "agent.app.cli", "run", "--once", "--config", str(workspace)],
        env={k: v for k, v in os.environ.items() if not k.startswith("CADENCE_")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 0 and "Nothing new to book or send" in again.stdout, again.stdout
