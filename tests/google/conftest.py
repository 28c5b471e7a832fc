from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.google.harness import Workspace, workspace


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    with workspace(tmp_path) as space:
        yield space


@pytest.fixture(autouse=True)
def no_stray_threads() -> Iterator[None]:
    """Every server thread, and any thread a client library starts, ends with its test."""
    before = set(threading.enumerate())
    yield
    for thread in set(threading.enumerate()) - before:
        thread.join(timeout=2)
    stray = [t.name for t in set(threading.enumerate()) - before if t.is_alive()]
    assert not stray, f"threads left running: {stray}"
