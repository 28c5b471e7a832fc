"""The ``push:`` section: its errors name the file, line and key; a local workspace with
push still serves and its people show as polled."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from agent.app.cli import app
from agent.settings import config

runner = CliRunner()
NOW = "2026-11-23T14:00:00+00:00"


def cadence(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_push_errors_name_file_line_and_key(workspace: Path) -> None:
    bad = workspace.with_name("bad.yaml")
    bad.write_text(
        workspace.read_text()
        + "push:\n  public_url: http://cadence.example.com/push\n  poll: 10s\n  colour: red\n"
    )
    result = cadence("check", "--config", str(bad))
    assert result.exit_code == 2
    text = result.stderr if result.stderr else result.output
    for pattern in (
        r"bad\.yaml:\d+: push\.public_url: .*not an https URL",
        r"bad\.yaml:\d+: push\.poll: .*too short",
        r"bad\.yaml:\d+: push\.colour: unknown key",
    ):
        assert re.search(pattern, text), (pattern, text)


def test_push_needs_the_http_endpoint(workspace: Path) -> None:
    bad = workspace.with_name("bad.yaml")
    bad.write_text(
        workspace.read_text()
        + "service:\n  port: 0\npush:\n  public_url: https://cadence.example.com/push\n"
    )
    result = cadence("check", "--config", str(bad))
    assert result.exit_code == 2
    text = result.stderr if result.stderr else result.output
    assert re.search(r"bad\.yaml:\d+: push: push needs the HTTP endpoint", text), text


def test_status_shows_local_people_as_polled(workspace: Path) -> None:
    workspace.write_text(
        workspace.read_text() + "push:\n  public_url: https://cadence.example.com/push/\n"
    )
    settings = config.load(workspace)
    assert settings.push is not None
    assert settings.push.public_url == "https://cadence.example.com/push"
    assert settings.push.poll.total_seconds() == 12 * 3600
    assert cadence("run", "--once", "--config", str(workspace), "--now", NOW).exit_code == 0
    text = cadence("status", "--config", str(workspace), "--now", NOW).output
    assert re.search(r"ana@acme\.example\s+polled", text), text
    rows = json.loads(cadence("status", "--config", str(workspace), "--now", NOW, "--json").output)
    assert set(rows[0]["push"].values()) == {"polled"}


def test_the_public_url_is_needed_for_google_and_microsoft_only(
    workspace: Path, tmp_path: Path
) -> None:
    # the local workspace: nobody calls Cadence, so push needs no public URL
    workspace.write_text(workspace.read_text() + "push:\n  pull: 10s\n")
    settings = config.load(workspace)
    assert settings.push is not None and settings.push.public_url is None
    assert settings.push.pull.total_seconds() == 10
    text = re.sub(
        r"accounts:\n",
        "accounts:\n  g:\n    provider: google\n    credentials: sa.json\n",
        workspace.read_text(),
        count=1,
    )
    for name, changed, pattern in (
        ("slow.yaml", "pull: 2h", r"slow\.yaml:\d+: push\.pull: .*between 1s and 30m"),
        (
            "google.yaml",
            "pull: 10s",
            r"google\.yaml:\d+: push: public_url is required.*account g\)",
        ),
    ):
        bad = workspace.with_name(name)
        bad.write_text(text.replace("pull: 10s", changed))
        result = cadence("check", "--config", str(bad))
        assert result.exit_code == 2
        out = result.stderr if result.stderr else result.output
        assert re.search(pattern, out), out


def test_exchange_streaming_settings_are_checked(workspace: Path) -> None:
    bad = workspace.with_name("bad.yaml")
    bad.write_text(
        workspace.read_text()
        + "push:\n  exchange: push\n  stream_group: 500\n  stream_timeout: 90s\n"
    )
    result = cadence("check", "--config", str(bad))
    assert result.exit_code == 2
    text = result.stderr if result.stderr else result.output
    for pattern in (
        r"bad\.yaml:\d+: push\.exchange: .*'stream' or 'pull'",
        r"bad\.yaml:\d+: push\.stream_group: .*between 1 and 200",
        r"bad\.yaml:\d+: push\.stream_timeout: .*whole minutes between 1m and 30m",
    ):
        assert re.search(pattern, text), (pattern, text)
    workspace.write_text(workspace.read_text() + "push:\n  stream_group: 50\n")
    push = config.load(workspace).push
    assert push is not None
    assert (push.exchange, push.stream_group) == ("stream", 50)
    assert push.stream_timeout.total_seconds() == 1800
