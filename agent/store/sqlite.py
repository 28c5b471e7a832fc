"""The store: event cache, sync cursors, bookings, outbox, meetings and audit, kept in
SQLite (one file, the default) or PostgreSQL (shared by several machines).

The schema is Alembic's (``agent.store.versions``). Bookings and outbox rows are written
before their side effect ("pending") and after it ("done"), so a restart after a crash
finishes the work without repeating it; their keys are primary keys, so two processes
that race on one booking or mail find out (``claim_booking``, ``claim_outbox``).
"""

from __future__ import annotations

import errno
import heapq
import json
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from agent.core import files
from agent.core.model import Changes, Event, Interval
from agent.core.records import StoredBooking
from agent.core.timestamps import from_store, to_store
from agent.store import broken, versions
from agent.store.claims import ClaimRows
from agent.store.database import Database, server_engine, sqlite_engine
from agent.store.migrations import MIGRATIONS  # noqa: F401  (the legacy steps, for tests)
from agent.store.replies import ReplyRows
from agent.store.rows import (
    EVENT_COLUMNS,
    among,
    event_row,
    row_booking,
    row_event,
    tuple_event,
)
from agent.store.target import StoreTarget

#: how many calendars' events the store keeps parsed between two reads (see Store._recent)
RECENT_CALENDARS = 32
SCHEMA_VERSION = versions.newest()


