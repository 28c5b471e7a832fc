"""A store that cannot be used is one line naming the file and the remedy, with exit 1,
from every command that opens it; and a tick killed mid-way is marked ``interrupted``
by the next real tick, never by ``plan`` or ``status``."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from agent.app.cli import app
from agent.app.lock import TickLock
from agent.settings import config
from agent.store.sqlite import Store

NOW = "2026-11-23T14:00:00+00:00"
LATER = "2026-11-24T14:00:00+00:00"
runner = CliRunner()

COMMANDS: dict[str, list[str]] = {
    "run": ["run", "--once", "--now", NOW],
    "plan": ["plan", "--now", NOW],
    "serve": ["serve"],
    "status": ["status", "--now", NOW],
    "log": ["log"],
    "report": ["report", "--now", NOW],
    "explain": ["explain", "ana@acme.example/ben@acme.example", "--now", NOW],
    "review-packet": ["review-packet", "ana@acme.example", "--since", "2026-01-01", "--now", NOW],
}
#: the commands that write to the store; the others only read it
WRITERS = ("run", "serve")


def cadence(workspace: Path, *args: str):  # type: ignore[no-untyped-def]
    # catch_exceptions=False: a traceback fails the test instead of becoming output
    return runner.invoke(app, [*args, "--config", str(workspace)], catch_exceptions=False)


def store_of(workspace: Path) -> Path:
    return workspace.parent / "var" / "cadence.db"


def ticked(workspace: Path) -> Path:
    """Run one tick, so the store holds real rows; return the store's path."""
    workspace.write_text(workspace.read_text() + "\nservice:\n  port: 0\n")
    assert cadence(workspace, "run", "--once", "--now", NOW).exit_code == 0
    return store_of(workspace)


def as_folder(workspace: Path) -> None:
    store_of(workspace).mkdir(parents=True)


def not_a_database(workspace: Path) -> None:
    store = store_of(workspace)
    store.parent.mkdir(parents=True)
    store.write_text("timezone: Europe/Berlin\n" * 200)


def corrupted(workspace: Path) -> None:
    store = ticked(workspace)
    size = store.stat().st_size
    page = 4096
    with store.open("r+b") as fh:  # page 1 (the header, the schema) stays; the tables go
        for offset in range(page, size, page):
            fh.seek(offset)
            fh.write(bytes([0xA5]) * page)


def assert_one_line(result, store: Path, words: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: "), lines
    assert str(store) in lines[0] and words in lines[0], lines[0]
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("breaker", "words"),
    [
        (as_folder, "is a folder"),
        (not_a_database, "is not an SQLite database"),
        (corrupted, "is corrupted"),
    ],
)
def test_a_broken_store_is_one_line_and_exit_1(
    workspace: Path, command: str, breaker: Callable[[Path], None], words: str
) -> None:
    breaker(workspace)
    result = cadence(workspace, *COMMANDS[command])
    assert_one_line(result, store_of(workspace), words)


def read_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Open every store as usual, then let SQLite refuse its writes with its own
    SQLITE_READONLY, as for a file without write permission (the tests may run as root,
    whom file modes do not stop; the test further down uses a real one otherwise)."""
    real = Store.__init__

    def opened(self: Store, path: Path | str | None = None) -> None:
        real(self, path)
        self.db.execute("PRAGMA query_only = 1")

    monkeypatch.setattr(Store, "__init__", opened)


def disk_full(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail every write of the store the way SQLite reports ENOSPC (every write goes
    through ``Store.atomic``). SQLite's ``max_page_count`` is no stand-in: an
    ``INSERT OR IGNORE`` (sqlite-utils' upsert) skips its row silently at that limit."""

    def full(self: Store) -> Any:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(Store, "atomic", full)


