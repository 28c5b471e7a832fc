"""Stores for tests on both backends: SQLite files, and PostgreSQL databases made fresh
for each test on the local server (127.0.0.1, user postgres, trust auth) and dropped
after it. Where no PostgreSQL answers, its tests skip and say why."""

from __future__ import annotations

import functools
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
BACKENDS = ("sqlite", "postgresql")


@functools.cache
def postgres_missing() -> str | None:
    """Why PostgreSQL tests cannot run here, or None when they can."""
    try:
        with psycopg.connect(ADMIN, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return (
            f"PostgreSQL at 127.0.0.1:5432 (user postgres) is not reachable: {first}; "
            "run `make test-servers` to start it"
        )
    return None


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new, empty PostgreSQL database; yield its URL, drop it after."""
    reason = postgres_missing()
    if reason:
        pytest.skip(reason)
    name = f"cadence_test_{secrets.token_hex(6)}"
    with psycopg.connect(ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres() -> Iterator[str]:
    """The URL of a fresh PostgreSQL database."""
    with fresh_database() as url:
        yield url


@pytest.fixture(params=BACKENDS)
def store_at(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Path | str]:
    """Where a fresh store goes: an SQLite file, or a PostgreSQL database."""
    if request.param == "sqlite":
        yield tmp_path / "store" / "cadence.db"
    else:
        with fresh_database() as url:
            yield url


def use_store(config: Path, store: Path | str) -> None:
    """Point a workspace's config at ``store`` (its ``store:`` line)."""
    lines = config.read_text(encoding="utf-8").splitlines(keepends=True)
    found = [i for i, line in enumerate(lines) if line.startswith("store:")]
    entry = f"store: {store}\n"
    if found:
        lines[found[0]] = entry
    else:
        lines.insert(0, entry)
    config.write_text("".join(lines), encoding="utf-8")
