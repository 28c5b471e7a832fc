"""With ``queue:``, a push notification received by ``cadence serve`` becomes a task: a
worker reads the named calendar and enqueues the units it touches, which another task
plans and acts on. The web process ticks no more."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.app.receiver import Pending
from agent.app.service import Service
from agent.rules import planning
from agent.settings import config
from tests.queue import services
from tests.queue.test_worker import done_ticks, services_env, worker, workspace


@pytest.fixture
def name() -> Iterator[str]:
    services.require("rabbitmq", "redis", "postgres")
    queue = services.queue_name()
    yield queue
    services.purge(queue)


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
    assert service.queue.depth() == 1  # the reaction is a task now, not a tick here
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
