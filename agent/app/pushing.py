"""Push in ``cadence serve``: the receiver, the puller and the streamer of Exchange
subscriptions, the reaction to notifications, and the upkeep of channels after each tick.

The reaction runs in the reactor's thread, never at the same time as a tick: it takes
the service's tick lock, marks what the lifecycle notifications said, runs a focused tick
(the notified calendars read, the scheduling units they touch planned and acted on), and
renews what must be renewed.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from agent.app.lock import TickLock
from agent.app.pulling import Puller
from agent.app.receiver import Pending, Reactor, Receiver
from agent.app.streaming import Streamer
from agent.store.push import PushRows
from agent.store.sqlite import Store
from agent.tick import push

if TYPE_CHECKING:
    from agent.queue.app import Cadence
    from agent.settings.config import Settings
    from agent.tick.engine import Engine
    from agent.tick.metrics import Metrics


class Host(Protocol):
    """The service, as the push side sees it."""

    settings: Settings
    metrics: Metrics
    #: the task queue, when the workers tick (``queue:``)
    queue: Cadence | None
    #: held while a tick runs: a reaction waits for it
    _running: threading.Lock
    adopted: dict[str, tuple[str, Any]]


log = logging.getLogger("cadence.push")


class PushSide:
    """The push half of a running service."""

    def __init__(self, service: Host) -> None:
        conf = service.settings.push
        assert conf is not None
        self.service = service
        self.reactor = Reactor(conf.debounce.total_seconds(), self.react)
        self.receiver = Receiver(self.reactor, conf.rate, self._count)
        self.lock = threading.Lock()  # one upkeep at a time
        #: calendars a reaction could not read: the next tick reads them, healthy or not
        self.owed: set[str] = set()
        #: asks the Exchange pull subscriptions, when an account is on Exchange
        self.puller: Puller | None = None
        #: holds the Exchange streaming connections (``push.exchange: stream``)
        self.streamer: Streamer | None = None
        if any(
            getattr(a, "provider", None) in push.PULLED for a in service.settings.accounts.values()
        ):
            self.puller = Puller(self)  # also where streaming is refused
            if conf.exchange == "stream":
                self.streamer = Streamer(self)

    def _count(self, provider: str, result: str) -> None:
        self.service.metrics.push_notifications.labels(provider, result).inc()

    def start(self) -> None:
        """Know the channels a previous run opened (they are picked up, not opened again),
        then start reacting."""
        self.refresh()
        self.reactor.start()
        if self.puller is not None:
            self.puller.start()
        if self.streamer is not None:
            self.streamer.start()

    def stop(self) -> None:
        if self.streamer is not None:
            self.streamer.stop()
        if self.puller is not None:
            self.puller.stop()
        self.reactor.stop()

    def quiet(self, store: Store, now: datetime) -> frozenset[str]:
        """The calendars the next tick may leave unread (none a reaction failed to read)."""
        with self.lock:
            owed = frozenset(self.owed)
        return push.quiet(self.service.settings, store, now) - owed

    def upkeep(
        self,
        engine: Engine,
        now: datetime,
        read: frozenset[str] = frozenset(),
        renew: frozenset[str] = frozenset(),
    ) -> None:
        """Bring the channels in line after a tick; tell the receiver what stands."""
        with self.lock:
            self.owed -= read
            push.maintain(engine, now, read, renew)
            self.known(PushRows(engine.store))
        if self.streamer is not None:
            self.streamer.wake()  # subscriptions made: held at once

    def known(self, rows: PushRows) -> None:
        """Tell the receiver the channels in ``rows``, and the gauge how they stand."""
        self.receiver.known(r.channel for r in rows.all().values())
        self.gauge(rows)

    def gauge(self, rows: PushRows) -> None:
        for state, n in rows.counts().items():
            self.service.metrics.push_channels.labels(state).set(n)

    def refresh(self) -> None:
        """Tell the receiver the channels the store has (with ``queue:`` the workers
        open and renew them)."""
        store = Store(self.service.settings.store_at)
        try:
            self.known(PushRows(store))
        finally:
            store.close()

    def react(self, batch: dict[str, Pending]) -> None:
        """Sync the notified calendars, plan and act on the units they touch (with
        ``queue:``, a worker does: the batch is enqueued)."""
        from agent.tick.engine import Engine

        service = self.service
        owners = frozenset(batch)
        if service.queue is not None:
            from agent.queue.app import SYNC

            service.queue.send(SYNC, sorted(owners), {o: sorted(p.kinds) for o, p in batch.items()})
            log.info("push: %s enqueued", ", ".join(sorted(owners)))
            return
        with self.lock:
            self.owed |= owners  # until read: a reaction that fails leaves them to the tick
        with (
            service._running,
            TickLock(service.settings.store_at, wait=30),
            Engine(service.settings, adopted=service.adopted) as engine,
        ):
            now = datetime.now(UTC)
            rows = PushRows(engine.store)
            for owner, item in batch.items():
                for kind in ("missed", "removed"):
                    if kind in item.kinds:
                        rows.mark(owner, kind, now)
            rows.notified(owners, now)
            report = engine.tick(now, focus=owners)
            read = owners - report.unread
            renew = frozenset(o for o, p in batch.items() if "reauthorize" in p.kinds)
            self.upkeep(engine, now, read, renew)
        done = time.monotonic()
        for item in batch.values():
            service.metrics.push_delay.observe(done - item.first)
        log.info(
            "push: %s synced after %d notification(s): %d booked, %d errors",
            ", ".join(sorted(owners)),
            sum(p.count for p in batch.values()),
            report.count("book") + report.count("move"),
            len(report.errors),
        )
