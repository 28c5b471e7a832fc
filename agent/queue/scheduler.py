"""``cadence scheduler``: enqueues the work on the tick interval; exactly one is active.

The active scheduler holds a PostgreSQL advisory lock (``agent.queue.leases.Election``);
a standby waits for it and takes over within a second of the holder's connection
closing (its process died or stopped). Each round it enqueues the chores and every
scheduling unit's task, each only if the last one enqueued has started: a queue that
falls behind is not piled up.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import UTC, datetime
from typing import Any

from agent.queue.app import CHORES, Cadence
from agent.queue.leases import Election
from agent.rules import planning
from agent.settings.config import Settings

log = logging.getLogger("cadence.scheduler")


class Scheduler:
    def __init__(self, settings: Settings, app: Cadence) -> None:
        assert settings.queue is not None
        self.settings = settings
        self.app = app
        self.stop = threading.Event()
        self.election = Election(settings.queue.lock, settings.queue.name)
        self.rounds = 0

    def round(self, now: str | None = None) -> int:
        """Enqueue one round; return how many tasks went on the queue."""
        from agent.settings.directory import merge
        from agent.store.directory import DirectoryRows
        from agent.store.sqlite import Store
        from agent.tick import push

        interval = self.settings.tick.total_seconds()
        settings = self.settings
        quiet: frozenset[str] = frozenset()
        if settings.directory is not None or settings.push is not None:
            store = Store(settings.store_at)
            try:
                if settings.directory is not None:
                    rows = DirectoryRows(store)
                    settings = merge(
                        settings, rows.entries(left=True), rows.lines(), left=rows.left()
                    )
                # calendars whose push channel is healthy, read lately: left unread
                when = datetime.fromisoformat(now) if now else datetime.now(UTC)
                quiet = push.quiet(settings, store, when)
            finally:
                store.close()
        units = planning.units(settings.relationships)
        skip = {u.partner: u.people & quiet for u in units}
        # the guard counts a round's units together: their tally is the round's
        round_id = now or datetime.now(UTC).isoformat(timespec="seconds")
        n = self.app.enqueue_units([u.partner for u in units], interval, now, skip, round_id)
        if self.app.claim("chores", interval):
            self.app.send(CHORES, now)
            n += 1
        self.rounds += 1
        log.info("round %d: %d task(s) enqueued for %d unit(s)", self.rounds, n, len(units))
        return n

    def run(self) -> None:
        """Stand by until leading, then enqueue a round every tick interval, until
        SIGTERM or SIGINT (or the lock is lost: then stand by again)."""

        def on_signal(signum: int, _frame: Any) -> None:
            log.info("received %s: stopping", signal.Signals(signum).name)
            self.stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        interval = self.settings.tick.total_seconds()
        while not self.stop.is_set():
            if not self.election.campaign(self.stop.is_set):
                break
            log.info("this scheduler is active")
            try:
                while not self.stop.is_set():
                    try:
                        self.round()
                    except Exception:
                        log.exception("round failed; the next one tries again")
                    deadline = time.monotonic() + interval
                    while not self.stop.is_set() and time.monotonic() < deadline:
                        if not self.election.still_leading():
                            raise LostLead()
                        self.stop.wait(min(1.0, max(0.0, deadline - time.monotonic())))
            except LostLead:
                log.warning("lost the scheduler lock (PostgreSQL connection): standing by")
                self.election.resign()
        self.election.resign()
        log.info("stopped")


class LostLead(Exception):
    """The connection that held the scheduler's lock is gone."""