def _patiently(step: Callable[[], object], seconds: float = 30.0) -> None:
    """Run ``step``, retrying while another process holds a lock SQLite will not wait
    for (switching a new file to WAL, or its first migration, as several start at once)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class Store(ReplyRows, ClaimRows):
    """A thin, typed layer over the database; every unit of work is atomic."""

    def __init__(
        self, path: Path | str | StoreTarget | None = None, *, migrate: bool = True
    ) -> None:
        """Open the store; with ``migrate`` (every command but ``store migrate``) bring
        it to the newest schema first."""
        self.target = StoreTarget.of(path)
        self.path = self.target.path
        #: the events of the calendars read last, by (owner, since): a partner's calendar
        #: is read for each of their relationships, parsed once and shared; forgotten when
        #: the calendar changes and at the end of every tick, so it never holds much
        self._recent: OrderedDict[tuple[str, str | None], list[Event]] = OrderedDict()
        #: a count per calendar of the writes to its events by this connection, and one
        #: for writes to many calendars or by another process (see ``calendar_version``)
        self._writes: dict[str, int] = {}
        self._epoch = 0
        self._data_version: int | None = None
        try:
            self._open(migrate)
        except versions.NewerStore as exc:
            raise broken.StoreError(
                f"store {self.target.shown} has {exc}: upgrade Cadence, or point `store:` "
                "at another store"
            ) from None
        except Exception as exc:
            if not broken.is_store_failure(exc):
                raise
            raise broken.explain(self.target.where, exc) from exc

    def _open(self, migrate: bool) -> None:
        if self.target.url is not None:
            self.db = Database(server_engine(self.target.url))
        elif self.path is None:
            self.db = Database(sqlite_engine(None))
        else:
            if self.path.is_dir():
                raise IsADirectoryError(errno.EISDIR, "a folder", str(self.path))
            # SQLite gives the -wal and -shm files the mode of the store itself
            files.create_private(self.path)
            self.db = Database(sqlite_engine(str(self.path)))
            _patiently(lambda: self.db.pragma("PRAGMA journal_mode=WAL"))
            self.db.pragma("PRAGMA synchronous=NORMAL")
        if self.db.name == "sqlite":
            self.db.pragma("PRAGMA busy_timeout=30000")
        if migrate:
            _patiently(self.migrate)
        elif versions.current(self.db) > versions.newest():
            raise versions.NewerStore(versions.current(self.db), versions.newest())
        if self.db.name != "sqlite":
            self.db.on_write = self._count_write

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self.db.name

    def close(self) -> None:
        self.db.close()

    def check_usable(self) -> None:
        """Raise ``StoreError`` now if the store is damaged or cannot be written (a
        read-only file opens and reads fine), before a tick finds out halfway; reads
        every page once (SQLite's ``quick_check``) and writes nothing."""
        try:
            if self.backend == "sqlite":
                found = self.db.execute("PRAGMA quick_check").rows[0][0]
                if found != "ok":
                    raise sqlite3.DatabaseError(f"database disk image is malformed: {found}")
            with self.db.atomic(immediate=True):
                if self.backend == "sqlite":
                    raw = self.db.execute("PRAGMA user_version").rows[0][0]
                    self.db.execute(f"PRAGMA user_version = {int(raw)}")
                else:
                    self.db.execute("UPDATE meta SET value = value WHERE name = 'mail_secret'")
                raise _Undo
        except _Undo:
            pass
        except Exception as exc:
            if not broken.is_store_failure(exc):
                raise
            raise broken.explain(self.target.where, exc) from exc

    @property
    def version(self) -> int:
        return versions.current(self.db)

    def migrate(self) -> tuple[int, int]:
        """Bring the store to the newest schema; return its version before and after."""
        return versions.upgrade(self.db)

    def atomic(self) -> Any:
        """A write transaction holding SQLite's write lock from the start: a deferred
        one that read first fails at once (no waiting) when another process wrote
        meanwhile, as workers of the task queue do."""
        return self.db.atomic(immediate=True)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return self.db.query(sql, params)

    # --- sync ------------------------------------------------------------------------

    def cursor(self, owner: str) -> str | None:
        rows = self._query("SELECT cursor FROM sync_state WHERE owner = ?", [owner])
        return rows[0]["cursor"] if rows else None

    def _forget(self, owner: str | None = None) -> None:
        if owner is None:
            self._recent.clear()
        else:
            for entry in [k for k in self._recent if k[0] == owner]:
                del self._recent[entry]

    def _wrote(self, owner: str | None = None) -> None:
        if owner is None:
            self._epoch += 1
        else:
            self._writes[owner] = self._writes.get(owner, 0) + 1

    def calendar_version(self, owner: str) -> tuple[int, int]:
        """A value that changes whenever ``owner``'s stored events may have changed, so
        what was derived from them can be kept until then. Writes by other processes
        are seen through SQLite's ``data_version`` at ``notice_other_writers``."""
        return self._epoch, self._writes.get(owner, 0)

    def _count_write(self) -> None:
        """On PostgreSQL, which has no ``data_version``: count each transaction that
        writes in the ``meta`` row ``writes``, before it commits, for other processes'
        ``notice_other_writers``; this one knows its own writes."""
        rows = self.db.execute(
            "INSERT INTO meta (name, value) VALUES ('writes', '1') ON CONFLICT (name) DO "
            "UPDATE SET value = CAST(CAST(meta.value AS BIGINT) + 1 AS TEXT) RETURNING value"
        ).rows
        if self._data_version is not None and int(rows[0][0]) == self._data_version + 1:
            self._data_version += 1

    def notice_other_writers(self) -> bool:
        """Whether another connection committed a write since the last call (then every
        ``calendar_version`` changes): SQLite's ``data_version``, or on PostgreSQL the
        count of write transactions kept in ``meta``."""
        if self.backend == "sqlite":
            version = int(self.db.execute("PRAGMA data_version").rows[0][0])
        else:
            rows = self.db.execute("SELECT value FROM meta WHERE name = 'writes'").rows
            version = int(rows[0][0]) if rows else 0
        changed = self._data_version is not None and version != self._data_version
        self._data_version = version
        if changed:
            self._wrote()
        return changed

    def apply(self, owner: str, changes: Changes, window: Interval, now: datetime) -> None:
        """Store one calendar's changes and its new cursor in one transaction."""
        self._forget(owner)
        if changes.full or changes.events or changes.removed:
            self._wrote(owner)
        with self.atomic():
            if changes.full:
                self.db.execute("DELETE FROM events WHERE owner = ?", [owner])
            for event_id in changes.removed:
                self.db.execute("DELETE FROM events WHERE owner = ? AND id = ?", [owner, event_id])
            rows = [event_row(e) for e in changes.events]
            if rows:
                self.db.table("events").upsert_all(rows)
            # plain SQL: this runs for every calendar on every tick
            self.db.execute(
                "INSERT INTO sync_state (owner, cursor, synced_at, error) VALUES (?, ?, ?, NULL)"
                " ON CONFLICT (owner) DO UPDATE SET cursor = excluded.cursor,"
                " synced_at = excluded.synced_at, error = NULL",
                [owner, changes.cursor, to_store(now)],
            )

    def cursors(self, owners: Sequence[str] | None = None) -> dict[str, str | None]:
        """The sync cursor of each of ``owners`` (None: of every calendar), in one query."""
        sql, params = among("SELECT owner, cursor FROM sync_state WHERE 1 = 1", "owner", owners)
        return {r["owner"]: r["cursor"] for r in self._query(sql, params)}

    def forget_cursor(self, owner: str) -> None:
        with self.atomic():
            self.db.execute("DELETE FROM sync_state WHERE owner = ?", [owner])

    def put_event(self, event: Event) -> None:
        self._forget(event.owner)
        self._wrote(event.owner)
        with self.atomic():
            self.db.table("events").upsert(event_row(event))

    def events(self, owners: Iterable[str], since: datetime | None = None) -> list[Event]:
        """The events of ``owners`` ending at or after ``since``, by start."""
        lists = [self._owner_events(owner, since) for owner in dict.fromkeys(owners)]
        if len(lists) == 1:
            return list(lists[0])
        return list(heapq.merge(*lists, key=lambda e: e.start))

    def maybe_candidates(self, employee: str, partner: str, since: datetime) -> list[Event]:
        """The events of both calendars ending at or after ``since`` that
        ``classify.candidates`` can keep for the relationship, by start (a superset)."""
        mine = self.maybe_candidates_of(employee, [partner], since)
        if employee == partner:
            return mine
        theirs = self.maybe_candidates_of(partner, [employee], since)
        return list(heapq.merge(mine, theirs, key=lambda e: e.start))

    def maybe_candidates_of(
        self, owner: str, others: Iterable[str], since: datetime
    ) -> list[Event]:
        """The events of ``owner`` ending at or after ``since`` that ``classify.candidates``
        can keep for a relationship of ``owner`` with one of ``others``, by start: a
        superset found by SQL, so that a year of meetings with other people is not read
        to be thrown away.

        It holds every event with a key or with the UID of one that has a key, and every
        timed event whose attendees or organizer may name one of the others. They are
        looked for in the text as stored; where the text could match in a way SQLite
        cannot see (non-ASCII, escaped in JSON), the event is kept.
        """
        after = to_store(since)
        sql = f'SELECT {EVENT_COLUMNS} FROM events WHERE owner = ? AND "end" >= ? AND ('
        sql += "key IS NOT NULL OR uid IN (SELECT uid FROM events WHERE key IS NOT NULL "
        sql += 'AND "end" >= ?) OR (coalesce(all_day, 0) = 0'
        params: list[Any] = [owner, after, after]
        wanted = sorted({o.lower() for o in others})
        plain = [w for w in wanted if w.isascii() and w.isprintable() and not set(w) & set('"\\')]
        if plain == wanted and owner.isascii() and owner.lower() not in wanted:
            # LIKE ignores ASCII case as lower() does, and its _ and % only widen the match
            like = self._like
            named = " OR ".join(f"attendees {like} ? OR organizer {like} ?" for _ in wanted)
            escaped, wide = (
                ("instr(attendees, '\\u') > 0", "length(CAST(organizer AS BLOB))")
                if self.backend == "sqlite"
                else ("strpos(attendees, '\\u') > 0", "octet_length(organizer)")
            )
            sql += f" AND ({named or '1 = 0'} OR {escaped} OR length(organizer) != {wide})"
            for w in wanted:
                params += [f'%"{w}"%', w]
        rows = self.db.execute(sql + ")) ORDER BY start", params).rows
        return [tuple_event(r) for r in rows]

    def events_during(self, owners: Iterable[str], during: Interval) -> list[Event]:
        """The events of ``owners`` that overlap ``during`` (by the index on their end)."""
        found: list[Event] = []
        for owner in dict.fromkeys(owners):
            rows = self.db.execute(
                f'SELECT {EVENT_COLUMNS} FROM events WHERE owner = ? AND "end" > ? AND start < ?',
                [owner, to_store(during.start), to_store(during.end)],
            ).rows
            found.extend(tuple_event(r) for r in rows)
        return found

    def _owner_events(self, owner: str, since: datetime | None) -> list[Event]:
        entry = (owner, to_store(since) if since is not None else None)
        found = self._recent.get(entry)
        if found is not None:
            self._recent.move_to_end(entry)
            return found
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE owner = ?"
        params: list[Any] = [owner]
        if entry[1] is not None:
            sql += ' AND "end" >= ?'
            params.append(entry[1])
        # plain tuples: building a dict per row costs more than the query
        found = [tuple_event(r) for r in self.db.execute(sql + " ORDER BY start", params).rows]
        self._recent[entry] = found
        while len(self._recent) > RECENT_CALENDARS:
            self._recent.popitem(last=False)
        return found

    def keep_only(self, event: Event) -> set[str]:
        """Cache ``event`` and forget other calendars' stale copies of the same booking;
        the next sync brings them back as they now are."""
        owners = {event.owner}
        if event.key:
            rows = self.db.execute(
                "SELECT DISTINCT owner FROM events WHERE key = ?", [event.key]
            ).rows
            owners.update(r[0] for r in rows)
        for owner in owners:
            self._forget(owner)
            self._wrote(owner)
        with self.atomic():
            if event.key:
                self.db.execute(
                    "DELETE FROM events WHERE key = ? AND owner != ?", [event.key, event.owner]
                )
            self.db.table("events").upsert(event_row(event))
        return owners

    def event_by_key(self, key: str) -> Event | None:
        rows = self._query("SELECT * FROM events WHERE key = ? ORDER BY owner LIMIT 1", [key])
        return row_event(rows[0]) if rows else None

    # --- bookings ----------------------------------------------------------------------

    def booking(self, key: str) -> StoredBooking | None:
        rows = self._query("SELECT * FROM bookings WHERE key = ?", [key])
        return row_booking(rows[0]) if rows else None

    def bookings(self, relationship: str | None = None) -> list[StoredBooking]:
        if relationship:
            rows = self._query("SELECT * FROM bookings WHERE relationship = ?", [relationship])
        else:
            rows = self._query("SELECT * FROM bookings")
        return [row_booking(r) for r in rows]

    def unsettled(self, relationships: Sequence[str] | None = None) -> list[StoredBooking]:
        """The bookings a crash may have left ``pending`` or ``moving`` (of these
        relationships; None: of every one)."""
        sql = "SELECT * FROM bookings WHERE status IN ('pending', 'moving')"
        sql, params = among(sql, "relationship", relationships)
        return [row_booking(r) for r in self._query(sql, params)]

    def save_booking(self, row: dict[str, Any], now: datetime) -> None:
        """Record what ``row`` says of a booking (its columns by name, timestamps as
        the store's text), keeping the columns it leaves out as they were."""
        with self.atomic():
            found = self._query("SELECT * FROM bookings WHERE key = ?", [row["key"]])
            existing = found[0] if found else None
            row = {
                **(existing or {"created_at": to_store(now)}),
                **self._settled("bookings", row),
                "updated_at": to_store(now),
            }
            self.db.table("bookings").upsert(row)

    @property
    def mail_secret(self) -> bytes:
        """The store's random secret for Message-IDs (``mailplan.message_id``), made once
        with the store (or by its migration to version 7) and never changed, so that
        ``cadence plan`` and ``cadence run`` give a mail the same Message-ID."""
        return bytes.fromhex(
            self._query("SELECT value FROM meta WHERE name = 'mail_secret'")[0]["value"]
        )

    # --- outbox ------------------------------------------------------------------------

    def outbox(self, key: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM outbox WHERE key = ?", [key])
        return rows[0] if rows else None

    def outbox_rows(
        self, meeting: str | None = None, relationships: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """The mails of a meeting, or of these relationships (with those of none), or
        every mail."""
        if meeting:
            return self._query("SELECT * FROM outbox WHERE meeting = ?", [meeting])
        if relationships is not None:
            sql, params = among("SELECT * FROM outbox WHERE (1 = 1", "relationship", relationships)
            sql += " OR relationship IS NULL)"
            return self._query(sql + " ORDER BY created_at", params)
        return self._query("SELECT * FROM outbox ORDER BY created_at")

    def save_outbox(self, row: dict[str, Any], now: datetime) -> None:
        with self.atomic():
            existing = self.outbox(row["key"])
            row = {**(existing or {"created_at": to_store(now)}), **self._settled("outbox", row)}
            self.db.table("outbox").upsert(row)

    def outbox_by_message_id(self, message_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM outbox WHERE message_id = ?", [message_id])
        return rows[0] if rows else None

    # --- meetings ----------------------------------------------------------------------

    def save_meetings(self, relationship: str, rows: list[dict[str, Any]], tick: int) -> None:
        with self.atomic():
            self.db.execute("DELETE FROM meetings WHERE relationship = ?", [relationship])
            if rows:
                self.db.table("meetings").upsert_all([{**r, "tick": tick} for r in rows])

    def meeting_rows(self) -> dict[str, list[dict[str, Any]]]:
        """The stored meetings per relationship, as ``save_meetings`` was given them."""
        out: dict[str, list[dict[str, Any]]] = {}
        sql = 'SELECT id, relationship, series, stage, start, "end", status, key, declined_by'
        for row in self._query(sql + " FROM meetings ORDER BY start"):
            out.setdefault(row["relationship"], []).append(row)
        return out

    def meetings(self, relationship: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT * FROM meetings"
        params: list[Any] = []
        if relationship:
            sql += " WHERE relationship = ?"
            params.append(relationship)
        return self._query(sql + " ORDER BY start", params)

    # --- relationships watched -------------------------------------------------------

    def watched(self, relationships: Sequence[str] | None = None) -> dict[str, datetime]:
        """When Cadence began watching each relationship it has seen (of these; None:
        every one)."""
        sql = "SELECT relationship, since FROM watched WHERE 1 = 1"
        rows = self._query(*among(sql, "relationship", relationships))
        return {r["relationship"]: from_store(r["since"]) for r in rows}

    def watch(
        self, relationships: Sequence[str], now: datetime, only: bool = False
    ) -> dict[str, datetime]:
        """Record ``now`` as the watch start of each relationship not seen before (one
        added to the config later starts its own watch then); return every watch start
        (``only``: those of ``relationships``)."""
        with self.atomic():
            self.db.table("watched").insert_all(
                [{"relationship": r, "since": to_store(now)} for r in dict.fromkeys(relationships)],
                ignore=True,
            )
        return self.watched(relationships if only else None)

    # --- ticks and audit ---------------------------------------------------------------

    def interrupt_running(self) -> list[dict[str, Any]]:
        """Mark the ticks left ``running`` as ``interrupted`` and return them as they were.

        Only a tick that holds the tick lock may call this: then no other tick runs, so
        a ``running`` row is one whose process died (killed, a power cut) mid-way, and
        every claim on a booking or mail is one it left (``release_claims``).
        """
        with self.atomic():
            rows = self._query(
                "SELECT id, now, started_at FROM ticks WHERE status = 'running' ORDER BY id"
            )
            if rows:
                self.db.execute("UPDATE ticks SET status = 'interrupted' WHERE status = 'running'")
            self.release_claims()
        return rows

    def ticks(self, limit: int = 10) -> list[dict[str, Any]]:
        """The last ``limit`` ticks, newest first."""
        return self._query("SELECT * FROM ticks ORDER BY id DESC LIMIT ?", [limit])

    def begin_tick(self, now: datetime, started: datetime) -> int:
        with self.atomic():
            made = self.db.table("ticks").insert(
                {"now": to_store(now), "started_at": to_store(started), "status": "running"}
            )
            return int(made or 0)

    def end_tick(self, tick: int, status: str, summary: dict[str, Any], finished: datetime) -> None:
        self._forget()
        with self.atomic():
            self.db.execute(
                "UPDATE ticks SET status = ?, summary = ?, finished_at = ? WHERE id = ?",
                [status, json.dumps(summary), to_store(finished), tick],
            )

    def audit(
        self,
        tick: int | None,
        at: datetime,
        kind: str,
        message: str,
        relationship: str | None = None,
        series: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        with self.atomic():
            self.db.table("audit").insert(
                {
                    "tick": tick,
                    "at": to_store(at),
                    "relationship": relationship,
                    "series": series,
                    "kind": kind,
                    "message": message,
                    "data": json.dumps(data) if data else None,
                }
            )

    def audit_rows(
        self,
        tick: int | None = None,
        relationship: str | None = None,
        kind: str | None = None,
        limit: int = 200,
    ) -> list[dict[str, Any]]:
        sql = "SELECT * FROM audit WHERE 1 = 1"
        params: list[Any] = []
        if tick is not None:
            sql += " AND tick = ?"
            params.append(tick)
        if relationship and "/" in relationship:
            # a whole relationship id: an indexed lookup, not a scan of the whole log
            sql += " AND relationship = ?"
            params.append(relationship)
        elif relationship:
            sql += f" AND relationship {self._like} ?"
            params.append(f"%{relationship}%")
        if kind:
            sql += " AND kind = ?"
            params.append(kind)
        sql += " ORDER BY id DESC LIMIT ?"
        params.append(limit)
        return list(reversed(self._query(sql, params)))

    def last_tick(self) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM ticks ORDER BY id DESC LIMIT 1")
        return rows[0] if rows else None

    def integrity(self) -> str:
        if self.backend != "sqlite":
            return "ok"  # PostgreSQL checks its pages itself (and its checksums, if on)
        return str(self.db.execute("PRAGMA integrity_check").rows[0][0])

    @property
    def _like(self) -> str:
        """The LIKE that ignores ASCII case, as SQLite's does."""
        return "LIKE" if self.backend == "sqlite" else "ILIKE"


class _Undo(Exception):
    """Roll back a transaction that only tried whether it could write."""
