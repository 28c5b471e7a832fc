"""The real services the queue's tests use on 127.0.0.1: RabbitMQ, Redis, PostgreSQL.

A test that needs one that is not there is skipped with the reason. Each test gets a
queue name of its own: the broker's queue, the Redis keys and the advisory locks are
all named after it, so tests (and anyone else on the machine) do not see each other.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

BROKER = "amqp://guest:guest@127.0.0.1:5672//"
REDIS = "redis://127.0.0.1:6379/15"
POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"


def _reachable(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def require(*names: str) -> None:
    """Skip unless each named service (rabbitmq, redis, postgres) answers."""
    ports = {"rabbitmq": 5672, "redis": 6379, "postgres": 5432}
    missing = [n for n in names if not _reachable(ports[n])]
    if missing:
        pytest.skip(f"not reachable on 127.0.0.1: {', '.join(missing)}")


def queue_name() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def queue_section(name: str, **extra: Any) -> str:
    """A ``queue:`` section for a test's config; the broker URL (with its password)
    comes from the environment, as in production."""
    lines = [
        "queue:",
        "  broker: ${CADENCE_TEST_BROKER}",
        f"  lock: {POSTGRES}",
        f"  limits: {REDIS}",
        f"  name: {name}",
        "  metrics_port: 0",
    ]
    lines += [f"  {k}: {v}" for k, v in extra.items()]
    return "\n".join(lines) + "\n"


def environ(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENCE_")}
    env["CADENCE_TEST_BROKER"] = BROKER
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    env |= extra
    return env


def cadence(*args: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``cadence ARGS`` in the background, its output in ``log``."""
    with log.open("ab") as out:  # the child has its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "agent.app.cli", *args],
            env=env or environ(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def wait_for(what: Callable[[], object], timeout: float, why: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = what()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {why}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def purge(name: str) -> None:
    """Remove the test's queue from the broker and its keys from Redis."""
    import kombu
    import redis

    with kombu.Connection(BROKER) as conn, contextlib.suppress(Exception):
        conn.default_channel.queue_delete(name)
    client = redis.Redis.from_url(REDIS)
    keys = list(client.scan_iter(f"cadence:{name}:*"))
    if keys:
        client.delete(*keys)


@contextlib.contextmanager
def shared_pauses() -> Iterator[Any]:
    """Retry-After pauses shared through Redis, as the workers share them; none are
    installed on leaving, and the keys are gone."""
    from agent.core import pauses
    from agent.queue import limits

    require("redis")
    name = queue_name()
    try:
        yield limits.Pauses(limits.connect(REDIS), name)
    finally:
        pauses.install(None)
        purge(name)
