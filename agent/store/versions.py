"""The store's schema version, and bringing a store to the newest one with Alembic.

Alembic is the one migration tool for both backends; its revisions ship in
``agent.store.revisions`` and run from here, on the store's own connection. SQLite
stores made before it carry their version in ``PRAGMA user_version`` (1 to 12, the steps
of ``agent.store.migrations``): they are brought to 12 by those steps, stamped with the
baseline revision ``0012``, and their ``user_version`` set to ``ALEMBIC`` to say that
Alembic owns them now. Revision ids are version numbers, so a version stays a number.

Opening a store that is already at the newest version does not load Alembic (a quarter
of a second of every ``cadence`` process): the version is read from Alembic's own table
with plain SQL, and the newest from the revisions' file names.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import sqlite_utils

from agent.store.database import Database
from agent.store.migrations import MIGRATIONS

#: ``PRAGMA user_version`` of an SQLite store whose schema Alembic keeps
ALEMBIC = 100
#: the legacy version the baseline revision stands for
BASELINE = len(MIGRATIONS)
#: any number, the same in every Cadence: migrations of one PostgreSQL store take turns
LOCK_KEY = 0x43414445
#: Alembic's script folder; each revision's file is named ``v<its id>_<what>.py``
REVISIONS = Path(__file__).with_name("revisions")

if TYPE_CHECKING:
    from alembic.config import Config


def _config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(REVISIONS))
    return cfg


@functools.cache
def newest() -> int:
    """The version of the newest revision this Cadence has (its file names say it;
    tests hold them to Alembic's own head)."""
    return max(
        int(p.name[1:5]) for p in (REVISIONS / "versions").glob("v[0-9][0-9][0-9][0-9]_*.py")
    )


def current(db: Database) -> int:
    """The store's schema version (0: a new, empty store)."""
    if db.name == "sqlite":
        legacy = int(db.execute("PRAGMA user_version").rows[0][0])
        if legacy != ALEMBIC:
            return legacy
        there = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?"
    else:
        there = (
            "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename = ?"
        )
    with db.atomic():
        if not db.execute(there, ["alembic_version"]).rows[0][0]:
            return 0
        # Alembic's table: one row, the revision the store is at (a linear history)
        rows = db.execute("SELECT version_num FROM alembic_version").rows
    return max((int(r[0]) for r in rows), default=0)


def upgrade(db: Database) -> tuple[int, int]:
    """Bring the store to the newest schema; return its version before and after.

    Several processes may open a new store at once: each takes the write lock (SQLite)
    or an advisory lock (PostgreSQL) first, then looks again, so a step runs once.
    """
    before = current(db)
    if before == newest():
        return before, before
    if before > newest():
        raise NewerStore(before, newest())
    from alembic import command

    logging.getLogger("alembic").setLevel(logging.WARNING)
    with db.atomic(immediate=True):
        if db.name == "postgresql":
            db.execute("SELECT pg_advisory_xact_lock(?)", [LOCK_KEY])
        found = current(db)
        if found > newest():
            raise NewerStore(found, newest())
        cfg = _config()
        cfg.attributes["connection"] = db.conn
        if found == newest():
            return before, found  # another process did it meanwhile
        legacy = db.name == "sqlite" and db.execute("PRAGMA user_version").rows[0][0] != ALEMBIC
        if legacy and found > 0:
            _legacy(db, found)
            command.stamp(cfg, f"{BASELINE:04d}")
            db.execute(f"PRAGMA user_version = {ALEMBIC}")
        command.upgrade(cfg, "head")
        if db.name == "sqlite":
            db.execute(f"PRAGMA user_version = {ALEMBIC}")
    return before, newest()


def _legacy(db: Database, found: int) -> None:
    """The legacy steps after ``found``, on the raw SQLite connection (in the open
    transaction); then the store is at the baseline."""
    raw = sqlite_utils.Database(db.conn.connection.driver_connection)
    for step in MIGRATIONS[found:]:
        step(raw)


class NewerStore(Exception):
    """The store was made by a newer Cadence."""

    def __init__(self, found: int, known: int) -> None:
        super().__init__(f"schema version {found}, newer than this Cadence ({known})")
        self.found = found
        self.known = known
