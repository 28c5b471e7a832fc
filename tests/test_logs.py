"""Log lines for people (text) and machines (JSON), tagged with tick and relationship."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.core import logs
from agent.core.retry import RetryPolicy
from agent.settings import config
from agent.tick.engine import Engine
from tests.conftest import NOW


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def test_json_lines_carry_tick_and_relationship(
    workspace: Path, capsys: pytest.CaptureFixture[str], restore_logging: None
) -> None:
    logs.setup("info", "json")
    settings = config.load(workspace)
    with Engine(settings, retry=RetryPolicy.none()) as engine:
        report = engine.tick(NOW)
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    engine_lines = [r for r in lines if r["logger"] == "cadence.engine"]
    assert engine_lines and {r["tick"] for r in engine_lines} == {report.tick}
    about = [r for r in engine_lines if r["message"].startswith(("assess [", "book ["))]
    assert about and all(r["relationship"] in r["message"] for r in about)
    assert all(r["level"] == "info" and r["ts"].endswith("+00:00") for r in engine_lines)
    # outside a tick nothing is tagged
    logging.getLogger("cadence.test").warning("after")
    after = json.loads(capsys.readouterr().err)
    assert "tick" not in after and after["message"] == "after"


def test_text_format_and_levels(capsys: pytest.CaptureFixture[str], restore_logging: None) -> None:
    logs.setup("warning", "text")
    log = logging.getLogger("cadence.test")
    with logs.tick_context(7):
        log.info("hidden")
        log.warning("moved %s", "x", extra={"relationship": "a@x/b@x"})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    err = capsys.readouterr().err
    assert "hidden" not in err
    assert "WARNING cadence.test [tick=7 rel=a@x/b@x]: moved x" in err
    assert "ERROR   cadence.test [tick=7]: failed" in err and "ValueError: boom" in err
    logs.setup("debug", "json")
    with logs.tick_context(8):
        try:
            raise KeyError("k")
        except KeyError:
            logging.getLogger("cadence.test").exception("again")
    record = json.loads(capsys.readouterr().err)
    assert record["tick"] == 8 and "KeyError" in record["exception"]
    # a second setup replaces the handler instead of doubling every line
    assert sum(isinstance(h, logs._StderrHandler) for h in logging.getLogger().handlers) == 1


def test_unknown_level_or_format() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        logs.setup("loud", "text")
    with pytest.raises(ValueError, match="unknown log format"):
        logs.setup("info", "xml")  # type: ignore[arg-type]


@pytest.mark.slow
def test_auto_format_is_text_on_a_terminal_and_json_on_a_pipe(workspace: Path) -> None:
    import os
    import pty
    import subprocess
    import sys

    args = [sys.executable, "-m", "agent.app.cli", "run", "--once", "--config", str(workspace)]
    args += ["--now", "2026-11-23T14:00:00+00:00", "-v"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENCE_")}
    master, slave = pty.openpty()
    try:
        proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=slave, env=env, timeout=120)
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert proc.returncode == 0
    text = b"".join(chunks).decode()
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines and not any(line.lstrip().startswith("{") for line in lines)
    assert any(
        re.search(r" INFO +cadence\.engine \[tick=1 rel=\S+/\S+\]: book \[", line) for line in lines
    )
    # the same run on a pipe: JSON lines (a second tick: quiet, but it logs)
    piped = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
    assert piped.returncode == 0
    records = [json.loads(line) for line in piped.stderr.splitlines() if line.strip()]
    assert records and {r["tick"] for r in records if r["logger"] == "cadence.engine"} == {2}
