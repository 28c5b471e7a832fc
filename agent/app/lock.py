"""One tick at a time per store, across processes and machines.

For an SQLite store, an advisory ``flock`` on a file beside it; for PostgreSQL, a
session advisory lock on its own connection, which several machines share. Either is
released when the holder dies (the kernel closes the file, the server the connection),
so a lock left by a killed process never blocks the next one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from agent.core import files
from agent.core.errors import CadenceError
from agent.store.broken import explain


class Busy(CadenceError):
    """Another Cadence process holds the store's lock."""


#: the advisory lock's key on a PostgreSQL store: any number, the same in every Cadence
TICK_KEY = 0x5449434B


class TickLock:
    def __init__(self, store: Path | str, wait: float = 0.0) -> None:
        self.store = store
        self.wait = wait
        self._fd: int | None = None
        self._server: Any = None

    @property
    def path(self) -> Path:
        assert isinstance(self.store, Path)
        return self.store.with_name(self.store.name + ".lock")

    def acquire(self) -> None:
        if isinstance(self.store, str):
            self._acquire_server(self.store)
            return
        try:
            files.private_folders(self.path.parent)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, files.PRIVATE_FILE)
        except OSError as exc:  # the store's folder is missing, read-only or full
            raise explain(self.store, exc) from exc
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                    os.close(fd)
                    raise Busy(
                        f"another Cadence process (pid {holder}) is ticking on this store; "
                        "try again when it has finished"
                    ) from None
                time.sleep(0.1)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, str(os.getpid()).encode(), 0)
        except OSError as exc:  # a full disk
            os.close(fd)
            raise explain(self.store, exc) from exc
        self._fd = fd

    def _acquire_server(self, url: str) -> None:
        import psycopg  # a PostgreSQL store only: a process on SQLite never loads it

        from agent.store.target import StoreTarget

        target = StoreTarget.of(url)
        assert target.url is not None
        try:
            conn = psycopg.connect(
                target.url.replace("postgresql+psycopg://", "postgresql://", 1), autocommit=True
            )
        except psycopg.Error as exc:
            raise explain(target.shown, exc) from exc
        deadline = time.monotonic() + self.wait
        while True:
            row = conn.execute("SELECT pg_try_advisory_lock(%s)", [TICK_KEY]).fetchone()
            if row and row[0]:
                break
            if time.monotonic() >= deadline:
                holder = conn.execute(
                    "SELECT a.pid, a.client_addr FROM pg_locks l JOIN pg_stat_activity a "
                    "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.objid = %s "
                    "AND l.granted AND l.database = (SELECT oid FROM pg_database "
                    "WHERE datname = current_database())",
                    [TICK_KEY],
                ).fetchone()
                conn.close()
                who = f"server pid {holder[0]} from {holder[1] or 'this host'}" if holder else "?"
                raise Busy(
                    f"another Cadence process ({who}) is ticking on this store; "
                    "try again when it has finished"
                )
            time.sleep(0.1)
        self._server = conn

    def release(self) -> None:
        if self._server is not None:
            conn, self._server = self._server, None
            import psycopg

            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT pg_advisory_unlock(%s)", [TICK_KEY])
            conn.close()
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> TickLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
