from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from agent.app.cli import app

NOW = "2026-11-23T14:00:00+00:00"
runner = CliRunner()


def test_explain_shows_history_due_and_candidates(workspace: Path) -> None:
    assert runner.invoke(app, ["plan", "-c", str(workspace), "--now", NOW]).exit_code == 0
    result = runner.invoke(
        app, ["explain", "ana@acme.example/ben", "-c", str(workspace), "--now", NOW]
    )
    assert result.exit_code == 0, result.output
    out = result.output
    assert "held      [advance] 'Development Advance: Ana & Ben'" in out
    assert "deep_dive lapsed: last held" in out and "LAPSED" in out
    assert "next stage: amplify" in out
    assert "outside Ana's hours" in out and "Ben busy (with 10m buffer)" in out
    assert "→ Mon 12-07 10:00          CHOSEN" in out
    assert "same weekday and time as the last meeting (Mon 10:00)" in out


def test_explain_names_the_choices_for_an_unknown_relationship(workspace: Path) -> None:
    result = runner.invoke(app, ["explain", "nobody", "-c", str(workspace), "--now", NOW])
    assert result.exit_code == 2
    assert (
        "matches no relationship" in result.output
        and "ana@acme.example/ben@acme.example" in result.output
    )
    result = runner.invoke(app, ["explain", "ana@", "-c", str(workspace), "--now", NOW])
    assert result.exit_code == 2 and "ambiguous" in result.output


def test_auth_microsoft_needs_a_microsoft_account(workspace: Path) -> None:
    result = runner.invoke(app, ["auth", "microsoft", "-c", str(workspace)])
    assert result.exit_code == 2
