"""Crash points for tests: ``CADENCE_KILL_AT=N`` makes the process SIGKILL itself at the
Nth point it passes, so tests can prove that a restart never repeats a side effect.
``CADENCE_PAUSE_AT=N`` makes it touch ``$CADENCE_PAUSE_FILE`` and sleep a few seconds
there instead, so a test can signal it in the middle of a tick. ``CADENCE_KILL_TRACE``
names a file that gets the name of every point passed, one a line: with a target past
the end, a test learns how many points a tick has, and where."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

ENV = "CADENCE_KILL_AT"
_passed = 0
_lock = threading.Lock()  # bookings are made from several threads


def point(name: str) -> None:
    """Mark a crash point; a no-op unless ``$CADENCE_KILL_AT`` is set."""
    global _passed
    target = os.environ.get(ENV)
    pause = os.environ.get("CADENCE_PAUSE_AT")
    if not target and not pause:
        return
    with _lock:
        _passed += 1
        passed = _passed
    if pause and passed == int(pause):
        Path(os.environ["CADENCE_PAUSE_FILE"]).write_text(name)
        time.sleep(float(os.environ.get("CADENCE_PAUSE_SECONDS", "3")))
    if not target:
        return
    trace = os.environ.get("CADENCE_KILL_TRACE")
    if trace:
        with open(trace, "a", encoding="utf-8") as handle:
            handle.write(f"{name}\n")
    if passed == int(target):
        os.kill(os.getpid(), signal.SIGKILL)


def passed() -> int:
    return _passed