@pytest.mark.parametrize(
    ("command", "refusal", "words"),
    [(command, read_only, "is read-only") for command in COMMANDS]
    # serve starts on a full disk (a check that writes nothing cannot tell): its ticks
    # say so, see the service test below
    + [(command, disk_full, "the disk is full") for command in COMMANDS if command != "serve"],
)
def test_a_store_that_refuses_writes_is_one_line_from_writers_and_read_by_readers(
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    refusal: Callable[[pytest.MonkeyPatch], None],
    words: str,
) -> None:
    store = ticked(workspace)
    refusal(monkeypatch)
    args = COMMANDS[command]
    if command == "run":
        args = ["run", "--once", "--now", LATER]
    result = cadence(workspace, *args)
    if command in WRITERS or result.exit_code != 0:
        assert_one_line(result, store, words)


def test_serve_logs_a_full_disk_in_one_line_and_reports_it_unhealthy(
    workspace: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from agent.app.service import Service

    store = ticked(workspace)
    disk_full(monkeypatch)
    service = Service(config.load(workspace))
    with caplog.at_level(logging.INFO, logger="cadence.serve"):
        service.tick()
    failed = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(failed) == 1 and failed[0].exc_info is None
    assert str(store) in failed[0].getMessage()
    assert "the disk is full" in failed[0].getMessage()
    _, body = service.health.check()
    assert "the disk is full" in json.dumps(body)


@pytest.mark.skipif(os.geteuid() == 0, reason="file modes do not stop root")
def test_a_read_only_store_file_refuses_run_and_serve_but_reads(workspace: Path) -> None:
    store = ticked(workspace)
    store.chmod(0o400)
    for command in WRITERS:
        assert_one_line(cadence(workspace, *COMMANDS[command]), store, "is read-only")
    assert cadence(workspace, *COMMANDS["status"]).exit_code == 0


def test_a_newer_store_is_one_line(workspace: Path) -> None:
    store = ticked(workspace)
    handle = Store(store)
    handle.db.execute("PRAGMA user_version = 999")
    handle.close()
    assert_one_line(cadence(workspace, *COMMANDS["status"]), store, "upgrade Cadence")


# --- killed ticks --------------------------------------------------------------------------


def killed_tick(store: Path) -> int:
    """Leave a tick ``running`` as a process killed mid-way does."""
    from datetime import UTC, datetime

    handle = Store(store)
    try:
        return handle.begin_tick(datetime.fromisoformat(NOW), datetime.now(UTC))
    finally:
        handle.close()


def tick_status(store: Path, tick: int) -> str:
    handle = Store(store)
    try:
        return str(handle.db.execute("SELECT status FROM ticks WHERE id = ?", [tick]).fetchone()[0])
    finally:
        handle.close()


def test_the_next_tick_marks_a_killed_one_interrupted_and_status_and_log_show_it(
    workspace: Path,
) -> None:
    store = ticked(workspace)
    killed = killed_tick(store)

    # neither plan nor status may decide a running tick is dead: it may be running now
    assert cadence(workspace, "plan", "--now", LATER).exit_code == 0
    shown = cadence(workspace, "status", "--now", LATER)
    assert shown.exit_code == 0
    assert f"last tick: #{killed} running since" in shown.output
    assert tick_status(store, killed) == "running"

    ran = cadence(workspace, "run", "--once", "--now", LATER)
    assert ran.exit_code == 0, ran.output
    assert tick_status(store, killed) == "interrupted"

    log = cadence(workspace, "log", "--kind", "interrupted")
    assert f"tick {killed} (started " in log.output and "was interrupted" in log.output
    shown = cadence(workspace, "status", "--now", LATER)
    assert f"tick #{killed} was interrupted" in shown.output
    assert f"last tick: #{killed + 1} ok" in shown.output
    # the JSON of status is unchanged: one row per relationship and series
    rows = json.loads(cadence(workspace, "status", "--now", LATER, "--json").output)
    assert all("relationship" in row for row in rows)


def test_a_tick_running_in_another_process_is_left_alone(workspace: Path) -> None:
    store = ticked(workspace)
    running = killed_tick(store)  # as if that process were still at work
    with TickLock(store):
        busy = cadence(workspace, "run", "--once", "--now", LATER)
        planned = cadence(workspace, "plan", "--now", LATER)
    assert busy.exit_code == 1 and planned.exit_code == 1
    assert "another Cadence process" in busy.output
    assert tick_status(store, running) == "running"
