"""What went wrong with the store file, said in one line with what to do about it.

SQLite and the file system answer a broken store with terse errors ("unable to open
database file", "disk I/O error") that name neither the file nor a remedy. Every
command that opens the store turns them into a ``StoreError`` through ``explain``, and
the CLI prints it on one line and exits 1, instead of a traceback.
"""

from __future__ import annotations

import errno
import sqlite3
import sys
from pathlib import Path

from agent.core.errors import CadenceError


class StoreError(CadenceError):
    """The store cannot be used as it is; the message names the file and the remedy."""


def database_errors() -> tuple[type[Exception], ...]:
    """What the database drivers raise: a store that cannot be used, not a caller's bug.
    psycopg's errors count once psycopg is loaded: a PostgreSQL store loads it before it
    can raise, and a process on SQLite is spared loading it (a tenth of a second)."""
    psycopg = sys.modules.get("psycopg")
    return (sqlite3.Error,) if psycopg is None else (sqlite3.Error, psycopg.Error)


def store_errors() -> tuple[type[Exception], ...]:
    """Those, and what ``explain`` already said in one line."""
    return (*database_errors(), StoreError)


def is_store_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is the database's or the file system's (then ``explain`` it)."""
    return isinstance(exc, (*store_errors(), OSError))


def explain(path: Path | str, exc: BaseException) -> StoreError:
    """Return the one-line ``StoreError`` for ``exc``, raised while using ``path`` (an
    SQLite file, or a server's URL with its password masked)."""
    if isinstance(exc, StoreError):
        return exc
    text = str(exc).strip() or type(exc).__name__
    if isinstance(path, str):
        return _server(masked(path), text.splitlines()[0])
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


def masked(url: str) -> str:
    """A server's URL as messages show it: without its password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "the store: server URL not understood"


def _server(shown: str, text: str) -> StoreError:
    lowered = text.lower()
    if "connection refused" in lowered or "could not translate" in lowered:
        return StoreError(
            f"cannot reach store {shown} ({text}): check that the server runs and that "
            "this machine may connect to it"
        )
    if "password" in lowered or "authentication" in lowered:
        return StoreError(
            f"store {shown} refused the sign-in ({text}): set CADENCE_STORE_PASSWORD or "
            "CADENCE_STORE_PASSWORD_FILE (a file of mode 0600)"
        )
    if "does not exist" in lowered:
        return StoreError(f"store {shown}: {text}; create the database, then run again")
    return StoreError(f"store {shown}: {text}")
