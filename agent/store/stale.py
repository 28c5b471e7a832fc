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
