"""What Cadence creates for itself is private whatever the umask (files 0600, folders
0700); what exists keeps its mode, never widened; a failed write leaves no temp file."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.core import files
from agent.store.sqlite import Store


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most permissive umask: what Cadence creates must not depend on it."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def test_a_new_store_its_wal_and_shm_and_its_folders_are_private(
    tmp_path: Path, open_umask: None
) -> None:
    tmp_path.chmod(0o755)
    path = tmp_path / "var" / "state" / "cadence.db"
    store = Store(path)
    store.audit(None, datetime.now(UTC), "test", "a write, so the -wal holds something")
    try:
        for made in (path, path.with_name("cadence.db-wal"), path.with_name("cadence.db-shm")):
            assert mode(made) == 0o600, made
        assert mode(path.parent) == 0o700 and mode(path.parent.parent) == 0o700
        assert mode(tmp_path) == 0o755  # a folder that was there is left as it was
    finally:
        store.close()


def test_an_existing_store_keeps_its_mode(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "cadence.db"
    Store(path).close()
    path.chmod(0o640)  # the owner's choice: a group that backs it up
    store = Store(path)
    store.audit(None, datetime.now(UTC), "test", "write")
    try:
        assert mode(path) == 0o640
        assert mode(path.with_name("cadence.db-wal")) == 0o640
    finally:
        store.close()


def test_the_tick_lock_folder_is_private(tmp_path: Path, open_umask: None) -> None:
    from agent.app.lock import TickLock

    with TickLock(tmp_path / "new" / "cadence.db") as lock:
        assert mode(lock.path.parent) == 0o700
        assert mode(lock.path) == 0o600


def _google(path: Path, text: str) -> None:
    from agent.connectors.google.signin import write_secret_json

    write_secret_json(path, {"token": text})


def _microsoft(path: Path, text: str) -> None:
    from agent.connectors.microsoft.graph import write_private

    write_private(path, text)


def _core(path: Path, text: str) -> None:
    files.write_private(path, text)


WRITERS = [_google, _microsoft, _core]


@pytest.mark.parametrize("write", WRITERS)
def test_a_new_token_is_0600_in_a_0700_folder(
    tmp_path: Path, open_umask: None, write: Callable[[Path, str], None]
) -> None:
    token = tmp_path / "secrets" / "deep" / "token.json"
    write(token, "one")
    assert mode(token) == 0o600
    assert mode(token.parent) == 0o700 and mode(token.parent.parent) == 0o700


@pytest.mark.parametrize("write", WRITERS)
def test_a_rewritten_token_is_never_widened(
    tmp_path: Path, open_umask: None, write: Callable[[Path, str], None]
) -> None:
    token = tmp_path / "token.json"
    write(token, "one")
    token.chmod(0o400)
    write(token, "two")
    assert "two" in token.read_text()
    assert mode(token) == 0o400
    token.chmod(0o644)  # wider than Cadence would make it: narrowed, not kept
    write(token, "three")
    assert mode(token) == 0o600


@pytest.mark.parametrize("write", WRITERS)
def test_a_full_disk_leaves_the_old_token_and_no_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, write: Callable[[Path, str], None]
) -> None:
    token = tmp_path / "token.json"
    write(token, "old")
    before = token.read_bytes()

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        write(token, "new")
    assert token.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["token.json"]
