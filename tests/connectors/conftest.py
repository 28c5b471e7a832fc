"""The ``backend`` fixture: every contract test runs once per module in backends/."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tests.connectors.backends as backends_pkg

NAMES = sorted(m.name for m in pkgutil.iter_modules(backends_pkg.__path__))


@pytest.fixture(params=NAMES)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    module = importlib.import_module(f"tests.connectors.backends.{request.param}")
    with module.backend(tmp_path) as b:
        yield b
