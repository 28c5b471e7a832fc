"""Retention: the tick rows and their audit rows that only history needs, deleted once
they are older than ``retention.ticks``.

One tick row a run (one per unit and round in the task queue) adds up: at a 10-minute
tick and 100,000 units, 14 million rows a day. What is deleted is finished ticks (never a
``running`` one) and the audit rows written under them; never bookings, mails, meetings,
claims or anything else a retry or a later tick reads to stay idempotent. An audit row
of no tick (the web app's, a command's) is kept. Deletions go in bounded transactions
(``BATCH`` rows each), so a large backlog never holds a long lock; ``prune`` runs at most
every ``EVERY``, whichever process (``cadence serve``, the queue's chores) asks first.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from agent.core.timestamps import from_store, to_store
from agent.store import schema
from agent.store.sqlite import Store

#: rows deleted per transaction
BATCH = 5000
#: how often a process looks for old ticks
EVERY = timedelta(hours=1)
#: the most batches of ticks one call deletes (the rest waits for the next call)
MOST = 20
_LAST = "retention_at"

log = logging.getLogger("cadence.retention")


def delete_ticks(store: Store, before: datetime, batch: int = BATCH, most: int = MOST) -> int:
    """Delete the finished ticks started before ``before`` and their audit rows, in
    transactions of at most ``batch`` rows; return how many ticks went."""
    gone = 0
    for _ in range(most):
        rows = store.db.execute(
            "SELECT id FROM ticks WHERE status != 'running' AND started_at < ? ORDER BY id LIMIT ?",
            [to_store(before), batch],
        ).rows
        ids = [int(r[0]) for r in rows]
        if not ids:
            break
        marks = ", ".join("?" for _ in ids)
        while True:  # the audit first: a tick row stays until its audit is gone
            with store.atomic():
                done = store.db.execute(
                    f"DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE tick IN ({marks})"
                    " LIMIT ?)",
                    [*ids, batch],
                )
            if done.rowcount < batch:
                break
        with store.atomic():
            store.db.execute(
                f"DELETE FROM ticks WHERE id IN ({marks}) AND status != 'running'", ids
            )
        gone += len(ids)
        if len(ids) < batch:
            break
    return gone


def prune(store: Store, keep: timedelta | None, now: datetime) -> int | None:
    """Delete the ticks older than ``keep`` when ``EVERY`` has passed since the last
    look (kept in the store, for every process); None when not due, not configured, or
    when another process took this look between the read and the write of the mark."""
    if keep is None:
        return None
    rows = store.db.execute("SELECT value FROM meta WHERE name = ?", [_LAST]).rows
    last = str(rows[0][0]) if rows else None
    if last is not None and now - from_store(last) < EVERY:
        return None
    if not _take(store, last, to_store(now)):
        return None  # another process looked between the read and here: it prunes
    gone = delete_ticks(store, now - keep)
    if gone:
        log.info("retention: %d finished tick rows deleted with their audit rows", gone)
    return gone


def _take(store: Store, last: str | None, mark: str) -> bool:
    """Move the mark from ``last`` (None: no mark yet) to ``mark``; False when another
    process moved it first. The write itself checks the value read, so of two processes
    that read the same mark only one moves it, on either backend."""
    meta = schema.meta
    if last is None:
        statement = (
            store.db.insert(meta)
            .values(name=_LAST, value=mark)
            .on_conflict_do_nothing(index_elements=["name"])
        )
    else:
        statement = (
            meta.update().where(meta.c.name == _LAST, meta.c.value == last).values(value=mark)
        )
    with store.atomic():
        # the rows it returns, not its rowcount: PostgreSQL's INSERT ... ON CONFLICT
        # comes back with a rowcount of -1
        return len(store.db.run(statement.returning(meta.c.name)).rows) == 1
