"""Kill a real ``cadence run --once`` at every crash point; a restart must finish the job
without a duplicate event or mail."""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import icalendar
import pytest

from agent.demo import create_workspace
from agent.store import Store
from tests.conftest import NOW

ENV_KILL = "CADENCE_KILL_AT"


def run_once(config: Path, kill_at: int | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENCE_")}
    if kill_at is not None:
        env[ENV_KILL] = str(kill_at)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "run",
            "--once",
            "--config",
            str(config),
            "--now",
            NOW.isoformat(),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def outcome(folder: Path) -> tuple[dict[str, int], list[str], dict[str, str]]:
    keys: collections.Counter[str] = collections.Counter()
    for path in sorted((folder / "calendars").glob("*.ics")):
        cal = icalendar.Calendar.from_ical(path.read_bytes())  # still parseable
        for comp in cal.walk("VEVENT"):
            if comp.get("X-CADENCE-KEY"):
                keys[f"{path.name}:{comp['X-CADENCE-KEY']}"] += 1
    mails = sorted(p.name for p in (folder / "outbox").glob("*.eml"))
    store = Store(folder / "var" / "cadence.db")
    try:
        assert store.integrity() == "ok"
        states = {r["key"]: r["status"] for r in store.bookings()}
        states |= {r["key"]: r["status"] for r in store.outbox_rows()}
    finally:
        store.close()
    return dict(keys), mails, states


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple]:
    folder = tmp_path_factory.mktemp("reference") / "demo"
    create_workspace(folder, NOW)
    pristine = folder.with_name("pristine")
    shutil.copytree(folder, pristine)
    assert run_once(folder / "cadence.yaml").returncode == 0
    return pristine, outcome(folder)


def test_crash_at_every_point_then_restart(reference, tmp_path: Path) -> None:
    pristine, expected = reference
    keys, mails, states = expected
    assert all(v == 1 for v in keys.values()) and mails
    assert set(states.values()) == {"booked", "sent"}
    killed = 0
    n = 0
    while True:
        n += 1
        work = tmp_path / f"kill{n}"
        shutil.copytree(pristine, work)
        first = run_once(work / "cadence.yaml", kill_at=n)
        if first.returncode != -signal.SIGKILL:
            assert first.returncode == 0, first.stderr
            break  # the run passed fewer than n crash points: all were tried
        killed += 1
        restart = run_once(work / "cadence.yaml")
        assert restart.returncode == 0, restart.stderr
        got_keys, got_mails, got_states = outcome(work)
        assert got_keys == keys, f"kill point {n}: events differ"
        assert got_mails == mails, f"kill point {n}: mails differ"
        assert set(got_states) == set(states) and set(got_states.values()) == {"booked", "sent"}
        quiet = run_once(work / "cadence.yaml")
        assert "Nothing new to book or send" in quiet.stdout
        shutil.rmtree(work)
    assert killed >= 20, f"only {killed} crash points were exercised"
