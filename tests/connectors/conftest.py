"""The ``backend`` fixture: every contract test runs once per module in backends/; the
tick-level ones once more per store (``on_store``): SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import tests.connectors.backends as backends_pkg
from agent.settings.config import Settings
from tests.stores import BACKENDS, fresh_database

NAMES = sorted(m.name for m in pkgutil.iter_modules(backends_pkg.__path__))


@pytest.fixture(params=NAMES)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    module = importlib.import_module(f"tests.connectors.backends.{request.param}")
    with module.backend(tmp_path) as b:
        yield b


@pytest.fixture(params=BACKENDS)
def on_store(request: pytest.FixtureRequest) -> Iterator[Callable[[Settings], Settings]]:
    """Settings moved to a store of each backend: as loaded (SQLite), or a fresh
    PostgreSQL database."""
    if request.param == "sqlite":
        yield lambda settings: settings
    else:
        with fresh_database() as url:
            yield lambda settings: dataclasses.replace(settings, store_url=url)
