"""Forward migrations: an old store is upgraded in place, and processes opening a new
file at the same moment never apply a step twice."""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlite_utils

from agent.core.timestamps import to_store
from agent.store import sqlite as store_mod
from agent.store.sqlite import SCHEMA_VERSION, Store


def test_a_version_2_store_gains_replies_and_actions_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite_utils.Database(sqlite3.connect(str(path), isolation_level=None))
    for number, step in enumerate(store_mod.MIGRATIONS[:2], start=1):
        step(db)
        db.execute(f"PRAGMA user_version = {number}")
    db.execute(
        "INSERT INTO outbox (key, meeting, kind, status, message_id) "
        "VALUES ('m:recap', 'm', 'recap', 'sent', '<m.recap@cadence>')"
    )
    db.close()
    store = Store(path)
    try:
        assert store.version == SCHEMA_VERSION >= 3
        assert store.outbox_by_message_id("<m.recap@cadence>")["key"] == "m:recap"  # type: ignore[index]
        assert store.replies() == [] and store.actions("ana@acme.example") == []
    finally:
        store.close()


def test_a_version_6_store_gains_reply_marks_and_keeps_its_replies(tmp_path: Path) -> None:
    path = tmp_path / "v6.db"
    db = sqlite_utils.Database(sqlite3.connect(str(path), isolation_level=None))
    for number, step in enumerate(store_mod.MIGRATIONS[:6], start=1):
        step(db)
        db.execute(f"PRAGMA user_version = {number}")
    db.execute(
        "INSERT INTO replies (message_id, ref, relationship, status, update_key, recorded_at) "
        "VALUES ('<r@x>', 'gmail:ana/1', 'ana/ben', 'recorded', 'm:update:1', "
        "'2026-11-23T10:00:00Z')"
    )
    db.close()
    store = Store(path)
    try:
        assert store.version == SCHEMA_VERSION >= 7
        assert store.read_refs() == {"gmail:ana/1"}
        assert store.reply_marks("work") == {}
        now = datetime(2026, 11, 23, 12, tzinfo=UTC)
        store.save_reply_marks("work", {"ana@acme.example": "1700000000000"}, now)
        store.save_reply_marks("work", {"ana@acme.example": "1800000000000"}, now)
        assert store.reply_marks("work") == {"ana@acme.example": "1800000000000"}
        assert store.reply_marks("other") == {}
        assert store.updates_since("ana/ben", now - timedelta(days=1)) == 1
        assert store.updates_since("ana/ben", now) == 0
    finally:
        store.close()


def _open_together(path: Path, count: int) -> list[BaseException]:
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def open_store() -> None:
        barrier.wait()
        try:
            Store(path).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_processes_opening_a_new_store_together_migrate_it_once(tmp_path: Path) -> None:
    for attempt in range(5):
        path = tmp_path / f"new{attempt}.db"
        assert _open_together(path, 4) == []
        check = Store(path)
        assert check.version == SCHEMA_VERSION
        check.close()


def test_a_version_6_store_keeps_watching_from_its_first_audit_row(tmp_path: Path) -> None:
    """An upgraded store does not start its relationships' watch over: recaps of what
    Cadence watched before the upgrade still go out."""
    path = tmp_path / "old.db"
    db = sqlite_utils.Database(sqlite3.connect(str(path), isolation_level=None))
    for number, step in enumerate(store_mod.MIGRATIONS[:6], start=1):
        step(db)
        db.execute(f"PRAGMA user_version = {number}")
    for at, rel in (
        ("2026-11-02T09:00:00Z", "ana@acme.example/ben@acme.example"),
        ("2026-11-01T09:00:00Z", "ana@acme.example/ben@acme.example"),
        ("2026-11-20T09:00:00Z", "dev@acme.example/ben@acme.example"),
        ("2026-10-01T09:00:00Z", None),
    ):
        db.execute(
            "INSERT INTO audit (at, relationship, kind, message) VALUES (?, ?, 'assess', '')",
            [at, rel],
        )
    db.close()
    store = Store(path)
    try:
        assert {k: to_store(v) for k, v in store.watched().items()} == {
            "ana@acme.example/ben@acme.example": "2026-11-01T09:00:00Z",
            "dev@acme.example/ben@acme.example": "2026-11-20T09:00:00Z",
        }
        later = datetime(2026, 11, 23, tzinfo=UTC)
        watched = store.watch(["ana@acme.example/ben@acme.example", "new@x/ben@x"], later)
        assert to_store(watched["ana@acme.example/ben@acme.example"]) == "2026-11-01T09:00:00Z"
        assert watched["new@x/ben@x"] == later
    finally:
        store.close()
