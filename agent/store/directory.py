"""The directory's rows in the store: people as last read, lines, reads, and the erased.

A read is applied in one transaction (people, lines and the read's row), so a process
killed mid-way leaves the last read or the new one, never half of each.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Table, tuple_

from agent.core.directory import Entry, Line
from agent.core.timestamps import from_store, to_store
from agent.store import mailbox, schema
from agent.store.sqlite import Store

#: tables holding rows about relationships ("employee/partner"), and the column naming it
_BY_RELATIONSHIP = ("bookings", "outbox", "meetings", "audit", "replies", "actions")


def _line(row: Mapping[str, Any]) -> Line:
    return Line(
        row["employee"],
        row["leader"],
        from_store(row["since"]),
        from_store(row["until"]) if row["until"] else None,
        row["reason"],
        row["successor"],
    )


class DirectoryRows:
    """Reads and writes of the directory's tables on one store."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db

    def entries(self, *, left: bool = False) -> dict[str, Entry]:
        """The people of the last read applied; with ``left``, those who left too (their
        data is kept for the retention)."""
        where = "" if left else " WHERE left_at IS NULL"
        rows = self.db.query("SELECT entry FROM directory_people" + where)
        return {e.email: e for e in (Entry.of(json.loads(r["entry"])) for r in rows)}

    def left(self) -> set[str]:
        """People who have left (their data is kept for the retention)."""
        rows = self.db.query("SELECT email FROM directory_people WHERE left_at IS NOT NULL")
        return {r["email"] for r in rows}

    def lines(
        self,
        email: str | None = None,
        *,
        open_only: bool = True,
        ended_after: datetime | None = None,
    ) -> list[Line]:
        """Open lines; or all (``open_only=False``); or those ended after a time."""
        sql, params = "SELECT * FROM lines WHERE 1 = 1", []
        if ended_after is not None:
            sql += " AND until IS NOT NULL AND until > ?"
            params.append(to_store(ended_after))
        elif open_only:
            sql += " AND until IS NULL"
        if email is not None:
            sql += " AND (employee = ? OR leader = ?)"
            params += [email, email]
        return [_line(r) for r in self.db.query(sql + " ORDER BY since, employee", params)]

    def last_read(self) -> dict[str, Any] | None:
        rows = list(self.db.query("SELECT * FROM directory_reads ORDER BY id DESC LIMIT 1"))
        return rows[0] if rows else None

    def cursor(self) -> str | None:
        """The delta cursor of the last read applied."""
        rows = list(
            self.db.query(
                "SELECT cursor FROM directory_reads WHERE status = 'applied' "
                "ORDER BY id DESC LIMIT 1"
            )
        )
        return rows[0]["cursor"] if rows else None

    def record_read(
        self,
        now: datetime,
        people: int,
        changes: int,
        status: str,
        reason: str | None = None,
        cursor: str | None = None,
    ) -> None:
        with self.store.atomic():
            self.db.table("directory_reads").insert(
                {
                    "at": to_store(now),
                    "people": people,
                    "changes": changes,
                    "status": status,
                    "reason": reason,
                    "cursor": cursor,
                }
            )

    def apply(
        self,
        now: datetime,
        entries: Mapping[str, Entry],
        left: Iterable[str],
        ending: Iterable[Line],
        starting: Iterable[Line],
        *,
        changes: int,
        cursor: str | None,
    ) -> None:
        """Store one read: its people, the people who left, and the lines that end and
        start, with the read's row, all at once."""
        stamp = to_store(now)
        with self.store.atomic():
            for email, e in entries.items():
                self.db.execute(
                    "INSERT INTO directory_people (email, entry, seen_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (email) DO UPDATE SET entry = excluded.entry, "
                    "seen_at = excluded.seen_at, left_at = NULL",
                    [email, json.dumps(e.data(), sort_keys=True), stamp],
                )
            for email in left:
                self.db.execute(
                    "UPDATE directory_people SET left_at = ? WHERE email = ? AND left_at IS NULL",
                    [stamp, email],
                )
            for line in ending:
                self.db.execute(
                    "UPDATE lines SET until = ?, reason = ?, successor = ? "
                    "WHERE employee = ? AND leader = ? AND until IS NULL",
                    [stamp, line.reason, line.successor, line.employee, line.leader],
                )
            for line in starting:
                self.db.table("lines").insert_all(
                    [{"employee": line.employee, "leader": line.leader,
                      "since": to_store(line.since)}],
                    ignore=True,
                )  # fmt: skip
            self.record_read(now, len(entries), changes, "applied", cursor=cursor)

    def gone_before(self, cutoff: datetime) -> list[str]:
        """People who left before ``cutoff``: their retention is over."""
        rows = self.db.query(
            "SELECT email FROM directory_people WHERE left_at IS NOT NULL AND left_at < ?",
            [to_store(cutoff)],
        )
        return [r["email"] for r in rows]

    def forgotten(self, email: str) -> str | None:
        rows = list(self.db.query("SELECT forgotten_at FROM tombstones WHERE email = ?", [email]))
        return rows[0]["forgotten_at"] if rows else None

    # --- one person's data --------------------------------------------------------------

    TABLES = (
        "directory_people", "lines", "sync_state", "events", "reply_marks", "watched",
        "plans", "plan_history", "plan_readers", "used_links", "pauses", "meta",
        *_BY_RELATIONSHIP,
    )  # fmt: skip

    def _rowids(self, table: str, email: str) -> list[tuple[Any, ...]]:
        """The rows of ``table`` about ``email``: by relationship ("employee/partner"),
        owner, address column, or (audit messages, recipient lists) by the address as a
        whole word, never as part of another (ana@ in diana@); each row by its key."""
        like = email.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        op = self.store._like
        by_rel = f"relationship {op} ? ESCAPE '\\' OR relationship {op} ? ESCAPE '\\'"
        keys = [c.name for c in schema.metadata.tables[table].primary_key.columns]
        names = ", ".join(f'"{k}"' for k in keys)
        rel_args = [f"{like}/%", f"%/{like}"]
        exact: dict[str, tuple[str, list[str]]] = {
            "events": ("owner = ?", [email]),
            "sync_state": ("owner = ?", [email]),
            "directory_people": ("email = ?", [email]),
            "lines": ("employee = ? OR leader = ?", [email, email]),
            "reply_marks": ("mailbox = ?", [email]),
            "watched": (by_rel, rel_args),
            "bookings": (by_rel, rel_args),
            "meetings": (by_rel, rel_args),
            "replies": (f"{by_rel} OR employee = ? OR sender = ?", [*rel_args, email, email]),
            "actions": (f"{by_rel} OR employee = ?", [*rel_args, email]),
            "plans": ("employee = ?", [email]),
            "plan_history": ("employee = ?", [email]),
            "plan_readers": ("employee = ? OR reader = ?", [email, email]),
            "used_links": ("who = ?", [email]),
            "pauses": ("employee = ?", [email]),
            "meta": ("name = ?", [f"{mailbox.PREFIX}{email}"]),  # the mailbox's language
        }
        if table in exact:
            clause, args = exact[table]
            return self.db.execute(f"SELECT {names} FROM {table} WHERE {clause}", args).rows
        word = re.compile(rf"(?<![\w.+-]){re.escape(email)}(?![\w.-])", re.IGNORECASE)
        column = "message" if table == "audit" else "recipients"
        rows = self.db.query(
            f"SELECT * FROM {table} WHERE {by_rel} OR {column} {op} ? ESCAPE '\\'"
            + (" OR sender = ?" if table == "outbox" else ""),
            [*rel_args, f"%{like}%", *([email] if table == "outbox" else [])],
        )
        return [
            tuple(r[k] for k in keys)
            for r in rows
            if r.get("sender") == email
            or (r["relationship"] or "").split("/").count(email)
            or word.search(r[column] or "")
        ]

    def export(self, email: str) -> dict[str, list[dict[str, Any]]]:
        """Every row the store holds about ``email``, by table."""
        out: dict[str, list[dict[str, Any]]] = {}
        for table in self.TABLES:
            ids = self._rowids(table, email)
            rows = schema.metadata.tables[table]
            out[table] = [
                row
                for chunk in _chunks(ids)
                for row in self.db.query(rows.select().where(_among(rows, chunk)))
            ]
        return out

    def forget(self, email: str, now: datetime) -> dict[str, int]:
        """Erase every row about ``email`` and leave a tombstone (who and when, nothing
        else); return how many rows each table lost."""
        counts: dict[str, int] = {}
        with self.store.atomic():
            for table in self.TABLES:
                ids = self._rowids(table, email)
                rows = schema.metadata.tables[table]
                for chunk in _chunks(ids):
                    self.db.run(rows.delete().where(_among(rows, chunk)))
                counts[table] = len(ids)
            self.db.table("tombstones").upsert({"email": email, "forgotten_at": to_store(now)})
        return counts


def _among(table: Table, keys: list[tuple[Any, ...]]) -> Any:
    """The rows of ``table`` whose primary key is one of ``keys``."""
    columns = list(table.primary_key.columns)
    if len(columns) == 1:
        return columns[0].in_([k[0] for k in keys])
    return tuple_(*columns).in_(keys)


def _chunks(ids: list[tuple[Any, ...]], size: int = 500) -> list[list[tuple[Any, ...]]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]
