"""A provider's "wait before calling this mailbox again", shared beyond one process.

One process keeps such pauses in its connectors. Workers of the task queue share them
through Redis (``agent.queue.limits``): they install a keeper here, and the connectors
tell it each pause they are given and ask it before each request. Without one installed
(``cadence serve``, the CLI, tests) both calls do nothing.
"""

from __future__ import annotations

from typing import Protocol


class Keeper(Protocol):
    def pause(self, mailbox: str, seconds: float) -> None: ...

    def remaining(self, mailbox: str) -> float: ...


_keeper: Keeper | None = None


def install(keeper: Keeper | None) -> None:
    global _keeper
    _keeper = keeper


def pause(mailbox: str, seconds: float) -> None:
    """Let no process call ``mailbox`` for ``seconds``."""
    if _keeper is not None and mailbox and seconds > 0:
        try:
            _keeper.pause(mailbox, seconds)
        except Exception:  # the local pause still holds in this process
            return


def remaining(mailbox: str) -> float:
    """Seconds left of a pause another process was given (0: none, or no keeper)."""
    if _keeper is None or not mailbox:
        return 0.0
    try:
        return _keeper.remaining(mailbox)
    except Exception:  # Redis away: the request goes; a 429 would pause it again
        return 0.0
