"""``store:`` as a path or a URL: which backend, where the password comes from, and that
it is never shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.core.errors import ConfigError
from agent.settings import config
from agent.store import broken
from agent.store.target import PASSWORD_ENV, PASSWORD_FILE_ENV, StoreTarget
from tests.stores import use_store

URL = "postgresql+psycopg://cadence@db.example:5432/cadence"


def test_paths_and_sqlite_urls_are_files(tmp_path: Path) -> None:
    assert StoreTarget.of(tmp_path / "a.db").path == tmp_path / "a.db"
    assert StoreTarget.of(f"sqlite:///{tmp_path}/b.db").path == tmp_path / "b.db"
    assert StoreTarget.of(None).path is None and StoreTarget.of("sqlite://").path is None


def test_the_password_comes_from_the_environment_and_is_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "s3cr3t!")
    target = StoreTarget.of("postgresql://cadence@db.example:5432/cadence")
    assert target.url == "postgresql+psycopg://cadence:s3cr3t%21@db.example:5432/cadence"
    assert "s3cr3t" not in target.shown and target.shown.startswith("postgresql+psycopg://")
    problem = broken.explain(target.url, OSError("connection refused"))
    assert "s3cr3t" not in str(problem) and "cannot reach store" in str(problem)


def test_a_password_file_must_be_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "store-password"
    secret.write_text("from-file\n")
    secret.chmod(0o644)
    monkeypatch.setenv(PASSWORD_FILE_ENV, str(secret))
    with pytest.raises(ConfigError, match="chmod 600"):
        StoreTarget.of(URL)
    secret.chmod(0o600)
    assert StoreTarget.of(URL).url == URL.replace("cadence@", "cadence:from-file@")


def test_an_unknown_database_is_a_config_error_naming_the_line(workspace: Path) -> None:
    use_store(workspace, "mysql://cadence@db.example/cadence")
    with pytest.raises(ConfigError, match=r"cadence.yaml:\d+: store: mysql is not a store"):
        config.load(workspace)
    use_store(workspace, URL)
    settings = config.load(workspace)
    assert settings.store_at == URL and settings.store.parent == workspace.parent / "var"
