"""Whether a running ``cadence serve`` is healthy, from the ticks it has run."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class TickOutcome:
    tick: int | None
    ok: bool
    finished: float  # Unix time
    error: str | None = None
    #: what went through but needs a person (a plan held by the guard, a broken plan file)
    warnings: tuple[str, ...] = ()


class Health:
    """Unhealthy after ``unhealthy_after`` failed ticks in a row, or when no tick has
    finished for three intervals (counted from the start before the first one)."""

    def __init__(
        self,
        interval: float,
        unhealthy_after: int = 3,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.interval = interval
        self.unhealthy_after = unhealthy_after
        self.clock = clock
        self.started = clock()
        self.failures = 0
        self.last: TickOutcome | None = None
        self.last_ok: TickOutcome | None = None
        #: mail that may not have gone out, one line each (views/uncertain.py)
        self.uncertain: list[str] = []
        self._lock = threading.Lock()

    def note_uncertain(self, lines: list[str]) -> None:
        """Keep the mail a person must check; /healthz says degraded while there is any."""
        with self._lock:
            self.uncertain = list(lines)

    def record(
        self,
        tick: int | None,
        ok: bool,
        error: str | None = None,
        warnings: tuple[str, ...] = (),
    ) -> int:
        """Note a finished tick; return the number of failed ticks in a row."""
        outcome = TickOutcome(tick, ok, self.clock(), error, warnings)
        with self._lock:
            self.last = outcome
            if ok:
                self.last_ok = outcome
                self.failures = 0
            else:
                self.failures += 1
            return self.failures

    def check(self) -> tuple[bool, dict[str, Any]]:
        """Return (healthy, a JSON-ready explanation)."""
        with self._lock:
            now = self.clock()
            since = self.last.finished if self.last else self.started
            stale = now - since > 3 * self.interval
            failing = self.failures >= self.unhealthy_after
            reasons = []
            if failing:
                reasons.append(f"the last {self.failures} ticks failed")
            if stale:
                what = (
                    "no tick has finished" if self.last else "no tick has finished since the start"
                )
                reasons.append(
                    f"{what} for {now - since:.0f}s (3 intervals: {3 * self.interval:.0f}s)"
                )
            # degraded: still serving (HTTP 200), but a person should look
            degraded = list(self.last.warnings) if self.last and not reasons else []
            if self.uncertain:
                degraded.append(
                    f"{len(self.uncertain)} mail(s) may not have gone out; check and resend"
                )
            body: dict[str, Any] = {
                "status": "unhealthy" if reasons else "degraded" if degraded else "ok",
                "reasons": reasons or degraded,
                "consecutive_failures": self.failures,
                "interval_seconds": self.interval,
                "last_tick": _describe(self.last),
                "last_ok_tick": _describe(self.last_ok),
            }
            if degraded:
                body["degraded"] = degraded
                body["uncertain_mail"] = list(self.uncertain)
            return not reasons, body


def _describe(outcome: TickOutcome | None) -> dict[str, Any] | None:
    if outcome is None:
        return None
    return {
        "tick": outcome.tick,
        "ok": outcome.ok,
        "finished": datetime.fromtimestamp(outcome.finished, UTC).isoformat(timespec="seconds"),
        "error": outcome.error,
        "warnings": list(outcome.warnings),
    }
