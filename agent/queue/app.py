"""The Celery app: its settings, and the tasks workers run.

Tasks are acknowledged late (``acks_late``) and given back when their worker is lost
(``task_reject_on_worker_lost``), one at a time per worker thread (prefetch 1): a worker
killed at any point leaves its task on the broker, and another worker runs it again.
That second run is harmless because every booking and mail is keyed and the key is
recorded before and after the provider call (``agent.tick.executor``).

- ``cadence.unit``: read the calendars of one scheduling unit's people (a partner and
  their relationships), then plan and act on it, holding a lease on each of its people
  so that no other worker plans over them at the same time.
- ``cadence.sync``: read some people's calendars into the store (a push notification
  named them), then enqueue the units they touch.
- ``cadence.chores``: what a full tick does beyond the units: replies to recaps, the
  reporting lines that ended, the push channels' upkeep.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from celery import Celery, Task

from agent.core import pauses
from agent.queue import leases, limits
from agent.queue.metrics import QueueMetrics
from agent.rules import planning
from agent.settings.config import Settings
from agent.settings.queue_schema import Queue

log = logging.getLogger("cadence.queue")

UNIT, SYNC, CHORES = "cadence.unit", "cadence.sync", "cadence.chores"
#: a unit whose lease is taken is tried again this many times, then left to the next round
LEASE_RETRIES = 5


def conf(queue: Queue) -> dict[str, Any]:
    """Celery's settings for ``queue:``."""
    limit = queue.time_limit.total_seconds()
    return {
        "broker_url": queue.broker,
        "result_backend": queue.backend,
        "task_ignore_result": True,
        "task_default_queue": queue.name,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": limit,
        "task_soft_time_limit": max(1.0, limit - 30),
        "task_serializer": "json",
        "accept_content": ["json"],
        "broker_connection_retry_on_startup": True,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,  # Cadence logs to stderr itself
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        # a message not acknowledged within the time limit is given to another worker
        "broker_transport_options": {"visibility_timeout": limit + 60},
        "enable_utc": True,
    }


def unit_key(partner: str) -> str:
    return f"unit:{partner}"


def unit_people(settings: Settings, partner: str) -> set[str]:
    found = [u for u in planning.units(settings.relationships) if u.partner == partner]
    return found[0].people if found else {partner}


