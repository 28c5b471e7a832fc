"""The engine as a worker runs it: the per-account limits shared through Redis, and the
sync of the calendars a push notification named."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import redis

from agent.queue import limits
from agent.settings.config import Settings
from agent.store.push import PushRows
from agent.tick import sync
from agent.tick.engine import Engine
from agent.tick.executor import Journal


class QueueEngine(Engine):
    """An :class:`Engine` whose ``sync.concurrency`` and ``sync.rate`` per account hold
    across every worker (``agent.queue.limits``)."""

    def __init__(
        self, settings: Settings, client: redis.Redis, adopted: dict[str, tuple[str, Any]]
    ) -> None:
        super().__init__(settings, adopted=adopted)
        self.client = client
        self._shared: dict[str, tuple[Any, Any]] = {}

    def sync_limits(self) -> dict[str, tuple[Any, Any]]:
        queue = self.settings.queue
        assert queue is not None
        missing = [a for a in self.settings.accounts if a not in self._shared]
        if missing:
            self._shared.update(
                limits.limits_for(
                    self.client, [f"{queue.name}:{a}" for a in missing], self.settings.sync
                )
            )
            for account in missing:
                self._shared[account] = self._shared.pop(f"{queue.name}:{account}")
        return self._shared


def sync_people(
    engine: Engine, emails: list[str], kinds: dict[str, list[str]], now: datetime
) -> set[str]:
    """Read these people's calendars into the store (as a tick of its own, so that what
    it audits has a tick); note what the push notifications said. Return the failed."""
    engine.lay_directory()
    store = engine.store
    rows = PushRows(store)
    for owner, said in kinds.items():
        for kind in ("missed", "removed"):
            if kind in said:
                rows.mark(owner, kind, now)
    if kinds:
        rows.notified(frozenset(kinds), now)
    tick = store.begin_tick(now, datetime.now(UTC))
    journal = Journal(store, tick, now, False)
    status = "failed"
    failed: set[str] = set()
    try:
        failed = sync.sync(engine, journal, now, only=frozenset(emails))
        status = "partial" if journal.errors else "ok"
        for owner, said in kinds.items():
            if "missed" in said and owner not in failed:
                rows.mark(owner, "active", now)  # read after the miss: nothing is lost
    finally:
        summary = {"synced": len(emails) - len(failed), "errors": len(journal.errors)}
        store.end_tick(tick, status, summary, datetime.now(UTC))
    return failed
