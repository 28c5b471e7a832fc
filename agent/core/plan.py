"""The employee's individual development plan (IDP) as a domain value.

A plan holds a purpose statement, values, strengths, growth areas, a skills inventory
with levels, the working preferences the leader should know, one to three career goals
(each with what success looks like and dated milestones) and action items. The rules
quote it and compare its titles; reading it from a file is the settings layer's job
(``agent.settings.idp``), so these values live at the bottom of the import graph.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

LEVELS = ("learning", "practising", "proficient", "expert")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Milestone(_Strict):
    title: str
    due: date
    done: bool = False


class Goal(_Strict):
    title: str
    success: str | None = None
    milestones: list[Milestone] = Field(default_factory=list)

    @property
    def progress(self) -> tuple[int, int]:
        """Milestones done and in all."""
        return sum(1 for m in self.milestones if m.done), len(self.milestones)


class Skill(_Strict):
    name: str
    level: Literal["learning", "practising", "proficient", "expert"] = "learning"


class Preferences(_Strict):
    """How the employee likes to work with their leader."""

    feedback: str | None = None
    communication: str | None = None


class ActionItem(_Strict):
    """One thing the employee means to do, as their plan lists it: ``goal`` names the
    goal it serves, and ``status`` says whether it is still open."""

    title: str
    goal: str | None = None
    due: date | None = None
    status: Literal["open", "done", "dropped"] = "open"


class Plan(_Strict):
    """Purpose, values, strengths, skills, 1–3 goals with milestones, and action items."""

    purpose: str | None = None
    values: list[str] = Field(default_factory=list)
    strengths: list[str] = Field(default_factory=list)
    growth_areas: list[str] = Field(default_factory=list)
    skills: list[Skill] = Field(default_factory=list)
    preferences: Preferences = Preferences()
    goals: list[Goal] = Field(default_factory=list, max_length=3)
    actions: list[ActionItem] = Field(default_factory=list)
    #: whether a new leader (after a manager change) gets this plan in the hand-over
    share_with_new_leader: bool = False

    @property
    def open_actions(self) -> list[ActionItem]:
        return [a for a in self.actions if a.status == "open"]

    def goal(self, text: str | None) -> Goal | None:
        """Find the goal named ``text``: exactly, else by an unambiguous prefix or part."""
        if not text:
            return None
        wanted = normalize(text)
        for goal in self.goals:
            if normalize(goal.title) == wanted:
                return goal
        found = [g for g in self.goals if wanted in normalize(g.title)]
        return found[0] if len(found) == 1 else None


def normalize(text: str) -> str:
    """Compare titles the way people mean them: case, spacing and end punctuation aside."""
    return " ".join(text.lower().split()).rstrip(".!;:")
