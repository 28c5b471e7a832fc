"""What the tests' real servers (Dovecot, slapd) share: stopping, and ``with``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any, Self


class Daemon:
    """A program started in a temporary ``home``; ``stop`` ends it and removes the home."""

    _process: subprocess.Popen[Any] | None = None
    home: Path | None = None

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
            self._process = None
        if self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)
            self.home = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
