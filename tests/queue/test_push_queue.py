"""With ``queue:``, a push notification received by ``cadence serve`` becomes a task: a
worker reads the named calendar and enqueues the units it touches, which another task
plans and acts on. The web process ticks no more."""

from __future__ import annotations

import time
from pathlib import Path

from agent.app.receiver import Pending
from agent.app.service import Service
from agent.queue.app import UNIT, Cadence
from agent.rules import planning
from agent.settings import config
from tests.queue import services
from tests.queue.test_worker import done_ticks, services_env, worker, workspace


def test_a_notification_is_enqueued_and_a_worker_reacts(name: str, tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    path = workspace(folder, name)
    with path.open("a") as handle:
        handle.write("push:\n  public_url: http://127.0.0.1:9464/push\n")
    with services_env():
        settings = config.load(path)
        service = Service(settings)
    assert service.queue is not None and service.push is not None
    ana = "ana@acme.example"
    service.push.react({ana: Pending(first=time.monotonic(), kinds={"missed"}, count=2)})
    # the reaction is a task now, not a tick here (counted by the broker a moment later)
    queue = service.queue
    services.wait_for(lambda: queue.depth() == 1, 10, "the reaction's task queued")
    exposition = service.metrics.exposition().decode()
    assert "cadence_queue_depth 1.0" in exposition
    assert 'cadence_queue_enqueued_total{task="cadence.sync"} 1.0' in exposition
    touched = planning.touched(planning.units(settings.relationships), [ana])
    assert touched and len(touched) < len(planning.units(settings.relationships))
    w = worker(path, tmp_path / "worker.log")
    try:
        # the sync task's tick, then one per unit Ana is in
        services.wait_for(
            lambda: done_ticks(folder) >= 1 + len(touched), 90, "the units Ana touches"
        )
        time.sleep(1)
        assert done_ticks(folder) == 1 + len(touched)  # and no other unit
    finally:
        services.stop(w)


def test_the_scheduler_leaves_calendars_push_keeps_unread(name: str, tmp_path: Path) -> None:
    """A calendar with a healthy channel, read within ``push.poll``, is skipped by the
    units' tasks (as ``cadence serve`` skips it); the others are read."""
    from datetime import timedelta

    import kombu

    from agent.core.model import Channel
    from agent.core.timestamps import to_store
    from agent.queue.scheduler import Scheduler
    from agent.store.push import PushRows
    from agent.store.sqlite import Store
    from agent.tick import push
    from tests.conftest import NOW

    folder = tmp_path / "demo"
    path = workspace(folder, name)
    with path.open("a") as handle:
        handle.write("push:\n  public_url: http://127.0.0.1:9464/push\n")
    with services_env():
        settings = config.load(path)
    ana = "ana@acme.example"
    store = Store(settings.store)
    try:
        channel = Channel(
            ana, "google", "ch-1", "res-1", "s3cret", NOW + timedelta(days=3),
            push.address(settings, "google"),
        )  # fmt: skip
        PushRows(store).save(channel, NOW)
        store.db.execute(
            "INSERT INTO sync_state (owner, cursor, synced_at) VALUES (?, 'c1', ?)",
            [ana, to_store(NOW - timedelta(minutes=5))],
        )
    finally:
        store.close()
    app = Cadence(settings)
    Scheduler(settings, app).round(NOW.isoformat())
    skips: dict[str, list[str]] = {}
    with kombu.Connection(services.BROKER) as conn:
        queue = conn.SimpleQueue(name)
        try:
            while True:
                try:
                    message = queue.get(timeout=1)
                except queue.Empty:
                    break
                args = message.payload[0]  # Celery: [args, kwargs, embed]
                if message.headers["task"] == UNIT:
                    skips[args[0]] = args[2]
                message.ack()
        finally:
            queue.close()
    units = planning.units(settings.relationships)
    assert set(skips) == {u.partner for u in units}
    for unit in units:
        assert skips[unit.partner] == ([ana] if ana in unit.people else [])


def test_the_web_process_does_not_tick_with_a_queue(name: str, tmp_path: Path) -> None:
    """A confirmation from the web app would tick here without the units' leases."""
    folder = tmp_path / "demo"
    path = workspace(folder, name)
    with services_env():
        service = Service(config.load(path))
    service.tick(confirm=True)
    assert done_ticks(folder) == 0
