"""``cadence store migrate`` and ``cadence store copy --to``: a legacy SQLite store is
upgraded in place keeping its rows, and a ticked SQLite store moves to PostgreSQL with
nothing lost (the next tick there has nothing to redo)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import sqlite_utils
from sqlalchemy import func, select
from typer.testing import CliRunner

from agent.app.cli import app
from agent.store import schema, versions
from agent.store.migrations import MIGRATIONS
from agent.store.sqlite import SCHEMA_VERSION, Store
from tests.stores import use_store

NOW = "2026-11-23T14:00:00+00:00"
runner = CliRunner()


def cadence(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), catch_exceptions=False)


def legacy_store(path: Path, version: int) -> None:
    """An SQLite store as the legacy steps left it at ``version``, with rows."""
    db = sqlite_utils.Database(sqlite3.connect(str(path), isolation_level=None))
    for number, step in enumerate(MIGRATIONS[:version], start=1):
        step(db)
        db.execute(f"PRAGMA user_version = {number}")
    db.execute(
        "INSERT INTO bookings (key, relationship, series, status, start) "
        "VALUES ('k1', 'ana/ben', 'dd', 'booked', '2026-11-24T09:00:00Z')"
    )
    db.execute(
        "INSERT INTO audit (tick, at, relationship, kind, message) "
        "VALUES (1, '2026-11-20T09:00:00Z', 'ana/ben', 'book', 'booked')"
    )
    if version >= 12:
        db.execute(
            "INSERT INTO plans (employee, plan, version, updated_at, updated_by) "
            "VALUES ('ana', '{}', 3, '2026-11-20T09:00:00Z', 'ana')"
        )
    db.close()


def test_a_legacy_version_12_store_is_stamped_and_upgraded_keeping_its_rows(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v12.db"
    legacy_store(path, 12)
    secret = sqlite3.connect(path).execute("SELECT value FROM meta").fetchone()[0]
    store = Store(path)
    try:
        assert store.version == SCHEMA_VERSION == versions.newest() > 12
        raw = store.db.execute("PRAGMA user_version").rows[0][0]
        assert raw == versions.ALEMBIC
        assert store.booking("k1").status == "booked"  # type: ignore[union-attr]
        assert [r["message"] for r in store.audit_rows(relationship="ana/ben")] == ["booked"]
        assert store.mail_secret.hex() == secret
        assert store.db.query("SELECT version FROM plans") == [{"version": 3}]
        store.claim_booking(
            {"key": "k2", "relationship": "a/b", "series": "s", "status": "pending"}, store_now()
        )
    finally:
        store.close()


def store_now():  # type: ignore[no-untyped-def]
    from datetime import UTC, datetime

    return datetime(2026, 11, 23, 14, tzinfo=UTC)


def test_migrate_says_from_which_version_to_which(workspace: Path) -> None:
    store = workspace.parent / "var" / "cadence.db"
    store.parent.mkdir(parents=True, exist_ok=True)
    legacy_store(store, 6)
    result = cadence("store", "migrate", "--config", str(workspace))
    assert result.exit_code == 0, result.output
    assert f"schema version 6 -> {SCHEMA_VERSION}" in result.output
    again = cadence("store", "migrate", "--config", str(workspace))
    assert f"schema version {SCHEMA_VERSION}, the newest; nothing to do" in again.output
    reopened = Store(store)
    try:
        assert reopened.booking("k1") is not None
    finally:
        reopened.close()


def test_migrate_a_new_postgresql_store(workspace: Path, postgres: str) -> None:
    use_store(workspace, postgres)
    result = cadence("store", "migrate", "--config", str(workspace))
    assert result.exit_code == 0, result.output
    assert f"schema version 0 -> {SCHEMA_VERSION}" in result.output
    assert "postgresql+psycopg://postgres@127.0.0.1" in result.output


def _counts(store: Store) -> dict[str, int]:
    return {
        t.name: store.db.run(select(func.count()).select_from(t)).rows[0][0]
        for t in schema.metadata.sorted_tables
    }


def test_an_sqlite_store_copied_to_postgresql_ticks_on_there(
    workspace: Path, postgres: str
) -> None:
    first = cadence("run", "--once", "--config", str(workspace), "--now", NOW)
    assert first.exit_code == 0 and "booked" in first.output, first.output
    result = cadence("store", "copy", "--to", postgres, "--config", str(workspace))
    assert result.exit_code == 0, result.output
    assert "copied" in result.output
    source, target = Store(workspace.parent / "var" / "cadence.db"), Store(postgres)
    try:
        counts = _counts(source)
        assert counts["bookings"] >= 4 and counts["outbox"] >= 4 and counts["events"] > 10
        # meta: the same secret; PostgreSQL adds its count of writes
        assert {**_counts(target), "meta": 0} == {**counts, "meta": 0}
        assert target.mail_secret == source.mail_secret
        for table in ("bookings", "outbox", "audit", "ticks", "events", "watched"):
            pk = [c.name for c in schema.metadata.tables[table].primary_key.columns]
            order = ", ".join(f'"{k}"' for k in pk)
            query = f"SELECT * FROM {table} ORDER BY {order}"
            assert target.db.query(query) == source.db.query(query), table
        tick = target.begin_tick(store_now(), store_now())
        assert tick == source.last_tick()["id"] + 1  # type: ignore[index]
    finally:
        source.close()
        target.close()
    use_store(workspace, postgres)
    quiet = cadence("run", "--once", "--config", str(workspace), "--now", NOW)
    assert quiet.exit_code == 0, quiet.output
    assert "Nothing new to book or send" in quiet.output
    # and back, from PostgreSQL into a new SQLite file
    back = workspace.parent / "var" / "back.db"
    copied = cadence("store", "copy", "--to", f"sqlite:///{back}", "--config", str(workspace))
    assert copied.exit_code == 0, copied.output
    source, again = Store(postgres), Store(back)
    try:
        assert {**_counts(again), "meta": 0} == {**_counts(source), "meta": 0}
        assert again.mail_secret == source.mail_secret
    finally:
        source.close()
        again.close()
    # a second copy into the same store is refused: it is no longer empty
    use_store(workspace, "var/cadence.db")
    refused = runner.invoke(app, ["store", "copy", "--to", postgres, "--config", str(workspace)])
    assert refused.exit_code == 1
    assert "is not empty" in refused.output


def test_the_newest_version_named_by_the_files_is_alembics_head() -> None:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(versions._config()).get_current_head()
    assert versions.newest() == int(head or 0)


def test_the_version_read_with_sql_is_the_one_alembic_reads(store_at: Path | str) -> None:
    from alembic.runtime.migration import MigrationContext

    store = Store(store_at)
    try:
        assert store.version == SCHEMA_VERSION
        with store.db.atomic():
            revision = MigrationContext.configure(store.db.conn).get_current_revision()
        assert store.version == int(revision)
        store.db.execute("DELETE FROM alembic_version")  # no revision: a store made empty
        assert store.version == 0
    finally:
        store.close()


def test_an_sqlite_store_at_the_newest_version_opens_without_alembic_or_psycopg(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cadence.db"
    Store(path).close()  # made, with Alembic
    code = (
        "import sys; import agent.app.cli; from agent.store.sqlite import Store; "
        f"s = Store({str(path)!r}); print(s.version, 'alembic' in sys.modules, "
        "'psycopg' in sys.modules)"
    )
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert found.stdout.split() == [str(SCHEMA_VERSION), "False", "False"], found.stderr
