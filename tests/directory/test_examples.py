"""The directory examples in config/directory/ pass ``cadence check`` and read as shown."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.app.cli import app

EXAMPLES = Path(__file__).resolve().parents[2] / "config" / "directory"


@pytest.mark.parametrize(
    ("name", "lines"),
    [
        ("plain.yaml", ["joins: li@acme.example (leader nadia@acme.example)",
                        "joins: tom@acme.example (leader li@acme.example)",
                        "0 -> 4 people; 4 joined, 0 left, 0 new leader(s), 3 line(s) started"]),
        ("hr-export.yaml", ["joins: kenji.sato@acme.example (leader seun.adeyemi@acme.example)",
                            "0 -> 5 people; 5 joined, 0 left, 0 new leader(s), 3 line(s) started"]),
    ],
)  # fmt: skip
def test_the_example_checks_and_reads(name: str, lines: list[str], tmp_path: Path) -> None:
    folder = tmp_path / "example"
    shutil.copytree(EXAMPLES, folder)
    (folder / "calendars").mkdir()
    config = str(folder / name)
    result = CliRunner().invoke(app, ["check", "--config", config])
    assert result.exit_code == 0 and "warning" not in result.output, result.output
    result = CliRunner().invoke(app, ["directory", "diff", "--config", config])
    assert result.exit_code == 0, result.output
    for line in lines:
        assert line in result.stdout
    if name == "hr-export.yaml":  # a contractor is read (they may lead) but not in the program
        assert "joins: priya.raman@acme.example (not in the program)" in result.stdout


def test_the_ldap_example_checks(tmp_path: Path) -> None:
    # it reads Active Directory: tests/directory/test_ldap.py reads a real slapd instead
    folder = tmp_path / "example"
    shutil.copytree(EXAMPLES, folder)
    result = CliRunner().invoke(app, ["check", "--config", str(folder / "ldap.yaml")])
    assert result.exit_code == 0 and "warning" not in result.output, result.output
    assert f"{folder / 'ldap.yaml'}: ok" in result.output
