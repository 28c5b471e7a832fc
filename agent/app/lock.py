"""One tick at a time per store, across processes.

An advisory ``flock`` on a file beside the store: the kernel releases it when the
holder dies, so a lock left by a killed process never blocks the next one.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path
from types import TracebackType

from agent.core import files
from agent.core.errors import CadenceError
from agent.store.broken import explain


class Busy(CadenceError):
    """Another Cadence process holds the store's lock."""


class TickLock:
    def __init__(self, store: Path, wait: float = 0.0) -> None:
        self.store = store
        self.path = store.with_name(store.name + ".lock")
        self.wait = wait
        self._fd: int | None = None

    def acquire(self) -> None:
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

    def release(self) -> None:
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
