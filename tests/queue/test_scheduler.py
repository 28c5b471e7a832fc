"""``cadence scheduler``: exactly one active, a standby takes over when it is killed."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.app.demo import create_workspace
from tests.conftest import NOW
from tests.queue import services


@pytest.fixture
def name() -> Iterator[str]:
    services.require("rabbitmq", "redis", "postgres")
    queue = services.queue_name()
    yield queue
    services.purge(queue)


def active(log: Path) -> bool:
    return log.exists() and "this scheduler is active" in log.read_text()


def test_a_standby_scheduler_takes_over_when_the_active_one_is_killed(
    name: str, tmp_path: Path
) -> None:
    path = create_workspace(tmp_path / "demo", NOW)
    with path.open("a") as handle:
        handle.write(services.queue_section(name))
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    first = services.cadence("scheduler", "--config", str(path), log=first_log)
    try:
        services.wait_for(lambda: active(first_log), 30, "the first scheduler to lead")
        second = services.cadence("scheduler", "--config", str(path), log=second_log)
        try:
            services.wait_for(
                lambda: "standing by" in second_log.read_text(), 30, "the second to stand by"
            )
            time.sleep(2)  # a standby that polls does not lead while the first lives
            assert not active(second_log)
            assert "round 1: 4 task(s) enqueued" in first_log.read_text()
            first.send_signal(signal.SIGKILL)
            first.wait(10)
            killed = time.monotonic()
            services.wait_for(lambda: active(second_log), 30, "the standby to take over")
            assert time.monotonic() - killed < 10
            # the units the dead scheduler enqueued still wait: none is enqueued twice
            services.wait_for(
                lambda: "round 1: 0 task(s) enqueued" in second_log.read_text(),
                10,
                "the new leader's first round",
            )
        finally:
            services.stop(second)
        assert "stopped" in second_log.read_text()  # SIGTERM: a clean stop
    finally:
        services.stop(first)
