"""The employee's individual development plan (IDP), a YAML file per employee.

The plan's values (``Plan``, ``Goal``, ``normalize`` ...) live in ``agent.core.plan``, so
the rules can use them without importing a loader; this module reads and checks the
file. Agendas quote the plan; replies to recaps add to its action list in the store
(never in the file).
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

from pydantic import ValidationError

from agent.core.errors import ConfigError
from agent.core.plan import (
    LEVELS,
    ActionItem,
    Goal,
    Milestone,
    Plan,
    Preferences,
    Skill,
    normalize,
)
from agent.settings import yamlsource

__all__ = [
    "LEVELS",
    "ActionItem",
    "Goal",
    "Milestone",
    "Plan",
    "Preferences",
    "Skill",
    "check",
    "default_path",
    "load",
    "normalize",
    "starter",
]

_MESSAGES = {"too_long": "at most 3 goals: a plan with more has no focus"}


Loc = tuple[str | int, ...]


def check(data: object) -> tuple[Plan | None, list[tuple[Loc, str]]]:
    """Validate a plan's data as ``cadence check`` does: the plan, or every error with
    the key it is about (``("goals", 0, "title")``); the web form shows them by field."""
    if not isinstance(data, dict):
        return None, [((), "a plan must be a mapping of keys")]
    try:
        plan = Plan.model_validate(data)
    except ValidationError as exc:
        return None, [
            (tuple(err["loc"]), yamlsource.error_message(err, _MESSAGES)) for err in exc.errors()
        ]
    errors: list[tuple[Loc, str]] = []
    if not plan.goals:
        errors.append((("goals",), "at least one goal: a plan holds one to three career goals"))
    for i, action in enumerate(plan.actions):
        if action.goal and plan.goal(action.goal) is None:
            names = "; ".join(g.title for g in plan.goals) or "none yet"
            errors.append((("actions", i, "goal"), f"no goal {action.goal!r} (goals: {names})"))
    return (None if errors else plan), errors


def load(path: str | Path) -> Plan:
    """Load a plan file; raise ConfigError with file:line: key messages."""
    source = yamlsource.load(Path(path))
    data = source.data if source.data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source.path}:1: (top): a plan must be a mapping of keys")
    plan, errors = check(data)
    if errors:
        raise ConfigError([source.where(list(loc), message) for loc, message in errors])
    assert plan is not None
    return plan


_STARTER = """\
# Development plan (IDP) of {name} <{email}>.
# {name} owns this file; {leader} reads it. Cadence quotes it in agendas and recaps
# and adds the actions from replies to recaps to its store (never to this file).
# Check it with: cadence check

# Why you do the work you do, in a sentence or two.
purpose: >-
  Write what you want your work to achieve.

# What matters to you at work.
values: [curiosity, candour]

# What you do best; your leader gives feedback on these in the Align deep dive.
strengths:
  - a strength people count on you for

# Where you want to grow.
growth_areas:
  - an area you want to get better at

# Skills inventory; level is one of: learning, practising, proficient, expert.
skills:
  - {{name: a skill you use every week, level: practising}}

# How you like to work with your leader.
preferences:
  feedback: how you like to receive feedback (written, in the moment, with examples...)
  communication: how you like to communicate (async first, a call for anything sensitive...)

# One to three career goals, each with what success looks like and dated milestones.
goals:
  - title: a goal for the next twelve months
    success: how you and your leader will know you got there
    milestones:
      - {{title: a first step, due: {first}}}
      - {{title: a visible result, due: {second}}}

# Action items: title, the goal they serve, an optional due date and a status
# (open, done or dropped). Reply to a recap with "- [ ] title (due {first})" or
# "- [x] title" to add or complete actions without editing this file.
actions:
  - {{title: a first action, goal: a goal for the next twelve months, due: {first}, status: open}}
"""


def starter(name: str, email: str, leader: str, today: date) -> str:
    """Return a commented starter plan that ``load`` accepts as it is."""
    first = date(today.year + (today.month + 2) // 12, (today.month + 2) % 12 + 1, 1)
    second = date(first.year + 1 if first.month > 6 else first.year, (first.month + 5) % 12 + 1, 1)
    return _STARTER.format(
        name=name, email=email, leader=leader, first=first.isoformat(), second=second.isoformat()
    )


_SAFE = re.compile(r"[^A-Za-z0-9@._+-]")


def default_path(email: str) -> str:
    """The relative path of a plan whose person names none: ``plans/<email>.yaml``."""
    return f"plans/{_SAFE.sub('_', email)}.yaml"
