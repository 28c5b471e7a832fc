"""``cadence serve`` as administrators run it: /healthz, /metrics and JSON logs, over real
HTTP against a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from agent.app.health import Health


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def configure(workspace: Path, **replace: str) -> tuple[Path, int]:
    port = free_port()
    text = workspace.read_text()
    for key, value in replace.items():
        text = text.replace(f"\n{key}: ", f"\n{key}: {value}\n_old_{key}: ", 1)
        text = text.replace(f"\n_old_{key}: ", "\n# was: ", 1)
    text += f"\nservice:\n  port: {port}\n  unhealthy_after: 2\n"
    workspace.write_text(text)
    return workspace, port


def get(port: int, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers["Content-Type"], exc.read().decode()


#: ``cadence`` with ticks allowed down to a second (the config refuses ticks under a
#: minute): for tests that need several ticks quickly
FAST_TICKS = (
    "import sys, datetime, agent.settings.schema_types as schema; "
    "schema.MIN_TICK = datetime.timedelta(seconds=1); "
    "from agent.app.cli import main; sys.argv[0] = 'cadence'; main()"
)


@contextmanager
def serving(config: Path, *extra: str, fast: bool = False) -> Iterator[subprocess.Popen[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CADENCE_")}
    env.pop("http_proxy", None)
    command = ["-c", FAST_TICKS] if fast else ["-m", "agent.app.cli"]
    proc = subprocess.Popen(
        [sys.executable, *command, "serve", "--config", str(config), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()


def wait_for(
    port: int, done: Any, proc: subprocess.Popen[str], limit: float = 120
) -> dict[str, Any]:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            _, _, body = get(port, "/healthz")
        except (ConnectionError, urllib.error.URLError):
            time.sleep(0.1)
            continue
        health = json.loads(body)
        if done(health):
            return health
        time.sleep(0.2)
    raise AssertionError("serve never reached the expected state")


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        sample, _, rest = head.partition("{")
        got = ",".join(sorted(rest.rstrip("}").split(","))) if rest else ""
        if sample == name and got == want:
            return float(value)
    return 0.0


def test_healthz_metrics_and_json_logs_of_a_good_tick(workspace: Path) -> None:
    config, port = configure(workspace)
    with serving(config) as proc:
        health = wait_for(port, lambda h: h["last_tick"] is not None, proc)
        status, kind, body = get(port, "/healthz")
        assert status == 200 and kind == "application/json", body
        assert health["status"] == "ok" and health["last_tick"]["ok"] is True
        status, kind, text = get(port, "/metrics")
        assert status == 200 and kind.startswith("text/plain"), kind
        assert get(port, "/nothing")[0] == 404
        probe = cadence_health(config)
        assert probe.returncode == 0 and json.loads(probe.stdout)["status"] == "ok", probe
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert metric(text, "cadence_ticks_total", status="ok") == 1
    assert metric(text, "cadence_tick_duration_seconds_count") == 1
    booked = metric(text, "cadence_meetings_booked_total")
    assert booked >= 1
    assert metric(text, "cadence_actions_total", kind="book", outcome="done") == booked
    assert metric(text, "cadence_mails_sent_total", kind="invite") >= 1
    assert metric(text, "cadence_lapsed_relationships") >= 1
    # the six of the YAML, and the two lines the demo's directory adds (Gia and Hugo)
    assert metric(text, "cadence_relationships") == 8
    # eight calendars (six people of the YAML, two of the directory) read once each
    assert (
        metric(
            text, "cadence_provider_requests_total", provider="local", method="changes", status="ok"
        )
        == 8
    )
    assert (
        metric(
            text, "cadence_provider_requests_total", provider="local", method="create", status="ok"
        )
        == booked
    )
    assert "cadence_throttle_waits_total 0.0" in text
    # stderr is a pipe: JSON lines; every line logged in the tick carries its id
    records = [json.loads(line) for line in err.splitlines() if line.strip()]
    assert records and all({"ts", "level", "logger", "message"} <= set(r) for r in records)
    engine = [r for r in records if r["logger"] == "cadence.engine"]
    assert engine and all(r["tick"] == 1 for r in engine)
    booked_lines = [r for r in engine if r["message"].startswith("book [")]
    assert booked_lines and all("/" in r["relationship"] for r in booked_lines)
    assert any(r["message"].startswith("tick 1:") and r["tick"] == 1 for r in records)
    assert any(r["message"] == "stopped" for r in records)


def test_healthz_turns_503_after_failed_ticks(workspace: Path) -> None:
    config, port = configure(workspace, tick="1s")
    store = workspace.parent / "var" / "cadence.db"
    with serving(config, "--log-format", "text", "--log-level", "warning", fast=True) as proc:
        # serve refuses a broken store at the start (tests/test_store_broken.py): this
        # one breaks while it serves, and every tick from then on fails
        wait_for(port, lambda h: h["last_ok_tick"] is not None, proc, limit=60)
        for path in store.parent.glob("cadence.db*"):
            path.unlink()
        store.mkdir()
        health = wait_for(port, lambda h: h["consecutive_failures"] >= 2, proc, limit=30)
        status, _, body = get(port, "/healthz")
        assert status == 503, body
        assert "ticks failed" in health["reasons"][0]
        assert health["last_tick"]["error"]
        text = get(port, "/metrics")[2]
        assert metric(text, "cadence_ticks_total", status="failed") >= 2
        assert metric(text, "cadence_consecutive_failed_ticks") >= 2
        probe = cadence_health(config, fast=True)
        assert probe.returncode == 1 and "unhealthy: http://127.0.0.1" in probe.stderr, probe
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    # text format at warning level: the failures, no info lines
    assert "ERROR" in err and "tick failed" in err and "INFO" not in err
    assert not err.lstrip().startswith("{")


def cadence_health(config: Path, fast: bool = False) -> subprocess.CompletedProcess[str]:
    """The container's HEALTHCHECK command."""
    command = ["-c", FAST_TICKS] if fast else ["-m", "agent.app.cli"]
    return subprocess.run(
        [sys.executable, *command, "health", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_health_probe_without_a_server(workspace: Path) -> None:
    config, port = configure(workspace)
    probe = cadence_health(config)
    assert (
        probe.returncode == 1 and f"no answer from http://127.0.0.1:{port}/healthz" in probe.stderr
    )


def test_health_is_stale_after_three_intervals() -> None:
    clock = [1000.0]
    health = Health(interval=60, unhealthy_after=3, clock=lambda: clock[0])
    assert health.check()[0]
    clock[0] += 181
    ok, body = health.check()
    assert not ok and "no tick has finished since the start" in body["reasons"][0]
    health.record(1, True)
    assert health.check()[0]
    health.record(2, False, "boom")
    health.record(3, False, "boom")
    assert health.check()[0]
    health.record(4, False, "boom")
    ok, body = health.check()
    assert not ok and body["consecutive_failures"] == 3
    health.record(5, True)
    clock[0] += 179
    assert health.check()[0]
    clock[0] += 2
    assert not health.check()[0]


def test_serve_check_validates_and_exits(workspace: Path) -> None:
    config, port = configure(workspace)
    done = subprocess.run(
        [sys.executable, "-m", "agent.app.cli", "serve", "--check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert f"http://127.0.0.1:{port}/healthz" in done.stdout
    bad = workspace.with_name("bad.yaml")
    bad.write_text(workspace.read_text().replace(f"port: {port}", "port: 70000"))
    done = subprocess.run(
        [sys.executable, "-m", "agent.app.cli", "serve", "--check", "--config", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "service.port" in done.stderr


def test_port_taken_is_a_clear_error(workspace: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        text = workspace.read_text() + f"\nservice:\n  port: {port}\n"
        workspace.write_text(text)
        done = subprocess.run(
            [sys.executable, "-m", "agent.app.cli", "serve", "--config", str(workspace)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr


def test_throttle_waits_and_provider_calls_are_counted() -> None:
    from agent.connectors.base import ConcurrentWrites, ConfirmsSend
    from agent.core.errors import PermanentError, TransientError
    from agent.core.retry import RetryPolicy
    from agent.tick import metrics

    class Calendar:
        concurrent_writes = True

        def __init__(self) -> None:
            self.calls = 0

        def busy(self, people: list[str]) -> dict[str, list[str]]:
            self.calls += 1
            if self.calls < 3:
                raise TransientError("429", retry_after=1.5)
            return {p: [] for p in people}

        def find(self, person: str, key: str) -> None:
            raise PermanentError("403")

    assert metrics.instrument(("cal", "mail"), "x") == ("cal", "mail")  # inactive: untouched
    m = metrics.activate()
    try:
        inner = Calendar()
        calendar, _ = metrics.instrument((inner, object()), "google")
        policy = RetryPolicy(sleep=lambda _s: None, rand=lambda: 0.0)
        assert policy.call(lambda: calendar.busy(["a"])) == {"a": []}
        with pytest.raises(PermanentError):
            calendar.find("a", "k")
        assert calendar.concurrent_writes is True  # attributes pass through
        # and the capabilities stay declared, for protocol checks that skip __getattr__
        assert isinstance(calendar, ConcurrentWrites) and not isinstance(calendar, ConfirmsSend)
        text = m.exposition().decode()
    finally:
        metrics.deactivate()
    assert metric(text, "cadence_throttle_waits_total") == 2
    assert metric(text, "cadence_throttle_wait_seconds_total") == 3.0  # retry_after wins
    assert (
        metric(
            text,
            "cadence_provider_requests_total",
            provider="google",
            method="busy",
            status="transient",
        )
        == 2
    )
    assert (
        metric(
            text, "cadence_provider_requests_total", provider="google", method="busy", status="ok"
        )
        == 1
    )
    assert (
        metric(
            text,
            "cadence_provider_requests_total",
            provider="google",
            method="find",
            status="permanent",
        )
        == 1
    )
    # after deactivate, nothing listens to waits any more
    assert RetryPolicy(attempts=2, sleep=lambda _s: None).call(_once_transient()) == 1
    assert metric(m.exposition().decode(), "cadence_throttle_waits_total") == 2


def _once_transient() -> Callable[[], int]:
    from agent.core.errors import TransientError

    state = {"n": 0}

    def fn() -> int:
        state["n"] += 1
        if state["n"] == 1:
            raise TransientError("503")
        return 1

    return fn


def test_a_tick_held_by_the_guard_leaves_the_service_degraded_not_unhealthy() -> None:
    from agent.app.health import Health

    clock = [1000.0]
    health = Health(600, clock=lambda: clock[0])
    health.record(1, True, None, ("held back by the guard: 40 booking(s) ...",))
    healthy, body = health.check()
    assert healthy and body["status"] == "degraded"
    assert body["reasons"] == ["held back by the guard: 40 booking(s) ..."]
    health.record(2, True)
    healthy, body = health.check()
    assert healthy and body["status"] == "ok" and body["reasons"] == []
