"""Retry-After across the workers of the task queue, on the fake Google: a user Google
told one worker to leave alone is left alone by the others (two clients, as in two
processes, sharing the pause through a real Redis)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agent.core import pauses
from agent.queue import limits
from tests.google.harness import Workspace
from tests.google.test_errors import LIST, WINDOW, recording_policy
from tests.queue import services


@pytest.fixture
def keeper() -> Iterator[limits.Pauses]:
    with services.shared_pauses() as shared:
        yield shared


def _two_workers(ws: Workspace) -> tuple[list[float], list[float]]:
    """Worker 1 is told to wait 7 s (its retry policy's sleep is recorded, not slept);
    then worker 2 reads the same calendar."""
    first_sleeps: list[float] = []
    second_sleeps: list[float] = []
    first, _ = ws.connect(recording_policy(first_sleeps))
    second, _ = ws.connect(recording_policy(second_sleeps))
    try:
        ws.server.state.fail(LIST, 429, "rateLimitExceeded", retry_after="7")
        first.changes(ws.person("ana"), None, WINDOW)
        second.changes(ws.person("ana"), None, WINDOW)
    finally:
        first.close()
        second.close()
    return first_sleeps, second_sleeps


def test_a_retry_after_pauses_the_user_for_every_worker(
    ws: Workspace, keeper: limits.Pauses
) -> None:
    pauses.install(keeper)
    first, second = _two_workers(ws)
    assert first == [7.0]  # its own wait, once: not again for the shared copy
    assert len(second) == 1 and 6.0 < second[0] <= 7.0


def test_without_the_shared_pause_the_other_worker_does_not_wait(
    ws: Workspace, keeper: limits.Pauses
) -> None:
    first, second = _two_workers(ws)
    assert first == [7.0] and second == []
