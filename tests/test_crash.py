"""Kill a real ``cadence run --once`` at every crash point of a tick (``CRASH_ALL=1``; by
default at a fixed third of them); a restart must finish the job without a duplicate
event or mail.

Each scenario is one test in :data:`PARTS` parts, each killing every PARTS-th of the
chosen points against its own uninterrupted reference tick, so that parallel workers
share a scenario; every part checks the whole scenario's spread of points."""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import icalendar
import pytest

from agent.app.demo import create_workspace, write_reply
from agent.settings import config as config_mod
from agent.store.sqlite import Store
from tests.conftest import NOW
from tests.stores import fresh_database, use_store

ENV_KILL = "CADENCE_KILL_AT"
#: how many tests each crash scenario is split into (the chosen points dealt out in turn)
PARTS = 3

pytestmark = pytest.mark.slow


def run_once(
    config: Path,
    kill_at: int | None = None,
    now: datetime = NOW,
    extra: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENCE_")}
    if kill_at is not None:
        env[ENV_KILL] = str(kill_at)
    env |= extra or {}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "agent.app.cli",
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
    store = Store(config_mod.load(folder / "cadence.yaml").store_at)
    try:
        assert store.integrity() == "ok"
        states = {r.key: r.status for r in store.bookings()}
        states |= {r["key"]: r["status"] for r in store.outbox_rows()}
        states |= {r["message_id"]: r["status"] for r in store.replies()}
        for employee in {r["employee"] for r in store.replies() if r["employee"]}:
            states |= {f"{employee}:{a['norm']}": a["status"] for a in store.actions(employee)}
    finally:
        store.close()
    return dict(keys), mails, states


def chosen(total: int) -> list[int]:
    """Which of a tick's ``total`` crash points to kill at: all of them with
    ``CRASH_ALL=1`` (``make crash``), else the first, the last and every third, a fixed
    spread that keeps ``make test`` short."""
    if os.environ.get("CRASH_ALL") == "1":
        return list(range(1, total + 1))
    return sorted({1, total, *range(1, total + 1, 3)})


def area(point: str) -> str:
    """Where a crash point is: sync, booking (book, move, the calendar writes) or sending
    (mails and the replies that lead to one)."""
    if point.startswith("sync:"):
        return "sync"
    if point.startswith(("mail:", "reply:")):
        return "sending"
    return "booking"


def tally(killed: list[str]) -> str:
    """``12 (sync 6, booking 3, sending 3)``: the figures the crash tests print."""
    areas = collections.Counter(area(p) for p in killed)
    parts = ", ".join(f"{a} {areas[a]}" for a in ("sync", "booking", "sending"))
    return f"{len(killed)} ({parts})"


def traced(config: Path, trace: Path, now: datetime = NOW) -> list[str]:
    """Run an uninterrupted tick that lists the crash points it passes, in order."""
    env = {ENV_KILL: str(10**9), "CADENCE_KILL_TRACE": str(trace)}
    result = run_once(config, now=now, extra=env)
    assert result.returncode == 0, result.stderr
    return trace.read_text().splitlines() if trace.exists() else []


def crash_everywhere(
    pristine: Path,
    work: Path,
    now: datetime,
    part: int,
    fresh: Callable[[Path], None] | None = None,
) -> list[str]:
    """Kill a tick at its crash points in turn (see ``chosen``; of those, the ``part``-th
    of every :data:`PARTS`), restart each, and compare with the uninterrupted tick.
    Return the names of all the chosen points: the parts together kill at each of them.
    ``fresh`` gives each copy of the workspace a store of its own (a database)."""
    reference = work / "reference"
    shutil.copytree(pristine, reference)
    if fresh is not None:
        fresh(reference / "cadence.yaml")
    points = traced(reference / "cadence.yaml", work / "trace.txt", now)
    keys, mails, states = outcome(reference)
    assert all(v == 1 for v in keys.values())
    planned = chosen(len(points))
    for n in planned[part::PARTS]:
        target = work / f"kill{n}"
        shutil.copytree(pristine, target)
        if fresh is not None:
            fresh(target / "cadence.yaml")
        first = run_once(target / "cadence.yaml", kill_at=n, now=now)
        assert first.returncode == -signal.SIGKILL, f"point {n} ({points[n - 1]}) not reached"
        where = f"kill point {n} ({points[n - 1]})"
        restart = run_once(target / "cadence.yaml", now=now)
        assert restart.returncode == 0, restart.stderr
        got = outcome(target)
        assert got[0] == keys, f"{where}: events differ"
        assert got[1] == mails, f"{where}: mails differ"
        assert got[2] == states, f"{where}: store differs"
        quiet = run_once(target / "cadence.yaml", now=now)
        assert "Nothing new to book or send" in quiet.stdout, f"{where}: {quiet.stdout}"
        shutil.rmtree(target)
    return [points[n - 1] for n in planned]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo workspace before its first tick."""
    folder = tmp_path_factory.mktemp("pristine") / "demo"
    create_workspace(folder, NOW)
    return folder


@pytest.fixture(scope="module")
def day_two(pristine: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo workspace after its first tick."""
    folder = tmp_path_factory.mktemp("day-two") / "demo"
    shutil.copytree(pristine, folder)
    assert run_once(folder / "cadence.yaml").returncode == 0
    return folder


@pytest.mark.parametrize("part", range(PARTS))
def test_crash_at_every_point_then_restart(pristine: Path, tmp_path: Path, part: int) -> None:
    """The demo's first tick: six calendars read, four bookings with their invitations,
    an agenda and a recap."""
    killed = crash_everywhere(pristine, tmp_path, NOW, part)
    if part == 0:  # the figures of the whole scenario, once
        print(f"kill points (first tick): {tally(killed)}")
    assert {area(p) for p in killed} == {"sync", "booking", "sending"}
    assert len(killed) >= (35 if os.environ.get("CRASH_ALL") == "1" else 12)


@pytest.mark.parametrize("part", range(PARTS))
def test_crash_at_every_point_then_restart_on_postgresql(
    pristine: Path, tmp_path: Path, part: int
) -> None:
    """The same first tick, killed at the same points, on a PostgreSQL store: a new
    database for each run."""
    with contextlib.ExitStack() as stack:

        def fresh(config_file: Path) -> None:
            use_store(config_file, stack.enter_context(fresh_database()))

        killed = crash_everywhere(pristine, tmp_path, NOW, part, fresh)
    assert {area(p) for p in killed} == {"sync", "booking", "sending"}


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


def _append(folder: Path, who: str, block: str) -> None:
    path = folder / "calendars" / f"{who}.ics"
    text = path.read_text()
    path.write_text(text.replace("END:VCALENDAR", block + "END:VCALENDAR", 1))


def _scenario(day_two: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "scenario"
    shutil.copytree(day_two, folder)
    return folder


@pytest.mark.parametrize("part", range(PARTS))
def test_crash_while_moving_a_declined_meeting(day_two: Path, tmp_path: Path, part: int) -> None:
    """Ben declines a booked deep dive; the agent moves it and mails an updated
    invitation."""
    folder = _scenario(day_two, tmp_path)
    _decline(folder, "ben@acme.example", "Conversa de desenvolvimento Amplify: Ana & Ben")
    later = NOW + timedelta(hours=1)
    killed = crash_everywhere(folder, tmp_path, later, part)
    assert any("invite1" in m for m in outcome(tmp_path / "reference")[1])
    if part == 0:  # the figures of the whole scenario, once
        print(f"kill points (moving a declined meeting): {tally(killed)}")
    assert "move:before" in killed or os.environ.get("CRASH_ALL") != "1"
    assert len(killed) >= (12 if os.environ.get("CRASH_ALL") == "1" else 4)


@pytest.mark.parametrize("part", range(PARTS))
def test_crash_while_moving_a_meeting_out_of_a_new_absence(
    day_two: Path, tmp_path: Path, part: int
) -> None:
    """Ben puts an all-day out-of-office on the day of Dev's booked check-in; the review
    finds the conflict, moves the meeting and mails the updated invitation."""
    folder = _scenario(day_two, tmp_path)
    _append(
        folder,
        "ben@acme.example",
        "BEGIN:VEVENT\r\nUID:ben-away@acme.example\r\nDTSTAMP:20261123T150000Z\r\n"
        "DTSTART;VALUE=DATE:20261202\r\nDTEND;VALUE=DATE:20261203\r\n"
        "SUMMARY:Away\r\nX-MICROSOFT-CDO-BUSYSTATUS:OOF\r\nEND:VEVENT\r\n",
    )
    later = NOW + timedelta(hours=2)
    killed = crash_everywhere(folder, tmp_path, later, part)
    reference = tmp_path / "reference"
    store = Store(reference / "var" / "cadence.db")
    try:
        moves = store.audit_rows(kind="move")
    finally:
        store.close()
    assert [r["relationship"] for r in moves] == ["dev@acme.example/ben@acme.example"]
    assert any("invite1" in m for m in outcome(reference)[1])
    if part == 0:  # the figures of the whole scenario, once
        print(f"kill points (moving a meeting out of a new absence): {tally(killed)}")
    assert len(killed) >= (12 if os.environ.get("CRASH_ALL") == "1" else 4)


@pytest.mark.parametrize("part", range(PARTS))
def test_crash_while_sending_recaps_and_recording_a_reply(
    day_two: Path, tmp_path: Path, part: int
) -> None:
    """Four days on: the meetings booked on the first day were held and are owed recaps,
    and Emma's reply to her recap waits in the inbox: it is recorded once, her actions
    change once, and the updated recap goes to Ben once."""
    folder = _scenario(day_two, tmp_path)
    recap = next((folder / "outbox").glob("*-recap.eml"))
    later = NOW + timedelta(days=4, hours=5)
    write_reply(folder / "inbox", recap, later - timedelta(hours=1))
    killed = crash_everywhere(folder, tmp_path, later, part)
    _, mails, states = outcome(tmp_path / "reference")
    assert sum(m.endswith("-recap.eml") for m in mails) >= 2
    assert any("-update-" in m for m in mails)
    assert "recorded" in states.values()
    if part == 0:  # the figures of the whole scenario, once
        print(f"kill points (recaps and a reply): {tally(killed)}")
    assert "reply:recorded" in killed or os.environ.get("CRASH_ALL") != "1"
    assert len(killed) >= (15 if os.environ.get("CRASH_ALL") == "1" else 5)


@pytest.mark.parametrize("part", range(PARTS))
def test_crash_while_handing_over_after_a_manager_change(
    day_two: Path, tmp_path: Path, part: int
) -> None:
    """Hugo joined Chloe's team (an Align booked), then HR moves him to Ben: the agent
    cancels the Align, tells Hugo and Chloe, and sends Ben the hand-over."""
    from agent.app import demo_directory
    from agent.settings import config
    from agent.tick import directory

    folder = _scenario(day_two, tmp_path)
    settings = config.load(folder / "cadence.yaml")
    store = Store(settings.store)
    try:
        directory.sync(settings, store, NOW - timedelta(days=20))
    finally:
        store.close()
    assert run_once(folder / "cadence.yaml", now=NOW + timedelta(minutes=30)).returncode == 0
    demo_directory.write_export(folder, demo_directory.MOVED)
    later = NOW + timedelta(hours=1)
    store = Store(settings.store)
    try:
        assert directory.sync(settings, store, later).diff.manager_changes
    finally:
        store.close()
    killed = crash_everywhere(folder, tmp_path, later, part)
    _, mails, states = outcome(tmp_path / "reference")
    assert any(m.endswith("-ended.eml") for m in mails)
    assert any(m.endswith("-handover.eml") for m in mails)
    assert "cancelled" in states.values()
    if part == 0:  # the figures of the whole scenario, once
        print(f"kill points (a manager change): {tally(killed)}")
    assert "cancel:before" in killed or os.environ.get("CRASH_ALL") != "1"
    assert len(killed) >= (8 if os.environ.get("CRASH_ALL") == "1" else 3)
