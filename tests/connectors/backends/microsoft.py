"""Contract-suite backend for the Microsoft Graph connector, on the local Graph server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.microsoft.fixtures import MicrosoftBackend, running_backend


@contextmanager
def backend(tmp_path: Path) -> Iterator[MicrosoftBackend]:
    with running_backend(tmp_path) as b:
        yield b
