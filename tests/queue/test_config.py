"""The ``queue:`` section: URLs checked like every other key, passwords only from the
environment, and the queue's commands refuse a config without one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.core.errors import ConfigError
from agent.settings import config
from tests.queue import services

BASE = """\
accounts:
  files: {provider: local}
"""


def write(tmp_path: Path, queue: str) -> Path:
    path = tmp_path / "cadence.yaml"
    path.write_text(BASE + queue)
    return path


def errors(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        config.load(path)
    return caught.value.errors


def test_a_password_in_the_file_is_refused_with_file_line_and_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "queue:\n"
        "  broker: amqp://guest@127.0.0.1//\n"
        "  lock: postgresql://cadence:secret@db/cadence\n"
        "  limits: redis://127.0.0.1:6379/0\n",
    )
    (problem,) = errors(path)
    assert problem.startswith(f"{path}:5: queue.lock: ")
    assert "environment variable" in problem
    assert "secret" not in problem


def test_a_wrong_scheme_and_a_missing_key_are_named(tmp_path: Path) -> None:
    path = write(tmp_path, "queue:\n  broker: http://127.0.0.1/\n  limits: redis://r/0\n")
    found = errors(path)
    assert any(e.startswith(f"{path}:4: queue.broker: ") and "amqp://" in e for e in found)
    assert any("queue.lock" in e and "required" in e.lower() for e in found)


def test_urls_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(
        tmp_path,
        "queue:\n"
        "  broker: ${CADENCE_BROKER}\n"
        "  lock: ${CADENCE_LOCK}\n"
        "  limits: redis://127.0.0.1:6379/0\n",
    )
    monkeypatch.setenv("CADENCE_BROKER", "amqp://cadence:s3cret@rabbit:5672//")
    (problem,) = errors(path)
    assert problem.startswith(f"{path}:5: queue.lock: environment variable CADENCE_LOCK")
    monkeypatch.setenv("CADENCE_LOCK", "postgresql://cadence:s3cret@db/cadence")
    queue = config.load(path).queue
    assert queue is not None
    assert queue.broker == "amqp://cadence:s3cret@rabbit:5672//"
    assert "s3cret" not in repr(queue)


def test_without_a_queue_section_nothing_changes(tmp_path: Path) -> None:
    assert config.load(write(tmp_path, "")).queue is None


@pytest.mark.parametrize("command", ["worker", "scheduler"])
def test_the_queue_commands_need_a_queue_section(tmp_path: Path, command: str) -> None:
    path = write(tmp_path, "")
    done = subprocess.run(
        [sys.executable, "-m", "agent.app.cli", command, "--config", str(path)],
        env=services.environ(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "no queue: section" in done.stderr
