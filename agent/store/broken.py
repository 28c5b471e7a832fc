"""What went wrong with the store file, said in one line with what to do about it.

SQLite and the file system answer a broken store with terse errors ("unable to open
database file", "disk I/O error") that name neither the file nor a remedy. Every
command that opens the store turns them into a ``StoreError`` through ``explain``, and
the CLI prints it on one line and exits 1, instead of a traceback.
"""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

from agent.core.errors import CadenceError


class StoreError(CadenceError):
    """The store cannot be used as it is; the message names the file and the remedy."""


def explain(path: Path, exc: BaseException) -> StoreError:
    """Return the one-line ``StoreError`` for ``exc``, raised while using ``path``."""
    if isinstance(exc, StoreError):
        return exc
    text = str(exc).strip() or type(exc).__name__
    lowered = text.lower()
    code = exc.errno if isinstance(exc, OSError) else None
    folder = path.parent
    if path.is_dir():
        return StoreError(
            f"store {path} is a folder, not a file: point `store:` in the config at a file "
            f"such as {path / 'cadence.db'}"
        )
    if "disk is full" in lowered or code in (errno.ENOSPC, errno.EDQUOT):
        return StoreError(
            f"store {path}: the disk is full ({text}); free space on it, then run again "
            "(nothing was lost: the last finished write is kept)"
        )
    if "readonly" in lowered or "read-only" in lowered or code in (errno.EACCES, errno.EROFS):
        return StoreError(
            f"store {path} is read-only ({text}): let the user running Cadence write both "
            f"the file and its folder {folder} (SQLite keeps its -wal and -shm files there)"
        )
    if "not a database" in lowered:
        return StoreError(
            f"store {path} is not an SQLite database: point `store:` in the config at "
            "Cadence's store, or move this file away to start a new one"
        )
    if "malformed" in lowered or "corrupt" in lowered:
        return StoreError(
            f"store {path} is corrupted ({text}): restore it from a backup, or move it away "
            f"and salvage what is left with: sqlite3 {path} .recover | sqlite3 recovered.db"
        )
    if "locked" in lowered or "busy" in lowered:
        return StoreError(
            f"store {path} is locked by another process ({text}); try again when it is done"
        )
    if "unable to open" in lowered or isinstance(exc, OSError):
        return StoreError(
            f"cannot open store {path} ({text}): check that its folder {folder} exists and "
            "that the user running Cadence can read and write the file and the folder"
        )
    if isinstance(exc, sqlite3.Error):
        return StoreError(f"store {path}: {text}; check the file with: sqlite3 {path} .dbinfo")
    return StoreError(f"store {path}: {text}")
