"""The SQLite store: event cache, sync cursors, bookings, outbox, meetings and audit.

WAL mode, the schema version in ``PRAGMA user_version``, forward migrations. Bookings
and outbox rows are written before their side effect ("pending") and after it
("done"), so a restart after a crash finishes the work without repeating it.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import json
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import sqlite_utils

from agent.core import files
from agent.core.model import Changes, Event, Interval
from agent.core.records import StoredBooking
from agent.core.timestamps import from_store, to_store
from agent.store import broken
from agent.store.migrations import MIGRATIONS, SCHEMA_VERSION
from agent.store.rows import EVENT_COLUMNS, event_row, row_booking, row_event, tuple_event

#: how many calendars' events the store keeps parsed between two reads (see Store._recent)
RECENT_CALENDARS = 32


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


class Store:
    """A thin, typed layer over the SQLite file; every unit of work is atomic."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = None if path is None or str(path) == ":memory:" else Path(path)
        try:
            self._open()
        except (sqlite3.Error, OSError) as exc:
            raise broken.explain(self.path or Path(":memory:"), exc) from exc
        #: the events of the calendars read last, by (owner, since): a partner's calendar
        #: is read for each of their relationships, parsed once and shared; forgotten when
        #: the calendar changes and at the end of every tick, so it never holds much
        self._recent: OrderedDict[tuple[str, str | None], list[Event]] = OrderedDict()
        #: a count per calendar of the writes to its events by this connection, and one
        #: for writes to many calendars or by another process (see ``calendar_version``)
        self._writes: dict[str, int] = {}
        self._epoch = 0
        self._data_version: int | None = None

    def _open(self) -> None:
        if self.path is None:
            self.db = sqlite_utils.Database(memory=True)
            self.db.conn.isolation_level = None
        else:
            if self.path.is_dir():
                raise IsADirectoryError(errno.EISDIR, "a folder", str(self.path))
            # SQLite gives the -wal and -shm files the mode of the store itself
            files.create_private(self.path)
            conn = sqlite3.connect(str(self.path), timeout=30, isolation_level=None)
            self.db = sqlite_utils.Database(conn)
            _patiently(lambda: self.db.execute("PRAGMA journal_mode=WAL"))
            self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("PRAGMA busy_timeout=30000")
        _patiently(self.migrate)

    def close(self) -> None:
        self.db.close()

    def check_usable(self) -> None:
        """Raise ``StoreError`` now if the store is damaged or cannot be written (a
        read-only file opens and reads fine), before a tick finds out halfway; reads
        every page once (``quick_check``) and writes nothing."""
        try:
            found = self.db.execute("PRAGMA quick_check").fetchone()[0]
            if found != "ok":
                raise sqlite3.DatabaseError(f"database disk image is malformed: {found}")
            self.db.execute("BEGIN IMMEDIATE")
            try:
                self.db.execute(f"PRAGMA user_version = {self.version}")
            finally:
                if self.db.conn.in_transaction:
                    self.db.execute("ROLLBACK")
        except sqlite3.Error as exc:
            raise broken.explain(self.path or Path(":memory:"), exc) from exc

    @property
    def version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        """Apply every migration newer than the file's schema version."""
        current = self.version
        if current > SCHEMA_VERSION:
            raise broken.StoreError(
                f"store {self.path} has schema version {current}, newer than this Cadence "
                f"({SCHEMA_VERSION}): upgrade Cadence, or point `store:` at another file"
            )
        for number, step in enumerate(MIGRATIONS[current:], start=current + 1):
            # Take the write lock first, then look again: another process opening the
            # same new file may have applied this step in the meantime.
            self.db.execute("BEGIN IMMEDIATE")
            try:
                if self.version < number:
                    step(self.db)
                    self.db.execute(f"PRAGMA user_version = {number}")
                self.db.execute("COMMIT")
            except BaseException:
                if self.db.conn.in_transaction:
                    self.db.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def atomic(self) -> Iterator[Any]:
        """A write transaction holding the write lock from the start: a deferred one
        that read first fails at once (no waiting) when another process wrote meanwhile,
        as workers of the task queue do. Nested: a savepoint."""
        if self.db.conn.in_transaction:
            with self.db.atomic():
                yield self.db
            return
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            if self.db.conn.in_transaction:
                self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return list(self.db.query(sql, params))

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

    def notice_other_writers(self) -> bool:
        """Whether another connection committed since the last call (then every
        ``calendar_version`` changes)."""
        version = int(self.db.execute("PRAGMA data_version").fetchone()[0])
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
                self.db.table("events").upsert_all(rows, pk=("owner", "id"))
            # plain SQL: this runs for every calendar on every tick
            self.db.execute(
                "INSERT INTO sync_state (owner, cursor, synced_at, error) VALUES (?, ?, ?, NULL)"
                " ON CONFLICT (owner) DO UPDATE SET cursor = excluded.cursor,"
                " synced_at = excluded.synced_at, error = NULL",
                [owner, changes.cursor, to_store(now)],
            )

    def cursors(self) -> dict[str, str | None]:
        """Every calendar's sync cursor, in one query."""
        return {
            r["owner"]: r["cursor"] for r in self._query("SELECT owner, cursor FROM sync_state")
        }

    def forget_cursor(self, owner: str) -> None:
        with self.atomic():
            self.db.execute("DELETE FROM sync_state WHERE owner = ?", [owner])

    def put_event(self, event: Event) -> None:
        self._forget(event.owner)
        self._wrote(event.owner)
        with self.atomic():
            self.db.table("events").upsert(event_row(event), pk=("owner", "id"))

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
        sql += 'AND "end" >= ?) OR (NOT coalesce(all_day, 0)'
        params: list[Any] = [owner, after, after]
        wanted = sorted({o.lower() for o in others})
        plain = [w for w in wanted if w.isascii() and w.isprintable() and not set(w) & set('"\\')]
        if plain == wanted and owner.isascii() and owner.lower() not in wanted:
            # LIKE ignores ASCII case as lower() does, and its _ and % only widen the match
            named = " OR ".join("attendees LIKE ? OR organizer LIKE ?" for _ in wanted)
            sql += (
                f" AND ({named or '0'} OR instr(attendees, '\\u')"
                " OR length(organizer) != length(CAST(organizer AS BLOB)))"
            )
            for w in wanted:
                params += [f'%"{w}"%', w]
        cursor = self.db.conn.execute(sql + ")) ORDER BY start", params)
        return [tuple_event(r) for r in cursor]

    def events_during(self, owners: Iterable[str], during: Interval) -> list[Event]:
        """The events of ``owners`` that overlap ``during`` (by the index on their end)."""
        found: list[Event] = []
        for owner in dict.fromkeys(owners):
            cursor = self.db.conn.execute(
                f'SELECT {EVENT_COLUMNS} FROM events WHERE owner = ? AND "end" > ? AND start < ?',
                [owner, to_store(during.start), to_store(during.end)],
            )
            found.extend(tuple_event(r) for r in cursor)
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
        # plain tuples from sqlite3: building a dict per row costs more than the query
        cursor = self.db.conn.execute(sql + " ORDER BY start", params)
        found = [tuple_event(r) for r in cursor]
        self._recent[entry] = found
        while len(self._recent) > RECENT_CALENDARS:
            self._recent.popitem(last=False)
        return found

    def keep_only(self, event: Event) -> set[str]:
        """Cache ``event`` and forget other calendars' stale copies of the same booking;
        the next sync brings them back as they now are."""
        owners = {event.owner}
        if event.key:
            rows = self.db.conn.execute(
                "SELECT DISTINCT owner FROM events WHERE key = ?", [event.key]
            ).fetchall()
            owners.update(r[0] for r in rows)
        for owner in owners:
            self._forget(owner)
            self._wrote(owner)
        with self.atomic():
            if event.key:
                self.db.execute(
                    "DELETE FROM events WHERE key = ? AND owner != ?", [event.key, event.owner]
                )
            self.db.table("events").upsert(event_row(event), pk=("owner", "id"))
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

    def save_booking(self, row: dict[str, Any], now: datetime) -> None:
        """Record what ``row`` says of a booking (its columns by name, timestamps as
        the store's text), keeping the columns it leaves out as they were."""
        with self.atomic():
            found = self._query("SELECT * FROM bookings WHERE key = ?", [row["key"]])
            existing = found[0] if found else None
            row = {
                **(existing or {"created_at": to_store(now)}),
                **row,
                "updated_at": to_store(now),
            }
            self.db.table("bookings").upsert(row, pk="key")

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

    def outbox_rows(self, meeting: str | None = None) -> list[dict[str, Any]]:
        if meeting:
            return self._query("SELECT * FROM outbox WHERE meeting = ?", [meeting])
        return self._query("SELECT * FROM outbox ORDER BY created_at")

    def save_outbox(self, row: dict[str, Any], now: datetime) -> None:
        with self.atomic():
            existing = self.outbox(row["key"])
            row = {**(existing or {"created_at": to_store(now)}), **row}
            self.db.table("outbox").upsert(row, pk="key")

    def outbox_by_message_id(self, message_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM outbox WHERE message_id = ?", [message_id])
        return rows[0] if rows else None

    # --- replies and the actions they carry --------------------------------------------

    def reply(self, message_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM replies WHERE message_id = ?", [message_id])
        return rows[0] if rows else None

    def read_refs(self) -> set[str]:
        """Where the replies already read came from (a file, a mailbox UID...)."""
        return {r["ref"] for r in self._query("SELECT ref FROM replies WHERE ref IS NOT NULL")}

    def replies(
        self, employee: str | None = None, status: str | None = None
    ) -> list[dict[str, Any]]:
        sql = "SELECT * FROM replies WHERE 1 = 1"
        params: list[Any] = []
        if employee:
            sql += " AND employee = ?"
            params.append(employee)
        if status:
            sql += " AND status = ?"
            params.append(status)
        return self._query(sql + " ORDER BY received_at, message_id", params)

    def save_reply(
        self, row: dict[str, Any], actions: Sequence[dict[str, Any]], now: datetime
    ) -> None:
        """Record one reply and upsert its actions (by employee and title) atomically."""
        with self.atomic():
            self.db.table("replies").upsert({**row, "recorded_at": to_store(now)}, pk="message_id")
            self.record_actions(actions, now)

    def record_actions(self, actions: Sequence[dict[str, Any]], now: datetime) -> None:
        """Upsert action items by employee and title (a reply's, or one ticked off on the
        web), atomically."""
        with self.atomic():
            for action in actions:
                key = [action["employee"], action["norm"]]
                old = self._query("SELECT * FROM actions WHERE employee = ? AND norm = ?", key)
                merged = {**(old[0] if old else {"created_at": to_store(now)}), **action}
                merged["updated_at"] = to_store(now)
                if action["status"] == "done" and not (old and old[0]["done_at"]):
                    merged["done_at"] = to_store(now)
                if old:
                    self.db.table("actions").update(old[0]["id"], merged)
                else:
                    self.db.table("actions").insert(merged)

    def updates_since(self, relationship: str, since: datetime) -> int:
        """How many recorded replies of ``relationship`` since ``since`` have an updated
        recap planned (the count ``recap.max_updates_per_day`` caps)."""
        rows = self._query(
            "SELECT COUNT(*) AS n FROM replies WHERE relationship = ? AND status = 'recorded'"
            " AND update_key IS NOT NULL AND recorded_at >= ?",
            [relationship, to_store(since)],
        )
        return int(rows[0]["n"])

    def reply_marks(self, account: str) -> dict[str, str]:
        """How far replies were read in each mailbox of ``account`` (see ReplyReader)."""
        rows = self._query("SELECT mailbox, mark FROM reply_marks WHERE account = ?", [account])
        return {r["mailbox"]: r["mark"] for r in rows}

    def save_reply_marks(self, account: str, marks: dict[str, str], now: datetime) -> None:
        with self.atomic():
            for mailbox, mark in marks.items():
                self.db.table("reply_marks").upsert(
                    {"account": account, "mailbox": mailbox, "mark": mark,
                     "updated_at": to_store(now)},
                    pk=("account", "mailbox"),
                )  # fmt: skip

    def actions(self, employee: str) -> list[dict[str, Any]]:
        return self._query("SELECT * FROM actions WHERE employee = ? ORDER BY id", [employee])

    def all_actions(self) -> list[dict[str, Any]]:
        """Every employee's recorded actions, in the order they were recorded."""
        return self._query("SELECT * FROM actions ORDER BY id")

    # --- meetings ----------------------------------------------------------------------

    def save_meetings(self, relationship: str, rows: list[dict[str, Any]], tick: int) -> None:
        with self.atomic():
            self.db.execute("DELETE FROM meetings WHERE relationship = ?", [relationship])
            if rows:
                self.db.table("meetings").insert_all(
                    [{**r, "tick": tick} for r in rows], pk=("relationship", "id"), replace=True
                )

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

    def watched(self) -> dict[str, datetime]:
        """When Cadence began watching each relationship it has seen."""
        rows = self._query("SELECT relationship, since FROM watched")
        return {r["relationship"]: from_store(r["since"]) for r in rows}

    def watch(self, relationships: Iterable[str], now: datetime) -> dict[str, datetime]:
        """Record ``now`` as the watch start of each relationship not seen before (one
        added to the config later starts its own watch then); return every watch start."""
        with self.atomic():
            self.db.conn.executemany(
                "INSERT OR IGNORE INTO watched (relationship, since) VALUES (?, ?)",
                [(r, to_store(now)) for r in relationships],
            )
        return self.watched()

    # --- ticks and audit ---------------------------------------------------------------

    def interrupt_running(self) -> list[dict[str, Any]]:
        """Mark the ticks left ``running`` as ``interrupted`` and return them as they were.

        Only a tick that holds the tick lock may call this: then no other tick runs, so
        a ``running`` row is one whose process died (killed, a power cut) mid-way.
        """
        with self.atomic():
            rows = self._query(
                "SELECT id, now, started_at FROM ticks WHERE status = 'running' ORDER BY id"
            )
            if rows:
                self.db.execute("UPDATE ticks SET status = 'interrupted' WHERE status = 'running'")
        return rows

    def ticks(self, limit: int = 10) -> list[dict[str, Any]]:
        """The last ``limit`` ticks, newest first."""
        return self._query("SELECT * FROM ticks ORDER BY id DESC LIMIT ?", [limit])

    def begin_tick(self, now: datetime, started: datetime) -> int:
        with self.atomic():
            cur = self.db.execute(
                "INSERT INTO ticks (now, started_at, status) VALUES (?, ?, 'running')",
                [to_store(now), to_store(started)],
            )
            return int(cur.lastrowid or 0)

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
            sql += " AND relationship LIKE ?"
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
        return str(self.db.execute("PRAGMA integrity_check").fetchone()[0])
