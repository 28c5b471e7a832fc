"""What would fail every tick fails ``cadence check`` instead: title templates, dates,
durations, stages, the tick, addresses, the accounts' own files; `run` and `serve`
refuse the same configurations with the same ``file:line: key: message`` lines.

A plan file that does not load is no configuration error (the mails go out without
it), but every tick says so: in its printed output, in ``cadence status`` and on
/healthz.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.app.cli import app
from agent.connectors.local import LocalCalendar
from agent.core.errors import PermanentError
from tests.conftest import NOW
from tests.factories import person

runner = CliRunner()
LINE = re.compile(r"^.+:\d+: \S+: .+$")
WHEN = NOW.isoformat()

#: the deep dive's title, the first of the demo's (each names ``what`` the meeting is)
DEEP_DIVE = 'title: "{{ what }}: {{ employee.first_name }} & {{ partner.first_name }}"'
STAGES = "stages: [align, advance, amplify, advocate]"


def _edit(config: Path, old: str, new: str) -> None:
    text = config.read_text()
    assert old in text, old
    config.write_text(text.replace(old, new, 1))


def _line_of(config: Path, text: str) -> int:
    return next(i for i, line in enumerate(config.read_text().splitlines(), 1) if text in line)


def _refused(config: Path, key: str, message: str) -> None:
    """check, run --once, plan and serve --check all exit 2 with the same error line."""
    for args in (
        ["check"],
        ["run", "--once", "--now", WHEN],
        ["plan", "--now", WHEN],
        ["serve", "--check"],
    ):
        result = runner.invoke(app, [*args, "--config", str(config)])
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output
        lines = result.output.strip().splitlines()
        assert all(LINE.match(line) for line in lines), lines
        assert any(f": {key}: " in line and message in line for line in lines), lines
        assert all(line.startswith(f"{config}:") for line in lines), lines


CASES = [
    # title templates, rendered for every relationship at every stage at load time
    ("syntax", DEEP_DIVE, 'title: "Development {{ stage | title }"', "does not parse"),
    ("undefined", DEEP_DIVE, 'title: "{{ employe.first_name }}"', "'employe' is undefined"),
    ("sandbox", DEEP_DIVE, 'title: "{{ employee.__class__ }}"', "unsafe"),
    ("zero", DEEP_DIVE, 'title: "{{ 1 // 0 }}"', "ZeroDivisionError"),
    ("stage-only", DEEP_DIVE, "title: \"{{ {'align': 'A'}[stage] }}\"", "at stage advance"),
    ("memory", DEEP_DIVE, "title: \"{{ 'x' * 10**12 }}\"", "unsafe"),
    # impossible dates: YAML reads them as text, the schema names the key
    ("closed", "country: DE,\n", "country: DE, closed: [2026-02-30],\n", "day value is outside"),
    # durations that no date arithmetic survives
    ("overflow", "every: 90d", "every: 99999999999d", "too long"),
    ("decades", "horizon: 14d, lead_time", "horizon: 3000000d, lead_time", "at most 3650d"),
    ("stages", STAGES, "stages: []", "an empty list"),
    ("twice", STAGES, "stages: [align, align]", "align listed more than once"),
    ("tick", "tick: 10m", "tick: 30s", "at least 1m"),
    ("escape", "ben@acme.example, name: Ben", "../ben@acme.example, name: Ben", "'..'"),
    ("slash", "ben@acme.example, name: Ben", "ben/x@acme.example, name: Ben", "'/'"),
]
KEYS = {
    "syntax": "programs.leader-cycle.series.deep_dive.title",
    "undefined": "programs.leader-cycle.series.deep_dive.title",
    "sandbox": "programs.leader-cycle.series.deep_dive.title",
    "zero": "programs.leader-cycle.series.deep_dive.title",
    "stage-only": "programs.leader-cycle.series.deep_dive.title",
    "memory": "programs.leader-cycle.series.deep_dive.title",
    "closed": "people[0].closed[0]",
    "overflow": "programs.leader-cycle.series.deep_dive.every",
    "decades": "programs.leader-cycle.booking.horizon",
    "stages": "programs.leader-cycle.series.deep_dive.stages",
    "twice": "programs.leader-cycle.series.deep_dive.stages",
    "tick": "tick",
    "escape": "people[0].email",
    "slash": "people[0].email",
}


@pytest.mark.parametrize(("name", "old", "new", "message"), CASES, ids=[c[0] for c in CASES])
def test_what_fails_every_tick_fails_check_run_and_serve(
    workspace: Path, name: str, old: str, new: str, message: str
) -> None:
    _edit(workspace, old, new)
    _refused(workspace, KEYS[name], message)
    # nothing was written outside the workspace's folders, nothing ticked
    assert not (workspace.parent / "var" / "cadence.db").exists()


def test_the_error_names_the_line_of_the_key(workspace: Path) -> None:
    _edit(workspace, DEEP_DIVE, 'title: "{{ nobody }}"')
    result = runner.invoke(app, ["check", "--config", str(workspace)])
    line = _line_of(workspace, 'title: "{{ nobody }}"')
    assert f"{workspace}:{line}: programs.leader-cycle.series.deep_dive.title:" in result.output


def test_a_title_of_a_program_nobody_follows_is_rendered_too(workspace: Path) -> None:
    _edit(workspace, "program: mentoring}", "program: leader-cycle}")
    _edit(workspace, "program: mentoring}", "program: leader-cycle}")
    mentoring = "\\bmentoring\\b'\n        title: \""
    _edit(workspace, mentoring + "{{ what }}", mentoring + "{{ mentee }}")
    result = runner.invoke(app, ["check", "--config", str(workspace)])
    assert result.exit_code == 2, result.output
    assert "programs.mentoring.series.one_on_one.title" in result.output
    assert "'mentee' is undefined" in result.output


def test_dates_in_plan_files_are_errors_with_their_line(workspace: Path) -> None:
    plan = workspace.parent / "plans" / "ana.yaml"
    text = plan.read_text()
    bad = re.sub(r"due: \d{4}-\d{2}-\d{2}", "due: 2026-13-45", text, count=1)
    assert bad != text
    plan.write_text(bad)
    line = _line_of(plan, "2026-13-45")
    result = runner.invoke(app, ["check", "--config", str(workspace)])
    assert result.exit_code == 2, result.output
    assert re.search(rf"ana\.yaml:{line}: goals\[0\]\.milestones\[0\]\.due: ", result.output)
    assert "Traceback" not in result.output


def test_explicit_tags_that_cannot_be_built_are_errors(workspace: Path) -> None:
    _edit(workspace, "tick: 10m", "tick: !!int ten")
    result = runner.invoke(app, ["check", "--config", str(workspace)])
    assert result.exit_code == 2, result.output
    assert f"{workspace}:{_line_of(workspace, '!!int')}: (syntax): " in result.output


def test_a_list_or_mapping_as_a_key_is_an_error(workspace: Path) -> None:
    # found by `make fuzz-config`: a `?` line made a mapping a key, and the duplicate-key
    # check raised TypeError
    for key in ("? {x: 1}", "? [a, b]\n: 1"):
        workspace.write_text(workspace.read_text().replace("\naccounts:", f"\n{key}\naccounts:", 1))
        result = runner.invoke(app, ["check", "--config", str(workspace)])
        assert result.exit_code == 2, result.output
        assert "a key must be a plain value, not a list or mapping" in result.output
        assert all(LINE.match(line) for line in result.output.strip().splitlines())
        workspace.write_text(workspace.read_text().replace(f"\n{key}\n", "\n", 1))


def test_the_local_calendar_path_never_leaves_its_folder(tmp_path: Path) -> None:
    folder = tmp_path / "calendars"
    folder.mkdir()
    intruder = person("../../outside", "UTC")
    calendar = LocalCalendar(folder, [intruder])
    for email in ("../../outside@x.example", "a/b@x.example", "a\\b@x.example", "a\0@x"):
        with pytest.raises(PermanentError, match="would leave the folder"):
            calendar.path(email)
    assert calendar.path("ana@x.example") == folder / "ana@x.example.ics"
    assert list(tmp_path.iterdir()) == [folder]


# --- the accounts' own files: what `run` refuses, `check` refuses ---------------------

GOOGLE = """\
accounts:
  acme:
    provider: google
    credentials: secrets/token.json
people:
  - {email: ana@acme.example}
"""
TOKEN = {"type": "authorized_user", "client_id": "c", "client_secret": "s", "refresh_token": "r"}


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        ("missing", "credentials file not found"),
        ("readable", "readable by their owner only; run: chmod 600"),
        ("folder", "must be a file"),
        ("garbage", "not a readable JSON credentials file"),
        ("kind", "expected a service-account key or an authorized-user token"),
    ],
)
def test_check_refuses_the_credentials_run_refuses(
    tmp_path: Path, prepare: str, message: str
) -> None:
    config = tmp_path / "cadence.yaml"
    config.write_text(GOOGLE)
    key = tmp_path / "secrets" / "token.json"
    key.parent.mkdir()
    if prepare == "folder":
        key.mkdir(mode=0o700)
    elif prepare != "missing":
        key.write_text(
            {"garbage": "{", "kind": json.dumps({"type": "x"})}.get(prepare, json.dumps(TOKEN))
        )
        key.chmod(0o644 if prepare == "readable" else 0o600)
    result = runner.invoke(app, ["check", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert f"{config}:4: accounts.acme.credentials: " in result.output, result.output
    assert message in result.output
    # the same call `run` makes when it opens the account
    from agent import connectors
    from agent.core.errors import ConfigError
    from agent.settings import config as config_mod

    settings = config_mod.load(config)
    ctx = connectors.Context("acme", settings.accounts["acme"], settings, [])
    with pytest.raises(ConfigError, match=re.escape(message)):
        connectors.connect(ctx)


def test_check_accepts_a_private_token_and_names_a_missing_ca_bundle(tmp_path: Path) -> None:
    config = tmp_path / "cadence.yaml"
    config.write_text(GOOGLE)
    key = tmp_path / "secrets" / "token.json"
    key.parent.mkdir()
    key.write_text(json.dumps(TOKEN))
    key.chmod(0o600)
    result = runner.invoke(app, ["check", "--config", str(config)])
    assert result.exit_code == 0, result.output
    config.write_text(GOOGLE.replace("    credentials:", "    ca_bundle: ca.pem\n    credentials:"))
    result = runner.invoke(app, ["check", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert f"{config}:4: accounts.acme.ca_bundle: account 'acme': ca_bundle" in result.output


MICROSOFT = """\
accounts:
  contoso:
    provider: microsoft
    tenant: contoso.example
    client_id: 00000000-0000-0000-0000-000000000001
    token_cache: state/msal.json
people:
  - {email: ana@contoso.example}
"""


def test_check_refuses_a_token_cache_run_refuses(tmp_path: Path) -> None:
    config = tmp_path / "cadence.yaml"
    config.write_text(MICROSOFT)
    result = runner.invoke(app, ["check", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert f"{config}:6: accounts.contoso.token_cache: " in result.output
    assert "sign in first with `cadence auth microsoft`" in result.output
    cache = tmp_path / "state" / "msal.json"
    cache.parent.mkdir()
    cache.write_text("{}")
    cache.chmod(0o644)
    result = runner.invoke(app, ["check", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert "chmod 600" in result.output
    cache.chmod(0o600)
    result = runner.invoke(app, ["check", "--config", str(config)])
    assert result.exit_code == 0, result.output


def test_check_refuses_a_missing_calendars_folder(workspace: Path) -> None:
    (workspace.parent / "calendars").rename(workspace.parent / "elsewhere")
    result = runner.invoke(app, ["check", "--config", str(workspace)])
    assert result.exit_code == 2, result.output
    line = _line_of(workspace, "calendars: calendars")
    assert f"{workspace}:{line}: accounts.demo.calendars: calendars folder" in result.output


# --- a plan that does not load: every tick says so -------------------------------------


def _break_plan(workspace: Path) -> Path:
    plan = workspace.parent / "plans" / "ana.yaml"
    plan.write_text(plan.read_text().replace("goals:", "goalz:", 1))
    return plan


def test_a_broken_plan_is_said_by_the_tick_status_and_healthz(workspace: Path) -> None:
    from agent.app.service import Service
    from agent.settings import config as config_mod
    from agent.tick import metrics

    plan = _break_plan(workspace)
    line = _line_of(plan, "goalz:")
    where = f"{plan}:{line}: goalz: unknown key"
    result = runner.invoke(app, ["run", "--once", "--now", WHEN, "--config", str(workspace)])
    assert result.exit_code == 0, result.output
    assert "! the plan of ana@acme.example does not load" in result.output
    assert where in result.output

    result = runner.invoke(app, ["status", "--now", WHEN, "--config", str(workspace)])
    assert "! the plan of ana@acme.example does not load" in result.output
    assert where in result.output
    result = runner.invoke(app, ["status", "--json", "--now", WHEN, "--config", str(workspace)])
    rows = json.loads(result.output)
    assert {r["plan_problem"] for r in rows if r["relationship"].startswith("ana@")} == {where}
    assert {r["plan_problem"] for r in rows if not r["relationship"].startswith("ana@")} == {None}

    service = Service(config_mod.load(workspace))  # activates the process's metrics
    try:
        service.tick()
        healthy, body = service.health.check()
        assert healthy and body["status"] == "degraded", body
        assert any("plan of ana@acme.example" in r and where in r for r in body["reasons"])

        plan.write_text(plan.read_text().replace("goalz:", "goals:", 1))
        service.tick()
        healthy, body = service.health.check()
        assert healthy and body["status"] == "ok", body
    finally:
        metrics.deactivate()
