"""The example configurations in config/: one per provider, each passing
``cadence check`` as it is, without warnings, on a fresh clone (no secrets, no sign-in)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import get_args

import pytest
import yaml
from pydantic import BaseModel
from typer.testing import CliRunner

from agent.app.cli import app
from agent.settings.schema import Account

EXAMPLES = Path(__file__).resolve().parents[1] / "config"
runner = CliRunner()


def _providers(annotation: object = Account) -> set[str]:
    """The ``provider:`` names the configuration accepts, from the account models."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return set(get_args(annotation.model_fields["provider"].annotation))
    return {name for arg in get_args(annotation) for name in _providers(arg)}


def test_every_provider_has_an_example() -> None:
    assert {path.stem for path in EXAMPLES.glob("*.yaml")} == _providers()


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_the_example_passes_check(path: Path, tmp_path: Path) -> None:
    # as a user would: a copy beside its own folders (the local provider's calendars
    # folder must exist; Cadence never starts from empty calendars)
    copy = tmp_path / path.name
    copy.write_text(path.read_text())
    shutil.copytree(path.parent / "plans", tmp_path / "plans")
    for account in yaml.safe_load(path.read_text())["accounts"].values():
        if account["provider"] == "local":
            (tmp_path / account["calendars"]).mkdir(parents=True)
    result = runner.invoke(app, ["check", "--config", str(copy)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f"{copy}: ok" in result.output
    assert "warning" not in result.output, result.output
    accounts = yaml.safe_load(path.read_text())["accounts"]
    assert {account["provider"] for account in accounts.values()} == {path.stem}
