"""The legacy SQLite steps that made the store's schema up to version 12, before Alembic:
such a file's version is its ``PRAGMA user_version``.

They still bring an old SQLite store to version 12 (``agent.store.versions``), which is
then stamped with the Alembic baseline ``0012``; every later change is an Alembic
revision in ``agent.store.revisions``. These steps are never edited.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

import sqlite_utils


def _v1(db: sqlite_utils.Database) -> None:
    db.execute(
        """CREATE TABLE sync_state (
            owner TEXT PRIMARY KEY, cursor TEXT, synced_at TEXT, error TEXT)"""
    )
    db.execute(
        """CREATE TABLE events (
            owner TEXT NOT NULL, id TEXT NOT NULL, uid TEXT, key TEXT, title TEXT,
            start TEXT NOT NULL, "end" TEXT NOT NULL, all_day INTEGER, cancelled INTEGER,
            transparent INTEGER, kind TEXT, organizer TEXT, attendees TEXT,
            sequence INTEGER, PRIMARY KEY (owner, id))"""
    )
    db.execute("CREATE INDEX events_owner_start ON events (owner, start)")
    db.execute("CREATE INDEX events_key ON events (key) WHERE key IS NOT NULL")
    db.execute(
        """CREATE TABLE bookings (
            key TEXT PRIMARY KEY, relationship TEXT NOT NULL, series TEXT NOT NULL,
            stage TEXT, due TEXT, start TEXT, "end" TEXT, organizer TEXT, status TEXT NOT NULL,
            event_id TEXT, reason TEXT, created_at TEXT, updated_at TEXT)"""
    )
    db.execute(
        """CREATE TABLE outbox (
            key TEXT PRIMARY KEY, meeting TEXT NOT NULL, kind TEXT NOT NULL,
            relationship TEXT, series TEXT, status TEXT NOT NULL, message_id TEXT,
            sender TEXT, recipients TEXT, subject TEXT, location TEXT, error TEXT,
            created_at TEXT, sent_at TEXT)"""
    )
    db.execute(
        """CREATE TABLE meetings (
            id TEXT NOT NULL, relationship TEXT NOT NULL, series TEXT NOT NULL, stage TEXT,
            start TEXT NOT NULL, "end" TEXT NOT NULL, status TEXT NOT NULL, key TEXT,
            declined_by TEXT, tick INTEGER, PRIMARY KEY (relationship, id))"""
    )
    db.execute(
        """CREATE TABLE ticks (
            id INTEGER PRIMARY KEY AUTOINCREMENT, now TEXT NOT NULL, started_at TEXT,
            finished_at TEXT, status TEXT, summary TEXT)"""
    )
    db.execute(
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT, tick INTEGER, at TEXT NOT NULL,
            relationship TEXT, series TEXT, kind TEXT NOT NULL, message TEXT NOT NULL,
            data TEXT)"""
    )
    db.execute("CREATE INDEX audit_tick ON audit (tick)")
    db.execute("CREATE INDEX audit_relationship ON audit (relationship, at)")


def _v2(db: sqlite_utils.Database) -> None:
    db.execute("ALTER TABLE bookings ADD COLUMN moves INTEGER NOT NULL DEFAULT 0")


def _v3(db: sqlite_utils.Database) -> None:
    """Replies to recaps and the action items they carry."""
    db.execute(
        """CREATE TABLE replies (
            message_id TEXT PRIMARY KEY, ref TEXT, meeting TEXT, relationship TEXT,
            employee TEXT, sender TEXT, received_at TEXT, status TEXT NOT NULL,
            reason TEXT, items TEXT, notes TEXT, update_key TEXT, recorded_at TEXT)"""
    )
    db.execute("CREATE INDEX replies_employee ON replies (employee, received_at)")
    db.execute(
        """CREATE TABLE actions (
            id INTEGER PRIMARY KEY AUTOINCREMENT, employee TEXT NOT NULL,
            norm TEXT NOT NULL, title TEXT NOT NULL, goal TEXT, due TEXT,
            status TEXT NOT NULL, relationship TEXT, meeting TEXT, source TEXT,
            created_at TEXT, updated_at TEXT, done_at TEXT, UNIQUE (employee, norm))"""
    )


def _v4(db: sqlite_utils.Database) -> None:
    # the engine asks for a relationship's last audit rows of a kind on every tick
    db.execute("CREATE INDEX audit_relationship_kind ON audit (relationship, kind, id)")


def _v5(db: sqlite_utils.Database) -> None:
    # what stands in a meeting's way: the events still running at its start
    db.execute('CREATE INDEX events_owner_end ON events (owner, "end")')


def _v6(db: sqlite_utils.Database) -> None:
    # every real tick looks for the ticks a killed process left running
    db.execute("CREATE INDEX ticks_running ON ticks (id) WHERE status = 'running'")


