"""Access tokens reused until they expire, in one process and across ``run --once``
processes, through the account's 0600 token cache."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.app.cli import app
from agent.connectors import preflight
from agent.core.errors import ConfigError
from agent.core.model import Interval
from agent.core.tokencache import TokenCache
from tests.google.harness import PROGRAMS, Workspace, workspace

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
WINDOW = Interval(datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 12, 31, tzinfo=UTC))


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    with workspace(tmp_path, rest=PROGRAMS, threaded=True) as space:
        yield space


def cache_file(ws: Workspace) -> Path:
    return ws.path.parent / "cadence.db.acme.tokens.json"


def run_once(ws: Workspace, minutes: int = 0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENCE_")}
    when = (NOW + timedelta(minutes=minutes)).isoformat()
    command = [sys.executable, "-m", "agent.app.cli", "run", "--once", "--config", str(ws.path)]
    return subprocess.run(
        [*command, "--now", when, "--log-level", "debug", "--log-format", "text"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def sync_all(ws: Workspace) -> None:
    """One connection, every person's calendar read, closed (as a process ends)."""
    calendar, mailer = ws.connect()
    try:
        for person in ws.people:
            calendar.changes(person, None, WINDOW)
    finally:
        calendar.close()
        mailer.close()


def test_a_second_run_once_asks_for_no_token(ws: Workspace) -> None:
    first = run_once(ws)
    assert first.returncode == 0, first.stderr
    asked = ws.server.state.counts["token"]
    assert asked == 2  # Ana and Ben, the people of the relationship, one token each
    path = cache_file(ws)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert not list(path.parent.glob(".*.tmp"))
    tokens = json.loads(path.read_text())["tokens"]
    assert len(tokens) == 2
    assert all(t["token"] in ws.server.state.tokens for t in tokens.values())

    second = run_once(ws, minutes=10)
    assert second.returncode == 0, second.stderr
    assert ws.server.state.counts["token"] == asked  # none more
    assert ws.server.state.counts["calendar.events.list"] >= 4
    for done in (first, second):  # a token is a secret: never in the logs
        assert "ya29." not in done.stdout + done.stderr
        assert all(t["token"] not in done.stderr for t in tokens.values())


def test_tokens_are_reused_within_a_process_and_by_the_next(ws: Workspace) -> None:
    calendar, mailer = ws.connect()
    try:
        for _ in range(3):
            for person in ws.people:
                calendar.changes(person, None, WINDOW)
    finally:
        calendar.close()
        mailer.close()
    assert ws.server.state.counts["token"] == 3  # one per person, not one per call
    sync_all(ws)
    assert ws.server.state.counts["token"] == 3


def test_an_expired_token_is_asked_for_again(ws: Workspace) -> None:
    sync_all(ws)
    path = cache_file(ws)
    data = json.loads(path.read_text())
    ana = next(k for k in data["tokens"] if " ana@acme.example " in k)
    # within google-auth's refresh margin: as good as expired
    soon = datetime.now(UTC) + timedelta(minutes=1)
    data["tokens"][ana]["expiry"] = soon.isoformat()
    path.write_text(json.dumps(data))
    sync_all(ws)
    assert ws.server.state.counts["token"] == 4  # Ana's again, nobody else's
    after = json.loads(path.read_text())["tokens"]
    assert after[ana]["token"] != data["tokens"][ana]["token"]
    assert datetime.fromisoformat(after[ana]["expiry"]) > soon + timedelta(minutes=30)


def test_a_token_revoked_before_its_expiry_is_replaced(ws: Workspace) -> None:
    sync_all(ws)
    ws.server.state.tokens.clear()  # the server no longer honours them
    sync_all(ws)
    assert ws.server.state.counts["token"] == 6
    kept = json.loads(cache_file(ws).read_text())["tokens"]
    assert all(t["token"] in ws.server.state.tokens for t in kept.values())


def test_a_cache_others_can_read_is_refused(ws: Workspace) -> None:
    sync_all(ws)
    path = cache_file(ws)
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        ws.connect()
    assert preflight(ws.context()) == [
        (
            "token_cache",
            f"token cache {path} is readable by other users; restrict it with: chmod 600 {path}",
        )
    ]
    checked = CliRunner().invoke(app, ["check", "--config", str(ws.path)])
    assert checked.exit_code == 2, checked.output
    assert f"accounts.acme.token_cache: token cache {path} is readable" in checked.output
    asked = ws.server.state.counts["token"]
    done = run_once(ws)  # the account is not opened, as with loose credentials
    assert done.returncode == 1
    assert "chmod 600" in done.stderr + done.stdout
    assert ws.server.state.counts["token"] == asked


def test_a_corrupted_cache_is_ignored_with_a_warning(
    ws: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    path = cache_file(ws)
    path.write_text('{"version": 1, "tokens": {"x": ')
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING):
        sync_all(ws)
    assert any("not a readable token cache" in r.getMessage() for r in caplog.records)
    assert ws.server.state.counts["token"] == 3
    assert len(json.loads(path.read_text())["tokens"]) == 3  # replaced by a good one
    assert os.stat(path).st_mode & 0o777 == 0o600


def test_the_location_is_a_config_key(tmp_path: Path) -> None:
    extra = "    token_cache: secrets/google-tokens.json\n"
    with workspace(tmp_path, account_extra=extra) as space:
        sync_all(space)
        path = tmp_path / "secrets" / "google-tokens.json"
        assert len(json.loads(path.read_text())["tokens"]) == 3
        assert os.stat(path.parent).st_mode & 0o777 == 0o700
        assert not cache_file(space).exists()


def test_concurrent_savers_keep_each_others_tokens(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    later = datetime.now(UTC) + timedelta(hours=1)
    one, two = TokenCache(path), TokenCache(path)
    one.put("ana", "token-a", later)
    two.put("ben", "token-b", later)
    two.put("ana", "token-a2", later + timedelta(minutes=5))
    one.save()
    two.save()
    merged = TokenCache(path)
    assert merged.get("ana") == ("token-a2", later + timedelta(minutes=5))
    assert merged.get("ben") == ("token-b", later)
    expired = TokenCache(path)
    expired.put("old", "token-o", datetime.now(UTC) - timedelta(seconds=1))
    expired.save()
    assert "old" not in json.loads(path.read_text())["tokens"]