class Cadence:
    """The app of one process: the Celery app, the shared limits, the metrics, and per
    worker thread an engine and a PostgreSQL connection for leases."""

    def __init__(self, settings: Settings, metrics: QueueMetrics | None = None) -> None:
        assert settings.queue is not None
        self.settings = settings
        self.queue = settings.queue
        self.celery = Celery("cadence", set_as_current=False)
        self.celery.conf.update(conf(self.queue))
        self.redis = limits.connect(self.queue.limits)
        self.metrics = metrics
        self._local = threading.local()
        self.adopted: dict[str, tuple[str, Any]] = {}
        self._register()

    # --- sending (scheduler, web, workers) ---------------------------------------------

    def claim(self, name: str, ttl: float) -> bool:
        """Whether ``name`` may be enqueued now: once until a worker starts it (or
        ``ttl`` passes), so that a slow queue is not piled up round after round."""
        key = f"{limits.PREFIX}:{self.queue.name}:queued:{name}"
        return bool(self.redis.set(key, "1", nx=True, px=max(1, int(ttl * 1000))))

    def started(self, name: str) -> None:
        self.redis.delete(f"{limits.PREFIX}:{self.queue.name}:queued:{name}")

    def send(self, task: str, *args: Any, **kwargs: Any) -> None:
        self.celery.send_task(
            task, args=[*args, time.time()], kwargs=kwargs or None, queue=self.queue.name
        )
        if self.metrics is not None:
            self.metrics.enqueued.labels(task).inc()

    def enqueue_units(
        self,
        partners: Iterable[str],
        ttl: float,
        now: str | None = None,
        skip: Mapping[str, Iterable[str]] | None = None,
        round_id: str | None = None,
    ) -> int:
        """Enqueue each unit not already waiting; ``now`` (ISO) fixes the tasks' clock
        (for replays and tests; None: the time each task starts); ``skip`` names, per
        partner, the calendars the unit's task may leave unread (push keeps them);
        ``round_id`` the scheduler's round, whose units the guard counts together."""
        n = 0
        extra = {"round_id": round_id} if round_id else {}
        for partner in partners:
            if self.claim(unit_key(partner), ttl):
                self.send(UNIT, partner, now, sorted((skip or {}).get(partner, ())), **extra)
                n += 1
        return n

    def depth(self) -> int:
        with self.celery.connection_for_read() as conn:
            ok = conn.default_channel.queue_declare(self.queue.name, passive=True)
            return int(ok.message_count)

    # --- running (workers) --------------------------------------------------------------

    def worker_setup(self) -> None:
        """Before the first task: the shared Retry-After pauses."""
        pauses.install(limits.Pauses(self.redis, self.queue.name))

    def engine(self) -> Any:
        """This thread's engine, kept from task to task (its connections stay open)."""
        from agent.queue.engine import QueueEngine

        engine = getattr(self._local, "engine", None)
        if engine is None:
            engine = QueueEngine(self.settings, self.redis, adopted=self.adopted)
            self._local.engine = engine
        return engine

    def leases(self) -> leases.Leases:
        held = getattr(self._local, "leases", None)
        if held is None:
            held = leases.Leases(self.queue.lock, self.queue.name)
            self._local.leases = held
        return held

    def _observe(self, task: str, enqueued: float, started: float, outcome: str) -> None:
        if self.metrics is None:
            return
        self.metrics.latency.labels(task).observe(max(0.0, started - enqueued))
        self.metrics.duration.labels(task).observe(time.time() - started)
        self.metrics.tasks.labels(task, outcome).inc()

    def _register(self) -> None:
        app = self

        @self.celery.task(name=UNIT, bind=True, max_retries=LEASE_RETRIES)  # type: ignore[untyped-decorator]
        def unit(
            self: Task,
            partner: str,
            now: str | None,
            skip: list[str],
            enqueued: float,
            round_id: str | None = None,
        ) -> str:
            started = time.time()
            app.started(unit_key(partner))
            engine = app.engine()
            engine.lay_directory()
            people = unit_people(engine.settings, partner)
            try:
                with app.leases().holding(f"person:{p}" for p in people):
                    _take_over(engine, partner)
                    report = engine.tick(
                        _now(now),
                        units=frozenset([partner]),
                        chores=False,
                        skip=frozenset(skip),
                        round_id=round_id,
                    )
            except leases.Taken as exc:
                log.info("unit %s: %s is leased by another worker; trying later", partner, exc)
                if app.metrics is not None:
                    app.metrics.retries.labels(UNIT, "leased").inc()
                if self.request.retries >= LEASE_RETRIES:
                    app._observe(UNIT, enqueued, started, "skipped")
                    log.info("unit %s: %s still leased; left to the next round", partner, exc)
                    return "skipped"
                raise self.retry(countdown=random.uniform(1, 5)) from None
            outcome = "ok" if report.ok else "partial"
            app._observe(UNIT, enqueued, started, outcome)
            return outcome

        @self.celery.task(name=SYNC, bind=True)  # type: ignore[untyped-decorator]
        def sync_task(
            self: Task,
            emails: list[str],
            kinds: dict[str, list[str]],
            enqueued: float,
        ) -> str:
            from agent.queue.engine import sync_people

            started = time.time()
            engine = app.engine()
            now = datetime.now(UTC)
            failed = sync_people(engine, emails, kinds, now)
            touched = planning.touched(planning.units(engine.settings.relationships), emails)
            fresh = set(emails) - failed  # just read: the units' tasks need not again
            app.enqueue_units(
                (u.partner for u in touched),
                app.settings.tick.total_seconds(),
                skip={u.partner: u.people & fresh for u in touched},
            )
            outcome = "partial" if failed else "ok"
            app._observe(SYNC, enqueued, started, outcome)
            return outcome

        @self.celery.task(name=CHORES, bind=True)  # type: ignore[untyped-decorator]
        def chores(self: Task, now: str | None, enqueued: float) -> str:
            started = time.time()
            app.started("chores")
            engine = app.engine()
            try:
                with app.leases().holding(["chores"]):
                    _read_directory(app.settings, engine.store)
                    report = engine.tick(_now(now), units=frozenset(), chores=True)
                    _close_stale(engine, app.queue, report.tick)
                    from agent.store import retention, rounds

                    keep = app.settings.retention.ticks
                    retention.prune(engine.store, keep, datetime.now(UTC))
                    rounds.forget_old(engine.store, datetime.now(UTC))
                    if app.settings.push is not None:
                        from agent.tick import push

                        push.maintain(engine, _now(now), frozenset(), frozenset())
            except leases.Taken:
                app._observe(CHORES, enqueued, started, "skipped")
                return "skipped"
            outcome = "ok" if report.ok else "partial"
            app._observe(CHORES, enqueued, started, outcome)
            return outcome


def _now(text: str | None) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC) if text else datetime.now(UTC)


def _close_stale(engine: Any, queue: Queue, tick: int) -> None:
    """Mark the ticks of killed workers interrupted (running past twice the time limit),
    and say so in the audit."""
    from agent.store.stale import interrupt_stale

    before = datetime.now(UTC) - 2 * queue.time_limit
    for row in interrupt_stale(engine.store, before):
        message = (
            f"tick {row['id']} (started {row['started_at']}) was interrupted: its worker "
            "died; the task was given to another worker"
        )
        log.warning("%s", message)
        engine.store.audit(
            tick, datetime.now(UTC), "interrupted", message, data={"tick": row["id"]}
        )


def _read_directory(settings: Settings, store: Any) -> None:
    """Read the company's directory when ``directory.interval`` has passed since the
    last read (the chores' lease keeps it to one worker)."""
    if settings.directory is None:
        return
    from agent.core.timestamps import from_store
    from agent.store.directory import DirectoryRows
    from agent.tick import directory

    last = DirectoryRows(store).last_read()
    now = datetime.now(UTC)
    if last is not None and now - from_store(last["at"]) < settings.directory.interval:
        return
    try:
        directory.sync(settings, store, now)
    except Exception as exc:  # the tick's warnings say so; the next round tries again
        log.error("directory read failed: %s", exc)


def _take_over(engine: Any, partner: str) -> None:
    """Under the unit's leases: end the claims a killed worker left on its bookings and
    mails, so that this run finishes them now rather than after the claims' lease."""
    from agent.store.stale import release_claims_of

    rels = [r.id for r in engine.settings.relationships if r.partner.email == partner]
    if release_claims_of(engine.store, rels):
        log.info("unit %s: took over the claims a stopped worker left", partner)
