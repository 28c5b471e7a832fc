"""The guard against mass mistakes: whether a plan does far more than a tick should.

A mistyped calendars folder, a missing scope or an emptied calendar makes everyone
look never held, and the plan then books and mails for everybody at once. Past the
configured limits the tick acts on nothing until a person confirms.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agent.core.model import Guard
from agent.rules.actions import Action, acts


@dataclass(frozen=True)
class Count:
    """What a plan would change: its bookings, moves and mails, and for how many of
    the relationships."""

    actions: int
    relationships: int
    of: int

    @property
    def share(self) -> float:
        return self.relationships / self.of if self.of else 0.0

    def __str__(self) -> str:
        return (
            f"{self.actions} booking(s), move(s) and mail(s) for {self.relationships} "
            f"of {self.of} relationships ({self.share:.0%})"
        )


def guarded(guard: Guard) -> bool:
    """Whether ``guard:`` sets any limit."""
    return guard.max_actions is not None or guard.max_share is not None


def count(actions: Sequence[Action], relationships: int) -> Count:
    doing = [a for a in actions if acts(a)]
    return Count(len(doing), len({a.relationship for a in doing}), relationships)


def exceeded(found: Count, guard: Guard) -> str | None:
    """Why ``found`` is past the guard's limits; None when it is within them."""
    if guard.max_actions is not None and found.actions > guard.max_actions:
        return f"{found}: more than guard.max_actions ({guard.max_actions})"
    if (
        guard.max_share is not None
        and found.of >= guard.min_relationships
        and found.share > guard.max_share
    ):
        return f"{found}: more than guard.max_share ({guard.max_share:.0%})"
    return None
