"""``cadence serve``: ticks on a schedule, /healthz and /metrics (and the web app with
``web:``), clean stops.

APScheduler only triggers ticks: one at a time (a tick still running makes the next one
skip), and a missed tick is simply the next one. The HTTP endpoint runs in a thread of
its own; /healthz and /metrics never touch the store.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from agent.app.health import Health
from agent.app.lock import Busy, TickLock
from agent.app.pushing import PushSide
from agent.settings.config import Settings
from agent.store import retention
from agent.store.broken import explain, store_errors
from agent.tick import metrics as metrics_mod
from agent.views.uncertain import describe, uncertain_mail

if TYPE_CHECKING:
    from agent.queue.app import Cadence
    from agent.tick.engine import Engine
    from agent.tick.reporting import TickReport
    from agent.web.server import Server

log = logging.getLogger("cadence.serve")
#: seconds a tick waits for a push reaction (or a directory read) to finish
REACTION_WAIT = 120.0
#: seconds a pick made on the web waits for a running tick before it is left to the next
BOOK_WAIT = 15.0


class Service:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        conf = settings.service
        self.health = Health(settings.tick.total_seconds(), conf.unhealthy_after)
        self.metrics = metrics_mod.activate()
        self.stop = threading.Event()
        self._running = threading.Lock()
        #: what the mailboxes told of people's zones and hours, kept from tick to tick
        self.adopted: dict[str, tuple[str, Any]] = {}
        self.http: Server | None = None
        #: the task queue (``queue:``): ticks are the workers' then, and this process
        #: serves the web app and hands push notifications to the queue
        self.queue: Cadence | None = None
        if settings.queue is not None:
            from agent.queue.app import Cadence
            from agent.queue.metrics import QueueMetrics

            self.queue = Cadence(settings)
            self.queue.metrics = QueueMetrics(self.metrics.registry, depth=self.queue.depth)
        #: notifications from the providers (``push:``), None when it is not configured
        self.push: PushSide | None = PushSide(self) if settings.push is not None else None

    # --- ticks ---------------------------------------------------------------------------

    def tick(self, confirm: bool = False) -> None:
        """One tick now (skipped while one runs); ``confirm`` lets it past the guard."""
        from agent.tick.engine import Engine

        if self.queue is not None:
            # the workers tick, each unit under its leases; a tick here would hold none
            log.warning(
                "with queue: the workers tick; `cadence run --once --confirm` "
                "is not run from the web app"
            )
            return
        # a push reaction is short: wait for it; a tick still running is another matter
        waits = self.push is not None
        if not self._running.acquire(waits, REACTION_WAIT if waits else -1):
            log.warning("previous tick still running; skipping this one")
            return
        started = time.monotonic()
        try:
            with (
                TickLock(self.settings.store_at, wait=0),
                Engine(self.settings, adopted=self.adopted) as engine,
            ):
                now = datetime.now(UTC)
                # a calendar whose push channel is healthy is read every push.poll only
                skip = self.push.quiet(engine.store, now) if self.push else frozenset()
                report = engine.tick(now, confirm=confirm, skip=skip)
                if self.push is not None:
                    self.push.upkeep(engine, now, read=self._read(engine, skip, report))
                retention.prune(engine.store, self.settings.retention.ticks, now)
                self.health.note_uncertain([describe(m) for m in uncertain_mail(engine.store)])
            failures = self.health.record(
                report.tick,
                report.ok,
                "; ".join(report.errors[:3]) or None,
                tuple(report.warnings),
            )
            self.metrics.observe_tick(report, time.monotonic() - started, failures)
            log.info(
                "tick %s: %d booked, %d mails, %d errors",
                report.tick,
                report.count("book"),
                sum(report.count(k) for k in metrics_mod.MAIL_KINDS),
                len(report.errors),
                extra={"tick": report.tick},
            )
        except Busy as exc:
            failures = self.health.record(None, False, str(exc))
            self.metrics.observe_failure("busy", time.monotonic() - started, failures)
            log.warning("%s", exc)
        except store_errors() as exc:
            # a full disk or a broken store: one line, the same the CLI prints, no traceback
            problem = str(explain(self.settings.store_at, exc))
            failures = self.health.record(None, False, problem)
            self.metrics.observe_failure("failed", time.monotonic() - started, failures)
            log.error("tick failed: %s", problem)
        except Exception as exc:
            failures = self.health.record(None, False, f"{type(exc).__name__}: {exc}")
            self.metrics.observe_failure("failed", time.monotonic() - started, failures)
            log.exception("tick failed")
        finally:
            self._running.release()

    @staticmethod
    def _read(engine: Engine, skip: frozenset[str], report: TickReport) -> frozenset[str]:
        """The calendars a tick read (all but the skipped and the failed)."""
        return frozenset(p.email for p in engine.people()) - skip - report.unread

    def confirm(self) -> None:
        """Run a tick past the guard's limits, in a thread of its own (a person confirmed
        the held plan on the web)."""
        threading.Thread(target=self.tick, args=(True,), name="cadence-confirm").start()

    def book(self, owners: frozenset[str], now: datetime) -> TickReport | None:
        """A focused tick on ``owners``' calendars now, for a pick made on the web: the
        same reads, plan and idempotent booking as any tick, for the units those calendars
        touch. None when a tick or another process holds the store past ``BOOK_WAIT``
        (the pick stays recorded: the next tick books it)."""
        from agent.tick.engine import Engine

        if not self._running.acquire(True, BOOK_WAIT):
            return None
        try:
            with (
                TickLock(self.settings.store, wait=BOOK_WAIT),
                Engine(self.settings, adopted=self.adopted) as engine,
            ):
                return engine.tick(now, focus=owners)
        except Busy:
            return None
        finally:
            self._running.release()

    def read_directory(self) -> None:
        """Read the directory and apply it (or hold it for a person); the next tick acts
        on it. Never at the same time as a tick."""
        from agent.store.sqlite import Store
        from agent.tick import directory

        with self._running:
            try:
                with TickLock(self.settings.store_at, wait=5):
                    store = Store(self.settings.store_at)
                    try:
                        out = directory.sync(self.settings, store, datetime.now(UTC))
                    finally:
                        store.close()
                log.info(
                    "directory: %d change(s)%s",
                    out.diff.size,
                    f", held: {out.held}" if out.held else "",
                )
            except Exception as exc:  # the tick's warnings say so; the next read tries again
                log.error("directory read failed: %s", exc)

    # --- HTTP ----------------------------------------------------------------------------

    def start_http(self) -> None:
        """Listen on the configured host and port (port 0 in the config: no endpoint):
        /healthz and /metrics, and the web app when ``web:`` is configured.

        Raises OSError when the address is taken.
        """
        from agent.web.app import Probes, create
        from agent.web.server import Server

        conf = self.settings.service
        if conf.port == 0:
            return
        probes = Probes(
            self.health.check,
            self.metrics.exposition,
            metrics_mod.CONTENT_TYPE,
            self.confirm,
            receiver=self.push.receiver if self.push else None,
            book=self.book,
        )
        self.http = Server(create(self.settings, probes), conf.host, conf.port)
        self.http.start()
        host, port = self.http.address
        log.info("health and metrics on http://%s:%s/healthz and /metrics", host, port)
        if self.settings.web is not None:
            log.info("web app on http://%s:%s/", host, port)

    def stop_http(self) -> None:
        if self.http is not None:
            self.http.stop()
            self.http = None

    # --- the loop ------------------------------------------------------------------------

    def run(self) -> None:
        """Tick now and on every interval until SIGTERM or SIGINT."""
        from apscheduler.schedulers.background import BackgroundScheduler

        scheduler = BackgroundScheduler(timezone=UTC)
        if self.queue is not None:
            # `cadence scheduler` enqueues the ticks' work; this process only learns
            # the push channels the workers open, to check notifications against
            if self.push is not None:
                scheduler.add_job(self.push.refresh, "interval", seconds=60)
        else:
            scheduler.add_job(
                self.tick,
                "interval",
                seconds=self.settings.tick.total_seconds(),
                next_run_time=datetime.now(UTC),
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )

        if self.settings.directory is not None and self.queue is None:
            self.read_directory()  # before the first tick, so that it plans the lines
            scheduler.add_job(
                self.read_directory,
                "interval",
                seconds=self.settings.directory.interval.total_seconds(),
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )

        def on_signal(signum: int, _frame: Any) -> None:
            log.info("received %s: stopping after the current tick", signal.Signals(signum).name)
            self.stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        if self.push is not None:
            self.push.start()
        self.start_http()
        try:
            scheduler.start()
            if self.queue is None:
                log.info("serving: a tick every %s", self.settings.tick)
            else:
                log.info("serving; the workers of queue %s tick", self.queue.queue.name)
            self.stop.wait()
            scheduler.shutdown(wait=True)
        finally:
            self.stop_http()
            if self.push is not None:
                self.push.stop()
            metrics_mod.deactivate()
        log.info("stopped")
