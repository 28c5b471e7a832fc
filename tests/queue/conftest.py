"""The queue tests' shared fixture: a queue of their own on the local broker."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.queue import services


@pytest.fixture
def name(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    services.require("rabbitmq", "redis", "postgres")
    # the config names the broker's URL by this variable, as a deployment would
    monkeypatch.setenv("CADENCE_TEST_BROKER", services.BROKER)
    queue = services.queue_name()
    yield queue
    services.purge(queue)
