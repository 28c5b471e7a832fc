from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent import config
from agent.demo import create_workspace

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # a Monday


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see proxies, CA overrides, credentials or a config from the host."""
    for name in list(os.environ):
        upper = name.upper()
        if (
            upper.endswith("_PROXY")
            or upper in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")
            or upper.startswith(("GOOGLE_", "AZURE_", "CADENCE_"))
        ):
            monkeypatch.delenv(name, raising=False)


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
