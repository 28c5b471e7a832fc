"""What one tick reports: its actions, assessments, errors and plan."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from agent.rules import cadence, guard
from agent.rules.actions import Action
from agent.tick.executor import ActionRecord


@dataclass
class TickReport:
    tick: int
    now: datetime
    actions: list[ActionRecord] = field(default_factory=list)
    states: list[cadence.SeriesState] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: what the planner decided, in the order the executor took it
    planned: list[Action] = field(default_factory=list)
    #: how much the plan changes, and why the guard holds it (None: within the limits)
    scale: guard.Count = field(default_factory=lambda: guard.Count(0, 0, 0))
    held: str | None = None
    #: what a person should know though the tick went through (held plans, bad plans)
    warnings: list[str] = field(default_factory=list)
    #: the calendars this tick could not read
    unread: frozenset[str] = frozenset()

    def count(self, kind: str, outcome: str = "done") -> int:
        return sum(1 for a in self.actions if a.kind == kind and a.outcome == outcome)

    @property
    def ok(self) -> bool:
        return not self.errors


def _summary(state: cadence.SeriesState) -> str:
    zone = state.relationship.employee.zone
    if state.next_scheduled:
        when = state.next_scheduled.start.astimezone(zone)
        return f"{state.name}: next scheduled {when:%Y-%m-%d %H:%M} ({state.relationship.employee.timezone})"
    if state.skip_reason:
        return state.skip_reason
    return state.due_reason if state.lapsed else f"{state.name}: {state.due_reason}"
