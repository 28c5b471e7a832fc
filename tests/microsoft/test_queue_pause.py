"""Retry-After across the workers of the task queue: a mailbox Graph told one worker to
leave alone is left alone by every worker (two Graph clients, as in two processes,
sharing the pause through a real Redis)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.core import pauses
from agent.core.model import Person
from agent.queue import limits
from tests.microsoft.server import GraphServer
from tests.microsoft.test_throttle import early_calls, real_graph, run_in_threads
from tests.queue import services


@pytest.fixture
def keeper() -> Iterator[limits.Pauses]:
    with services.shared_pauses() as shared:
        yield shared


def _two_workers(server: GraphServer, ca: Path, ana: str) -> list[BaseException]:
    """Worker 1 is told to wait 2 s; worker 2 calls the same mailbox 0.3 s later."""
    first, second = real_graph(server, ca), real_graph(server, ca)
    first.token()
    second.token()
    server.throttle("mailboxSettings", times=1, retry_after=2)
    try:
        return run_in_threads(
            (0.0, lambda: first.send("GET", f"/users/{ana}/mailboxSettings")),
            (0.3, lambda: second.send("GET", f"/users/{ana}/calendar")),
        )
    finally:
        first.close()
        second.close()


def test_a_retry_after_pauses_the_mailbox_for_every_worker(
    server: GraphServer, ca: Path, staff: list[Person], keeper: limits.Pauses
) -> None:
    ana = staff[0].email
    pauses.install(keeper)
    assert not _two_workers(server, ca, ana)
    assert early_calls(server, ana) == []
    assert server.counts["mailboxSettings"] == 2 and server.counts["calendar"] == 1


def test_without_the_shared_pause_the_other_worker_calls_too_early(
    server: GraphServer, ca: Path, staff: list[Person], keeper: limits.Pauses
) -> None:
    """What the shared pause prevents: each process knows only its own wait."""
    ana = staff[0].email
    assert not _two_workers(server, ca, ana)
    assert early_calls(server, ana)
