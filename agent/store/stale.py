"""The ticks a killed worker of the task queue left ``running``.

One process ticks at a time without ``queue:``, so every running row it finds at start
is a dead tick's (``Store.interrupt_running``). Workers of the queue tick side by side:
only a row running far longer than a task may run is a dead one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agent.core.timestamps import to_store
from agent.store.sqlite import Store


def interrupt_stale(store: Store, started_before: datetime) -> list[dict[str, Any]]:
    """Mark ``interrupted`` the ticks still running that started before then; return
    them as they were."""
    with store.atomic():
        rows = list(
            store.db.query(
                "SELECT id, now, started_at FROM ticks WHERE status = 'running' "
                "AND started_at < ? ORDER BY id",
                [to_store(started_before)],
            )
        )
        for row in rows:
            store.db.execute("UPDATE ticks SET status = 'interrupted' WHERE id = ?", [row["id"]])
    return rows


def release_claims_of(store: Store, relationships: list[str]) -> int:
    """End the claims on these relationships' bookings and mails; return how many.

    Only a worker holding the leases of every person of these relationships may call
    this: then no other process acts on them, and a claim is one a killed worker left
    (its redelivered task finishes the work instead of waiting out the claim's lease).
    """
    if not relationships:
        return 0
    marks = ", ".join("?" for _ in relationships)
    ended = 0
    with store.atomic():
        for table in ("bookings", "outbox"):
            done = store.db.execute(
                f"UPDATE {table} SET claimed_by = NULL, claimed_until = NULL "
                f"WHERE claimed_by IS NOT NULL AND relationship IN ({marks})",
                relationships,
            )
            ended += max(0, done.rowcount)
    return ended
