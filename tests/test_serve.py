from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent.store import Store


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_ticks_at_start_and_stops_cleanly(workspace: Path, sig: signal.Signals) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENCE_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.cli", "serve", "--config", str(workspace)],
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
                store = Store(db)
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
