"""Crash points for tests: ``CADENCE_KILL_AT=N`` makes the process SIGKILL itself at the
Nth point it passes, so tests can prove that a restart never repeats a side effect."""

from __future__ import annotations

import os
import signal

ENV = "CADENCE_KILL_AT"
_passed = 0


def point(name: str) -> None:
    """Mark a crash point; a no-op unless ``$CADENCE_KILL_AT`` is set."""
    global _passed
    target = os.environ.get(ENV)
    if not target:
        return
    _passed += 1
    if _passed == int(target):
        trace = os.environ.get("CADENCE_KILL_TRACE")
        if trace:
            with open(trace, "a", encoding="utf-8") as handle:
                handle.write(f"{name}\n")
        os.kill(os.getpid(), signal.SIGKILL)


def passed() -> int:
    return _passed
