"""Plans kept in the store, each with its history, and the single-use links already used.

Once the web app is on, an employee's plan lives here: the web app and ``cadence
plan-import`` write it, the ticks read it before the YAML file (a plan in the store
wins; ``cadence plan-export`` writes it back to the file). Every save adds a history
row naming who changed which keys, and when, with the whole plan as it became.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agent.core.plan import Plan
from agent.core.timestamps import from_store, to_store
from agent.store.rows import among
from agent.store.sqlite import Store


class Conflict(Exception):
    """The plan changed since the version the editor started from."""


@dataclass(frozen=True)
class StoredPlan:
    employee: str
    plan: Plan
    #: whether the employee's leaders and mentors may read the plan
    shared: bool
    version: int
    updated_at: datetime
    updated_by: str


@dataclass(frozen=True)
class Change:
    """One save of a plan: who, when, how (``web``, ``import``...) and the keys changed."""

    version: int
    at: datetime
    by: str
    how: str
    changes: tuple[dict[str, Any], ...]


def changes(before: Plan | None, after: Plan) -> list[dict[str, Any]]:
    """The top-level keys whose values differ, each with its value before and after."""
    old = before.model_dump(mode="json") if before is not None else {}
    new = after.model_dump(mode="json")
    return [
        {"field": key, "before": old.get(key), "after": new[key]}
        for key in new
        if old.get(key) != new[key]
    ]


class PlanRows:
    """Reads and writes of the ``plans``, ``plan_history`` and ``used_links`` tables."""

    def __init__(self, store: Store) -> None:
        self.db = store.db
        self.store = store

    def get(self, employee: str) -> StoredPlan | None:
        rows = list(self.db.query("SELECT * FROM plans WHERE employee = ?", [employee]))
        return _stored(rows[0]) if rows else None

    def all(self) -> dict[str, StoredPlan]:
        return {r["employee"]: _stored(r) for r in self.db.query("SELECT * FROM plans")}

    def save(
        self,
        employee: str,
        plan: Plan,
        *,
        by: str,
        how: str,
        now: datetime,
        shared: bool | None = None,
        version: int | None = None,
    ) -> StoredPlan:
        """Store ``plan`` as the employee's, with a history row; return what is stored.

        ``version`` is the one the editor started from: raise Conflict when the plan
        changed since. A save that changes nothing adds no history row.
        """
        with self.store.atomic():
            current = self.get(employee)
            if version is not None and (current.version if current else 0) != version:
                raise Conflict(
                    f"the plan of {employee} changed since you opened it "
                    f"(by {current.updated_by if current else 'nobody'}): reload and edit again"
                )
            share = shared if shared is not None else (current.shared if current else False)
            diff = changes(current.plan if current else None, plan)
            if current is not None and current.shared != share:
                diff.append({"field": "shared", "before": current.shared, "after": share})
            if current is not None and not diff:
                return current
            number = (current.version if current else 0) + 1
            text = plan.model_dump_json()
            row = {
                "employee": employee,
                "plan": text,
                "shared": int(share),
                "version": number,
                "updated_at": to_store(now),
                "updated_by": by,
            }
            self.db.table("plans").upsert(row, pk="employee")
            self.db.table("plan_history").insert(
                {
                    "employee": employee,
                    "version": number,
                    "at": to_store(now),
                    "by": by,
                    "how": how,
                    "changes": json.dumps(diff),
                    "plan": text,
                }
            )
        return _stored(row)

    def history(self, employee: str, limit: int = 50) -> list[Change]:
        """The employee's plan changes, newest first."""
        rows = self.db.query(
            "SELECT * FROM plan_history WHERE employee = ? ORDER BY id DESC LIMIT ?",
            [employee, limit],
        )
        return [
            Change(
                r["version"],
                from_store(r["at"]),
                r["by"],
                r["how"],
                tuple(json.loads(r["changes"])),
            )
            for r in rows
        ]

    def use_link(
        self, nonce: str, kind: str, who: str | None, now: datetime, data: Any = None
    ) -> bool:
        """Mark a single-use link used: True the first time, False ever after."""
        with self.store.atomic():
            found = list(self.db.query("SELECT 1 FROM used_links WHERE nonce = ?", [nonce]))
            if found:
                return False
            self.db.table("used_links").insert(
                {
                    "nonce": nonce,
                    "kind": kind,
                    "who": who,
                    "used_at": to_store(now),
                    "data": json.dumps(data) if data is not None else None,
                }
            )
        return True

    def pauses(self, employees: Sequence[str] | None = None) -> dict[str, datetime]:
        """Each paused employee's cadence (of these employees; None: every one), and
        when it resumes."""
        sql = "SELECT employee, until FROM pauses WHERE 1 = 1"
        rows = self.db.query(*among(sql, "employee", employees))
        return {r["employee"]: from_store(r["until"]) for r in rows}

    def pause(self, employee: str, until: datetime | None, now: datetime) -> None:
        """Pause the employee's cadence until ``until`` (None: resume now)."""
        with self.store.atomic():
            self.db.execute("DELETE FROM pauses WHERE employee = ?", [employee])
            if until is not None:
                self.db.table("pauses").insert(
                    {"employee": employee, "until": to_store(until), "set_at": to_store(now)}
                )

    def link_used(self, nonce: str) -> bool:
        return bool(list(self.db.query("SELECT 1 FROM used_links WHERE nonce = ?", [nonce])))

    def used(self, kind: str, prefixes: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The links of a kind used so far (those whose nonce starts with one of
        ``prefixes``, looked up by the nonce's index; None: all), oldest first, with
        what each recorded."""
        sql, params = "SELECT * FROM used_links WHERE kind = ?", [kind]
        if prefixes is not None:
            # a range per prefix, as both backends' indexes read it (not LIKE)
            ranges = " OR ".join("(nonce >= ? AND nonce < ?)" for _ in prefixes) or "1 = 0"
            sql += f" AND ({ranges})"
            params += [b for p in prefixes for b in (p, p[:-1] + chr(ord(p[-1]) + 1))]
        rows = self.db.query(sql + " ORDER BY used_at", params)
        return [{**r, "data": json.loads(r["data"]) if r["data"] else None} for r in rows]


def _stored(row: dict[str, Any]) -> StoredPlan:
    return StoredPlan(
        row["employee"],
        Plan.model_validate_json(row["plan"]),
        bool(row["shared"]),
        row["version"],
        from_store(row["updated_at"]),
        row["updated_by"],
    )
