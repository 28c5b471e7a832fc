"""No secret a run is given appears in anything the run writes: logs, the store, mail,
error messages. Secret files readable by others are refused."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from agent.core.retry import RetryPolicy
from agent.settings import config
from agent.tick.engine import Engine, TickReport
from tests.google.harness import PROGRAMS
from tests.google.harness import workspace as google_workspace
from tests.microsoft.server import GraphServer
from tests.microsoft.test_tick import NOW
from tests.microsoft.test_tick import setup as graph_setup  # noqa: F401 - a fixture


def written(folder: Path) -> bytes:
    """Every byte under ``folder`` that Cadence may have written (store, WAL, mail, logs)."""
    out = b""
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.suffix not in (".json", ".pem"):  # the secrets themselves
            out += path.read_bytes()
    return out


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    yield caplog


def _texts(report: TickReport, logs: pytest.LogCaptureFixture) -> str:
    parts = [r.getMessage() for r in logs.records]
    parts += report.errors + [a.detail + json.dumps(a.data) for a in report.actions]
    return "\n".join(parts)


def test_graph_client_secret_and_tokens_never_written(
    graph_setup: tuple[GraphServer, Path],  # noqa: F811
    logs: pytest.LogCaptureFixture,
) -> None:
    server, path = graph_setup
    with Engine(config.load(path), retry=RetryPolicy.none()) as engine:
        report = engine.tick(NOW)
        issued = list(server.tokens)
        server.client_secret = "another-secret-the-server-now-wants"  # the next token fails
        server.tokens.clear()
        failing = engine.tick(NOW + timedelta(minutes=10))
    assert report.ok and issued and not failing.ok
    secrets = ["s3cret-value", *issued]
    everything = written(path.parent) + (_texts(report, logs) + _texts(failing, logs)).encode()
    for secret in secrets:
        assert secret.encode() not in everything


def test_google_private_key_and_tokens_never_written(
    tmp_path: Path, logs: pytest.LogCaptureFixture
) -> None:
    with google_workspace(tmp_path, rest=PROGRAMS) as ws:
        key = json.loads((tmp_path / "key.json").read_text())
        with Engine(ws.settings, retry=RetryPolicy.none()) as engine:
            report = engine.tick(NOW)
        tokens = list(ws.server.state.tokens)
        assert tokens and report.ok, report.errors
        everything = written(tmp_path) + _texts(report, logs).encode()
        private = key["private_key"].splitlines()[3]  # a line of the PEM body
        for secret in [private, key["private_key_id"], *tokens]:
            assert secret.encode() not in everything


def test_world_readable_secret_files_are_refused(tmp_path: Path) -> None:
    with google_workspace(tmp_path, rest=PROGRAMS) as ws:
        (tmp_path / "key.json").chmod(0o644)
        with Engine(config.load(ws.path), retry=RetryPolicy.none()) as engine:
            report = engine.tick(NOW)
        assert any("chmod 600" in e for e in report.errors), report.errors
