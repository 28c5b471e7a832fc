"""The people an employee chose to read their plan, one by one (table ``plan_readers``).

Leaders and mentors read a plan when the employee shares it with them (``plans.shared``);
anyone else reads it only when named here. Kept apart from ``plans`` so that a plan
saved from a file (``plan-import``) never changes who may read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from agent.core.timestamps import from_store, to_store
from agent.store.sqlite import Store


@dataclass(frozen=True)
class Reader:
    email: str
    added_at: datetime
    added_by: str


class ReaderRows:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db

    def of(self, employee: str) -> list[Reader]:
        """Who ``employee`` chose, in the order they were added."""
        rows = self.db.query(
            "SELECT reader, added_at, added_by FROM plan_readers WHERE employee = ? "
            "ORDER BY added_at, reader",
            [employee],
        )
        return [Reader(r["reader"], from_store(r["added_at"]), r["added_by"]) for r in rows]

    def plans_for(self, reader: str) -> list[str]:
        """The employees who chose ``reader``."""
        rows = self.db.query(
            "SELECT employee FROM plan_readers WHERE reader = ? ORDER BY employee", [reader]
        )
        return [r["employee"] for r in rows]

    def may_read(self, employee: str, reader: str) -> bool:
        rows = self.db.query(
            "SELECT 1 FROM plan_readers WHERE employee = ? AND reader = ?", [employee, reader]
        )
        return bool(list(rows))

    def choose(self, employee: str, readers: set[str], by: str, now: datetime) -> None:
        """Make ``readers`` the whole list: the others lose access at once, those kept
        keep when they were added."""
        with self.store.atomic():
            have = {r.email for r in self.of(employee)}
            for gone in have - readers:
                self.db.execute(
                    "DELETE FROM plan_readers WHERE employee = ? AND reader = ?", [employee, gone]
                )
            for new in sorted(readers - have):
                self.db.execute(
                    "INSERT INTO plan_readers (employee, reader, added_at, added_by) "
                    "VALUES (?, ?, ?, ?)",
                    [employee, new, to_store(now), by],
                )
