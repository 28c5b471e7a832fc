"""The README documents every command and every configuration key."""

from __future__ import annotations

from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel

from agent.app.cli import app
from agent.settings.config import ConfigFile

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _commands() -> list[str]:
    names = [c.name or c.callback.__name__ for c in app.registered_commands]  # type: ignore[union-attr]
    for group in app.registered_groups:
        for sub in group.typer_instance.registered_commands:
            names.append(f"{group.name} {sub.name}")
    return names


def test_every_command_is_in_the_readme() -> None:
    missing = [n for n in _commands() if f"cadence {n}" not in README]
    assert not missing


def _models(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    out: list[type[BaseModel]] = []
    for arg in get_args(annotation):
        out += _models(arg)
    if get_origin(annotation) is not None and hasattr(annotation, "__metadata__"):
        out += _models(annotation.__origin__)
    return out


def _keys(model: type[BaseModel], seen: set[type[BaseModel]]) -> set[str]:
    if model in seen:
        return set()
    seen.add(model)
    keys = set()
    for name, field in model.model_fields.items():
        keys.add(field.alias or name)
        for sub in _models(field.annotation):
            keys |= _keys(sub, seen)
    return keys


def test_every_config_key_is_in_the_readme() -> None:
    missing = sorted(
        k
        for k in _keys(ConfigFile, set())
        if f"`{k}`" not in README and f".{k}`" not in README and f"{k}:" not in README
    )
    assert not missing
