"""Contract-suite backend for the Exchange connector, on the local EWS server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.exchange.fixtures import ExchangeBackend, running_backend


@contextmanager
def backend(tmp_path: Path) -> Iterator[ExchangeBackend]:
    with running_backend(tmp_path) as b:
        yield b
