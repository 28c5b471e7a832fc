"""Kill a real ``cadence run --once`` at every crash point; a restart must finish the job
without a duplicate event or mail."""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import icalendar
import pytest

from agent.demo import create_workspace
from agent.store import Store
from tests.conftest import NOW

ENV_KILL = "CADENCE_KILL_AT"


def run_once(
    config: Path, kill_at: int | None = None, now: datetime = NOW
) -> subprocess.CompletedProcess[str]:
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
            now.isoformat(),
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


def crash_everywhere(pristine: Path, expected: tuple, work: Path, now: datetime) -> int:
    """Kill a tick at each crash point in turn; return how many points there were."""
    keys, mails, states = expected
    killed = 0
    n = 0
    while True:
        n += 1
        target = work / f"kill{n}"
        shutil.copytree(pristine, target)
        first = run_once(target / "cadence.yaml", kill_at=n, now=now)
        if first.returncode != -signal.SIGKILL:
            assert first.returncode == 0, first.stderr
            return killed
        killed += 1
        restart = run_once(target / "cadence.yaml", now=now)
        assert restart.returncode == 0, restart.stderr
        got_keys, got_mails, got_states = outcome(target)
        assert got_keys == keys, f"kill point {n}: events differ"
        assert got_mails == mails, f"kill point {n}: mails differ"
        assert got_states == states, f"kill point {n}: store differs"
        quiet = run_once(target / "cadence.yaml", now=now)
        assert "Nothing new to book or send" in quiet.stdout, f"kill point {n}: {quiet.stdout}"
        shutil.rmtree(target)


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
    killed = crash_everywhere(pristine, expected, tmp_path, NOW)
    print(f"kill points (first tick): {killed}")
    assert killed >= 20, f"only {killed} crash points were exercised"


def _decline(folder: Path, who: str, title: str) -> None:
    for path in (folder / "calendars").glob("*.ics"):
        cal = icalendar.Calendar.from_ical(path.read_bytes())
        for comp in cal.walk("VEVENT"):
            if comp.get("X-CADENCE-KEY") and str(comp.get("SUMMARY")) == title:
                attendees = comp.get("ATTENDEE")
                for a in attendees if isinstance(attendees, list) else [attendees]:
                    if str(a).lower() == f"mailto:{who}":
                        a.params["PARTSTAT"] = "DECLINED"
        path.write_bytes(cal.to_ical())


def test_crash_while_moving_a_declined_meeting(reference, tmp_path: Path) -> None:
    """Day two: Ben declines a booked deep dive; the agent moves it and mails an updated
    invitation. Kill that tick at every point too."""
    pristine, _ = reference
    day_two = tmp_path / "day-two"
    shutil.copytree(pristine, day_two)
    assert run_once(day_two / "cadence.yaml").returncode == 0
    _decline(day_two, "ben@acme.example", "Development Amplify: Ana & Ben")
    later = NOW + timedelta(hours=1)
    settled = tmp_path / "settled"
    shutil.copytree(day_two, settled)
    result = run_once(settled / "cadence.yaml", now=later)
    assert result.returncode == 0 and "moved" in result.stdout, result.stdout
    expected = outcome(settled)
    assert any("invite1" in m for m in expected[1])
    killed = crash_everywhere(day_two, expected, tmp_path, later)
    print(f"kill points (moving a declined meeting): {killed}")
    assert killed >= 10, f"only {killed} crash points were exercised"
