"""The tables ``agent/store/schema.py`` declares are the ones the Alembic revisions make,
on both backends, and on an SQLite store upgraded from the legacy steps too: a change to
one without the other fails here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from agent.store import schema
from agent.store.sqlite import Store
from tests.test_store_cli import legacy_store


def _differences(store: Store) -> list[Any]:
    with store.db.atomic():
        return list(compare_metadata(MigrationContext.configure(store.db.conn), schema.metadata))


def test_the_revisions_make_the_declared_schema(store_at: Path | str) -> None:
    store = Store(store_at)
    try:
        assert _differences(store) == []
        indexes = {
            row[0] for row in store.db.query(
                "SELECT name FROM sqlite_master WHERE type = 'index'"
                if store.backend == "sqlite"
                else "SELECT indexname AS name FROM pg_indexes WHERE schemaname = 'public'"
            ) for row in [tuple(row.values())]
        }  # fmt: skip
        assert {"events_key", "ticks_running", "lines_open", "push_channels_id"} <= indexes
    finally:
        store.close()


def test_a_legacy_store_ends_with_the_declared_schema(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    legacy_store(path, 1)
    store = Store(path)
    try:
        # the legacy DDL left primary key columns without NOT NULL, which SQLite reports
        # as nullable; the key itself holds, and nothing else may differ
        rest = [
            d
            for d in _differences(store)
            if not (
                isinstance(d, list)
                and d[0][0] == "modify_nullable"
                and schema.metadata.tables[d[0][2]].c[d[0][3]].primary_key
            )
        ]
        assert rest == []
    finally:
        store.close()
