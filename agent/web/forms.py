"""The plan form: a plan as form fields and back, and validation errors by field.

A plan is nested (goals hold milestones); the form is flat, with no script needed:
lists are text areas of one item a line, and each of the three goals is a fieldset.
The data the form gives is checked by ``idp.check``, the same check as ``cadence
check``, and each error is put beside the field it is about.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agent.core.plan import Plan
from agent.rules.messages import N_
from agent.settings import idp

GOALS = 3
_LISTS = ("values", "strengths", "growth_areas")
_DONE = re.compile(r"^\[(?P<mark>[ xX])\]\s*")


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def fields(plan: Plan | None) -> dict[str, str]:
    """The form's fields, filled from ``plan`` (empty without one)."""
    out: dict[str, str] = {name: "" for name in field_names()}
    if plan is None:
        return out
    out["purpose"] = plan.purpose or ""
    for name in _LISTS:
        out[name] = "\n".join(getattr(plan, name))
    out["skills"] = "\n".join(f"{s.name}: {s.level}" for s in plan.skills)
    out["preferences-feedback"] = plan.preferences.feedback or ""
    out["preferences-communication"] = plan.preferences.communication or ""
    for i, goal in enumerate(plan.goals):
        out[f"goals-{i}-title"] = goal.title
        out[f"goals-{i}-success"] = goal.success or ""
        out[f"goals-{i}-milestones"] = "\n".join(
            f"[{'x' if m.done else ' '}] {m.due.isoformat()} {m.title}" for m in goal.milestones
        )
    out["share_with_new_leader"] = "on" if plan.share_with_new_leader else ""
    return out


def field_names() -> list[str]:
    names = ["purpose", *_LISTS, "skills", "preferences-feedback", "preferences-communication"]
    for i in range(GOALS):
        names += [f"goals-{i}-title", f"goals-{i}-success", f"goals-{i}-milestones"]
    return [*names, "share_with_new_leader"]


Gettext = Callable[[str], str]


def parse(
    form: Mapping[str, str], actions: Sequence[Mapping[str, Any]], _: Gettext = N_
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The plan's data from the form (the actions kept as they are), and the errors
    found in lines the form cannot read, by field, in the reader's language (``_``)."""
    errors: dict[str, list[str]] = {}
    data: dict[str, Any] = {}
    purpose = form.get("purpose", "").strip()
    if purpose:
        data["purpose"] = purpose
    for name in _LISTS:
        data[name] = _lines(form.get(name, ""))
    skills = []
    for line in _lines(form.get("skills", "")):
        name, __, level = line.rpartition(":") if ":" in line else (line, "", "")
        skill = {"name": name.strip()}
        if level.strip():
            skill["level"] = level.strip()
        skills.append(skill)
    data["skills"] = skills
    prefs = {
        key: form.get(f"preferences-{key}", "").strip() or None
        for key in ("feedback", "communication")
    }
    data["preferences"] = {k: v for k, v in prefs.items() if v}
    goals = []
    for i in range(GOALS):
        title = form.get(f"goals-{i}-title", "").strip()
        success = form.get(f"goals-{i}-success", "").strip()
        lines = _lines(form.get(f"goals-{i}-milestones", ""))
        if not (title or success or lines):
            continue
        goal: dict[str, Any] = {"title": title, "milestones": []}
        if success:
            goal["success"] = success
        for n, line in enumerate(lines, start=1):
            mark = _DONE.match(line)
            rest = line[mark.end() :] if mark else line
            due, __, what = rest.partition(" ")
            if not what.strip():
                errors.setdefault(f"goals-{i}-milestones", []).append(
                    _("line %(n)s: write a date (YYYY-MM-DD), then the milestone") % {"n": n}
                )
                continue
            goal["milestones"].append(
                {
                    "title": what.strip(),
                    "due": due,
                    "done": bool(mark and mark.group("mark") in "xX"),
                }
            )
        if not title:
            errors.setdefault(f"goals-{i}-title", []).append(_("a goal needs a title"))
        goals.append((i, goal))
    data["goals"] = [g for _, g in goals]
    data["actions"] = [dict(a) for a in actions]
    data["share_with_new_leader"] = bool(form.get("share_with_new_leader"))
    data["_goal_fields"] = [i for i, _ in goals]
    return data, errors


def check(
    form: Mapping[str, str], actions: Sequence[Mapping[str, Any]], _: Gettext = N_
) -> tuple[Plan | None, dict[str, list[str]]]:
    """The plan the form describes, or every error by field name (``""``: the whole plan).
    The form's own sentences are in the reader's language (``_``); what the plan check
    says of a value is its own English (the same as ``cadence check``)."""
    data, errors = parse(form, actions, _)
    goal_fields: list[int] = data.pop("_goal_fields")
    plan, problems = idp.check(data)
    for loc, message in problems:
        name, message = _field(loc, message, goal_fields, _)
        errors.setdefault(name, []).append(message)
    return (plan if not errors else None), errors


def _field(
    loc: tuple[str | int, ...], message: str, goal_fields: list[int], _: Gettext = N_
) -> tuple[str, str]:
    """The form field an error of ``idp.check`` is about, and its message for that field."""
    if not loc:
        return "", message
    head = str(loc[0])
    if head == "preferences" and len(loc) > 1:
        return f"preferences-{loc[1]}", message
    if head == "goals" and len(loc) > 1 and isinstance(loc[1], int):
        i = goal_fields[loc[1]] if loc[1] < len(goal_fields) else loc[1]
        if len(loc) > 3 and loc[2] == "milestones" and isinstance(loc[3], int):
            said = f"{loc[-1]}: {message}"
            return f"goals-{i}-milestones", _("line %(n)s: %(message)s") % {
                "n": loc[3] + 1,
                "message": said,
            }
        return f"goals-{i}-{loc[2] if len(loc) > 2 else 'title'}", message
    if head in (*_LISTS, "skills") and len(loc) > 1 and isinstance(loc[1], int):
        return head, _("line %(n)s: %(message)s") % {"n": loc[1] + 1, "message": message}
    return head, message
