"""The retry policy every connector is handed: bounded backoff that honours Retry-After."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from agent.core.errors import TransientError

T = TypeVar("T")

#: called with the seconds of every pause before a retry (the service counts them)
WAIT_LISTENERS: list[Callable[[float], None]] = []


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with jitter that honours ``retry_after``.

    Inject ``RetryPolicy.none()`` in tests; production uses the defaults.
    """

    attempts: int = 5
    base: float = 0.5
    cap: float = 30.0
    max_total: float = 120.0
    sleep: Callable[[float], None] = time.sleep
    rand: Callable[[], float] = random.random

    @classmethod
    def none(cls) -> RetryPolicy:
        return cls(attempts=1)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        backoff = min(self.cap, self.base * 2**attempt) * (0.5 + self.rand() / 2)
        return float(max(backoff, retry_after or 0.0))

    def call(self, fn: Callable[[], T], *, idempotent: bool = True) -> T:
        """Run ``fn``, retrying TransientError within the policy's bounds.

        A call that is not ``idempotent`` (sending mail) is retried only after errors
        that certainly had no effect, so a retry can never send twice.
        """
        waited = 0.0
        for attempt in range(self.attempts):
            try:
                return fn()
            except TransientError as exc:
                if attempt + 1 >= self.attempts or (exc.maybe_done and not idempotent):
                    raise
                pause = self.delay(attempt, exc.retry_after)
                if waited + pause > self.max_total:
                    raise
                waited += pause
                for listener in WAIT_LISTENERS:
                    listener(pause)
                self.sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover
