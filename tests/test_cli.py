from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.app.cli import app
from agent.app.lock import TickLock
from agent.store.sqlite import Store

NOW = "2026-11-23T14:00:00+00:00"
runner = CliRunner()


def cadence(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_check_accepts_the_demo(workspace: Path) -> None:
    result = cadence("check", "--config", str(workspace))
    assert result.exit_code == 0, result.output
    assert "6 people, 6 relationships, 2 programs" in result.output


def test_config_from_environment(workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CADENCE_CONFIG", str(workspace))
    assert cadence("check").exit_code == 0


def _break(workspace: Path, *pairs: tuple[str, str]) -> Path:
    text = workspace.read_text()
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new, 1)
    bad = workspace.with_name("bad.yaml")
    bad.write_text(text)
    return bad


def test_check_reports_every_error_with_file_line_and_key(workspace: Path) -> None:
    bad = _break(
        workspace,
        ("timezone: America/Sao_Paulo", "timezone: America/Sao_Paolo"),
        ("every: 90d", "every: 90 days"),
        ("lapse_grace: 7d", "lapse_grace: 7d\n    colour: blue"),
        ('mon-fri: "09:00-17:30"', 'mon-fri: "17:30-09:00"'),
        ("partner: chloe@acme.example", "partner: zoe@acme.example"),
    )
    result = cadence("check", "--config", str(bad))
    assert result.exit_code == 2
    lines = (
        result.stderr.strip().splitlines() if result.stderr else result.output.strip().splitlines()
    )
    text = "\n".join(lines)
    for pattern in (
        r"bad\.yaml:\d+: people\[1\]\.timezone: unknown time zone 'America/Sao_Paolo'",
        r"bad\.yaml:\d+: programs\.leader-cycle\.series\.deep_dive\.every: not a duration",
        r"bad\.yaml:\d+: programs\.leader-cycle\.colour: unknown key",
        r"bad\.yaml:\d+: people\[3\]\.working_hours: span '17:30-09:00' ends before it starts",
        r"bad\.yaml:\d+: relationships\[4\]\.partner: zoe@acme\.example is not among people",
    ):
        assert re.search(pattern, text), (pattern, text)
    # the line numbers point at the offending lines
    source = bad.read_text().splitlines()
    for line in lines:
        number = int(line.split(":")[1])
        key = line.split(": ")[1].split(".")[-1].split("[")[0]
        assert key in source[number - 1], (line, source[number - 1])


def test_check_reports_unknown_people_and_programs(workspace: Path) -> None:
    bad = _break(
        workspace,
        ("partner: chloe@acme.example", "partner: zoe@acme.example"),
        ("program: mentoring}\n  - {employee: farid", "program: coaching}\n  - {employee: farid"),
    )
    result = cadence("check", "--config", str(bad))
    assert result.exit_code == 2
    assert "relationships[4].partner: zoe@acme.example is not among people" in result.output
    assert "relationships[4].program: no program named 'coaching'" in result.output


def test_check_reports_yaml_syntax_and_missing_files(tmp_path: Path, workspace: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("people:\n  - {email: a@b.c\n")
    result = cadence("check", "--config", str(broken))
    assert result.exit_code == 2 and "broken.yaml:" in result.output
    assert cadence("check", "--config", str(tmp_path / "nope.yaml")).exit_code == 2


def test_check_validates_plans(workspace: Path) -> None:
    plan = workspace.parent / "plans" / "ana.yaml"
    plan.write_text(plan.read_text() + "hobbies: [chess]\n")
    result = cadence("check", "--config", str(workspace))
    assert result.exit_code == 2
    assert re.search(r"ana\.yaml:\d+: hobbies: unknown key", result.output)


def test_schema_is_json_schema() -> None:
    result = cadence("schema")
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert schema["title"] == "Cadence configuration"
    assert {"accounts", "people", "relationships", "programs"} <= set(schema["properties"])


def test_now_needs_an_offset(workspace: Path) -> None:
    result = cadence("plan", "--config", str(workspace), "--now", "2026-11-23T14:00:00")
    assert result.exit_code == 2 and "offset" in result.output
    result = cadence("plan", "--config", str(workspace), "--now", "yesterday")
    assert result.exit_code == 2


def test_run_needs_once(workspace: Path) -> None:
    assert cadence("run", "--config", str(workspace)).exit_code == 2


def test_plan_changes_nothing_then_run_acts_then_rerun_is_quiet(workspace: Path) -> None:
    outbox = workspace.parent / "outbox"
    calendars = {p: p.read_bytes() for p in (workspace.parent / "calendars").glob("*.ics")}
    planned = cadence("plan", "--config", str(workspace), "--now", NOW)
    assert planned.exit_code == 0, planned.output
    assert "would book" in planned.output
    assert not list(outbox.glob("*.eml"))
    assert {p: p.read_bytes() for p in calendars} == calendars

    ran = cadence("run", "--once", "--config", str(workspace), "--now", NOW)
    assert ran.exit_code == 0, ran.output
    assert "booked" in ran.output
    mails = sorted(p.name for p in outbox.glob("*.eml"))
    assert mails

    again = cadence("run", "--once", "--config", str(workspace), "--now", NOW)
    assert again.exit_code == 0
    assert "Nothing new to book or send" in again.output
    assert sorted(p.name for p in outbox.glob("*.eml")) == mails

    status = cadence("status", "--config", str(workspace), "--now", NOW, "--json")
    rows = json.loads(status.output)
    ana = next(
        r
        for r in rows
        if r["relationship"] == "ana@acme.example/ben@acme.example" and r["series"] == "deep_dive"
    )
    assert ana["next_scheduled"] is not None

    log = cadence("log", "--config", str(workspace), "--kind", "book")
    assert "deep_dive lapsed: last held" in log.output


def test_a_second_process_waits_or_says_why(workspace: Path) -> None:
    store = workspace.parent / "var" / "cadence.db"
    Store(store).close()
    with TickLock(store):
        result = cadence("run", "--once", "--config", str(workspace), "--now", NOW)
    assert result.exit_code == 1
    assert "another Cadence process" in result.output


def test_read_only_books_and_sends_nothing_but_logs_what_it_would_do(workspace: Path) -> None:
    text = workspace.read_text().replace("tick: 10m", "tick: 10m\nread_only: true")
    workspace.write_text(text)
    calendars = {p: p.read_bytes() for p in (workspace.parent / "calendars").glob("*.ics")}
    result = cadence("run", "--once", "--config", str(workspace), "--now", NOW)
    assert result.exit_code == 0, result.output
    assert not list((workspace.parent / "outbox").glob("*.eml"))
    assert {p: p.read_bytes() for p in calendars} == calendars
    log = cadence("log", "--config", str(workspace), "--kind", "read-only", "-n", "100")
    assert "read-only, not done: book Conversa de desenvolvimento Amplify: Ana & Ben" in log.output
    assert "read-only, not done: agenda" in log.output
    assert "lapsed" in cadence("log", "--config", str(workspace), "--kind", "assess").output


def test_a_lock_left_by_a_killed_process_is_recovered(tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    store = tmp_path / "cadence.db"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from agent.app.lock import TickLock; "
            "TickLock(Path(sys.argv[1])).acquire(); print('held', flush=True); time.sleep(60)",
            str(store),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    from agent.app.lock import Busy

    with pytest.raises(Busy):
        TickLock(store).acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    holder.stdout.close()
    started = time.monotonic()
    with TickLock(store):
        assert time.monotonic() - started < 1