def _v7(db: sqlite_utils.Database) -> None:
    """How far each reply account's inboxes were read, so that a restart goes on from
    there instead of listing 30 days of mail again; and the count of updated recaps
    per relationship (``recap.max_updates_per_day``) looks replies up by relationship."""
    db.execute(
        """CREATE TABLE reply_marks (
            account TEXT NOT NULL, mailbox TEXT NOT NULL, mark TEXT NOT NULL,
            updated_at TEXT, PRIMARY KEY (account, mailbox))"""
    )
    db.execute("CREATE INDEX replies_relationship ON replies (relationship, recorded_at)")


def _v8(db: sqlite_utils.Database) -> None:
    # the store's own values; the first, a secret that keys the Message-IDs of the mail
    # Cadence sends, so that no one can guess one and forge a reply (Store.mail_secret)
    db.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT INTO meta (name, value) VALUES ('mail_secret', ?)", [secrets.token_hex(32)])


def _v9(db: sqlite_utils.Database) -> None:
    """When Cadence began watching each relationship: recaps go only to meetings that
    ended after it. A store from before keeps its history: a relationship's watch
    began with its first audit row (every tick assesses every relationship)."""
    db.execute("CREATE TABLE watched (relationship TEXT PRIMARY KEY, since TEXT NOT NULL)")
    db.execute(
        "INSERT INTO watched (relationship, since) SELECT relationship, MIN(at) FROM audit "
        "WHERE relationship IS NOT NULL GROUP BY relationship"
    )


def _v10(db: sqlite_utils.Database) -> None:
    # the company's directory: people as last read, the lines followed, the erased
    db.execute(
        """CREATE TABLE directory_people (
            email TEXT PRIMARY KEY, entry TEXT NOT NULL, seen_at TEXT NOT NULL, left_at TEXT)"""
    )
    db.execute(
        """CREATE TABLE lines (
            employee TEXT NOT NULL, leader TEXT NOT NULL, since TEXT NOT NULL, until TEXT,
            reason TEXT, successor TEXT, PRIMARY KEY (employee, leader, since))"""
    )
    db.execute("CREATE INDEX lines_open ON lines (employee) WHERE until IS NULL")
    db.execute(
        """CREATE TABLE directory_reads (
            id INTEGER PRIMARY KEY, at TEXT NOT NULL, people INTEGER NOT NULL,
            changes INTEGER NOT NULL, status TEXT NOT NULL, reason TEXT, cursor TEXT)"""
    )
    db.execute("CREATE TABLE tombstones (email TEXT PRIMARY KEY, forgotten_at TEXT NOT NULL)")


def _v11(db: sqlite_utils.Database) -> None:
    # push notifications: one Google channel or Graph subscription per calendar, with the
    # secret the provider sends back (X-Goog-Channel-Token, clientState)
    db.execute(
        """CREATE TABLE push_channels (
            owner TEXT PRIMARY KEY, provider TEXT NOT NULL, channel_id TEXT NOT NULL,
            resource_id TEXT, secret TEXT NOT NULL, expires TEXT NOT NULL,
            state TEXT NOT NULL, error TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
            notified_at TEXT, address TEXT NOT NULL)"""
    )
    db.execute("CREATE UNIQUE INDEX push_channels_id ON push_channels (channel_id)")


def _v12(db: sqlite_utils.Database) -> None:
    """The web app: plans kept in the store with their history (who changed what, when),
    the single-use links (sign-in, pick-a-time) already used, and cadences paused for a
    leave."""
    db.execute(
        """CREATE TABLE plans (
            employee TEXT PRIMARY KEY, plan TEXT NOT NULL, shared INTEGER NOT NULL DEFAULT 0,
            version INTEGER NOT NULL, updated_at TEXT NOT NULL, updated_by TEXT NOT NULL)"""
    )
    db.execute(
        """CREATE TABLE plan_history (
            id INTEGER PRIMARY KEY AUTOINCREMENT, employee TEXT NOT NULL,
            version INTEGER NOT NULL, at TEXT NOT NULL, by TEXT NOT NULL, how TEXT NOT NULL,
            changes TEXT NOT NULL, plan TEXT NOT NULL)"""
    )
    db.execute("CREATE INDEX plan_history_employee ON plan_history (employee, id)")
    db.execute(
        """CREATE TABLE used_links (
            nonce TEXT PRIMARY KEY, kind TEXT NOT NULL, who TEXT, used_at TEXT NOT NULL,
            data TEXT)"""
    )
    db.execute(
        """CREATE TABLE pauses (
            employee TEXT PRIMARY KEY, until TEXT NOT NULL, set_at TEXT NOT NULL)"""
    )


MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = [
    _v1, _v2, _v3, _v4, _v5, _v6, _v7, _v8, _v9, _v10, _v11, _v12,
]  # fmt: skip
SCHEMA_VERSION = len(MIGRATIONS)
