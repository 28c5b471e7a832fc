from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.app.demo import create_workspace
from agent.settings import config
from tests.environ import is_host_variable

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # a Monday


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow tests first, each in its place otherwise: parallel workers (``make test``
    runs ``pytest -n``) are dealt the first tests in turn, so the long ones start at once
    on different workers instead of one of them ending the run alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see proxies, CA overrides, credentials or a config from the host."""
    for name in list(os.environ):
        if is_host_variable(name) or name.upper().startswith("CADENCE_"):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def no_metrics_left() -> Iterator[None]:
    """A test that starts a service and never stops it leaves no metered connectors behind."""
    yield
    from agent.tick import metrics

    metrics.deactivate()


@pytest.fixture
def now() -> datetime:
    return NOW


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A fresh demo workspace; returns the config path."""
    return create_workspace(tmp_path / "demo", NOW)


@pytest.fixture
def settings(workspace: Path) -> config.Settings:
    return config.load(workspace)


from tests.stores import postgres, store_at  # noqa: E402, F401  (fixtures on both backends)
