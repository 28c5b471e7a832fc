"""The employee's individual development plan (IDP), a YAML file per employee."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent import yamlsource
from agent.connectors.base import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Milestone(_Strict):
    title: str
    due: date | None = None
    done: bool = False


class Goal(_Strict):
    title: str
    success: str | None = None
    milestones: list[Milestone] = Field(default_factory=list)


class Skill(_Strict):
    name: str
    level: Literal["learning", "practising", "proficient", "expert"] = "learning"


class Preferences(_Strict):
    feedback: str | None = None
    communication: str | None = None


class ActionItem(_Strict):
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

    @property
    def open_actions(self) -> list[ActionItem]:
        return [a for a in self.actions if a.status == "open"]


def load(path: str | Path) -> Plan:
    """Load a plan file; raise ConfigError with file:line: key messages."""
    source = yamlsource.load(Path(path))
    data = source.data if source.data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source.path}:1: (top): a plan must be a mapping of keys")
    try:
        return Plan.model_validate(data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            errors.append(
                source.where(list(err["loc"]), str(message).removeprefix("Value error, "))
            )
        raise ConfigError(errors) from None
