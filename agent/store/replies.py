"""Replies to recaps, the action items they carry, and how far each inbox was read:
the part of ``Store`` the reply loop uses."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from agent.core.timestamps import to_store
from agent.store.database import Database
from agent.store.rows import among


class ReplyRows:
    """Mixed into ``Store``, whose ``db`` it uses."""

    db: Database

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        return self.db.query(sql, params)

    def atomic(self) -> Any:
        return self.db.atomic()

    def reply(self, message_id: str) -> dict[str, Any] | None:
        rows = self._query("SELECT * FROM replies WHERE message_id = ?", [message_id])
        return rows[0] if rows else None

    def read_refs(self) -> set[str]:
        """Where the replies already read came from (a file, a mailbox UID...)."""
        return {r["ref"] for r in self._query("SELECT ref FROM replies WHERE ref IS NOT NULL")}

    def replies(
        self,
        employee: str | None = None,
        status: str | None = None,
        relationships: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        """The replies (of an employee, in a status, of these relationships)."""
        sql, params = among("SELECT * FROM replies WHERE 1 = 1", "relationship", relationships)
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
            self.db.table("replies").upsert({**row, "recorded_at": to_store(now)})
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
                     "updated_at": to_store(now)}
                )  # fmt: skip

    def actions(self, employee: str) -> list[dict[str, Any]]:
        return self._query("SELECT * FROM actions WHERE employee = ? ORDER BY id", [employee])

    def all_actions(self, employees: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Every employee's recorded actions (or these employees'), in the order they
        were recorded."""
        sql, params = among("SELECT * FROM actions WHERE 1 = 1", "employee", employees)
        return self._query(sql + " ORDER BY id", params)
