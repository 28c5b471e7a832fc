"""Real ``cadence worker`` processes on RabbitMQ, Redis and PostgreSQL, ticking the demo
workspace (the local provider: ICS calendars, an outbox of .eml files).

A worker SIGKILLed in the middle of a unit loses its task to another worker, which
finishes it without a second event or mail; two workers never plan one unit at once.
"""

from __future__ import annotations

import itertools
import signal
import socket
import sqlite3
import subprocess
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest

from agent.app.demo import create_workspace
from agent.queue.app import UNIT, Cadence
from agent.queue.scheduler import Scheduler
from agent.settings import config
from tests.conftest import NOW
from tests.queue import services
from tests.test_crash import ENV_KILL, outcome

#: the demo's units (three partners) and its chores: the tasks of one round
ROUND_TASKS = 4


def workspace(folder: Path, name: str) -> Path:
    path = create_workspace(folder, NOW)
    with path.open("a") as handle:
        handle.write(services.queue_section(name))
    return path


def finished(folder: Path) -> list[dict[str, object]]:
    if not (folder / "var" / "cadence.db").exists():
        return []  # no worker has opened the store yet
    db = sqlite3.connect(folder / "var" / "cadence.db")
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM ticks ORDER BY id")]
    except sqlite3.OperationalError:
        return []  # created, not yet migrated
    finally:
        db.close()


def done_ticks(folder: Path) -> int:
    return sum(1 for t in finished(folder) if t["status"] not in ("running", "interrupted"))


def enqueue_round(path: Path, now: datetime = NOW) -> Cadence:
    with services_env():
        settings = config.load(path)
    app = Cadence(settings)
    assert Scheduler(settings, app).round(now.isoformat()) == ROUND_TASKS
    return app


class services_env:
    """The broker URL in the environment while the test process reads the config."""

    def __enter__(self) -> None:
        import os

        self.before = os.environ.get("CADENCE_TEST_BROKER")
        os.environ["CADENCE_TEST_BROKER"] = services.BROKER

    def __exit__(self, *exc: object) -> None:
        import os

        if self.before is None:
            os.environ.pop("CADENCE_TEST_BROKER", None)
        else:
            os.environ["CADENCE_TEST_BROKER"] = self.before


def worker(path: Path, log: Path, *args: str, **env: str) -> subprocess.Popen[bytes]:
    return services.cadence(
        "worker", "--config", str(path), *args, log=log, env=services.environ(**env)
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_round(folder: Path, name: str, tmp: Path, **env: str) -> str:
    """One round of the demo on one worker, to the end; return the worker's /metrics."""
    path = folder / "cadence.yaml"
    app = enqueue_round(path)
    # on the broker, waiting for a worker (the broker counts a publish a moment after it:
    # asked at once on a loaded machine, it may tell fewer)
    services.wait_for(lambda: app.depth() == ROUND_TASKS, 10, f"{ROUND_TASKS} tasks queued")
    port = free_port()
    w = worker(path, tmp / f"{folder.name}.log", f"--metrics-port={port}", **env)
    try:
        services.wait_for(lambda: done_ticks(folder) >= ROUND_TASKS, 90, "the round's ticks")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            return str(answer.read().decode())
    finally:
        services.stop(w)


@pytest.mark.slow
def test_a_round_on_a_worker_books_and_mails_like_one_process(name: str, tmp_path: Path) -> None:
    queued = tmp_path / "queued"
    workspace(queued, name)
    metrics = run_round(queued, name, tmp_path)
    assert 'cadence_queue_tasks_total{outcome="ok",task="cadence.unit"} 3.0' in metrics
    assert 'cadence_queue_task_latency_seconds_count{task="cadence.chores"} 1.0' in metrics
    assert "cadence_queue_retries_total" in metrics
    keys, mails, states = outcome(queued)
    assert len(keys) >= 4 and all(n == 1 for n in keys.values())
    # the same workspace ticked by one process books the same meetings and mails the same
    reference = tmp_path / "reference"
    create_workspace(reference, NOW)
    from tests.test_crash import run_once

    assert run_once(reference / "cadence.yaml").returncode == 0
    ref_keys, ref_mails, _ = outcome(reference)
    assert sorted(k.split(":", 1)[1] for k in keys) == sorted(k.split(":", 1)[1] for k in ref_keys)
    assert len(mails) == len(ref_mails)
    assert all(s in ("booked", "sent") for s in states.values()), states


def _trace(folder: Path, name: str, tmp: Path) -> list[str]:
    """The crash points a round passes on one worker, in order."""
    trace = tmp / "trace.txt"
    run_round(folder, name, tmp, **{ENV_KILL: str(10**9), "CADENCE_KILL_TRACE": str(trace)})
    return trace.read_text().splitlines()


@pytest.mark.slow
def test_a_worker_killed_mid_unit_loses_nothing_and_repeats_nothing(
    name: str, tmp_path: Path
) -> None:
    reference = tmp_path / "reference"
    workspace(reference, name)
    points = _trace(reference, name, tmp_path)
    expected = outcome(reference)
    # one kill while booking, one after a booking was made, one while sending mail
    chosen = [
        next(i for i, p in enumerate(points, 1) if p.startswith("book:")),
        max(i for i, p in enumerate(points, 1) if p.startswith("book:")),
        next(i for i, p in enumerate(points, 1) if p.startswith("mail:")),
    ]
    for n in chosen:
        folder = tmp_path / f"kill{n}"
        path = workspace(folder, name)
        enqueue_round(path)
        first = worker(path, tmp_path / f"kill{n}.log", **{ENV_KILL: str(n)})
        assert first.wait(90) == -signal.SIGKILL, f"point {n} ({points[n - 1]}) not reached"
        # the killed worker's task is still on the broker: a new worker runs it again
        second = worker(path, tmp_path / f"again{n}.log")
        try:
            services.wait_for(
                lambda f=folder: done_ticks(f) >= ROUND_TASKS, 90, "the round after the kill"
            )
        finally:
            services.stop(second)
        got = outcome(folder)
        where = f"killed at point {n} ({points[n - 1]})"
        assert got[0] == expected[0], f"{where}: events differ"
        assert got[1] == expected[1], f"{where}: mails differ"
        assert got[2] == expected[2], f"{where}: store differs"
        assert [t["status"] for t in finished(folder)].count("running") == 1, where


@pytest.mark.slow
def test_two_workers_never_run_one_unit_at_once(name: str, tmp_path: Path) -> None:
    """The same unit sent three times at once to two workers: its ticks never overlap
    (the second waits for the lease), and it is booked once."""
    folder = tmp_path / "demo"
    path = workspace(folder, name)
    with services_env():
        settings = config.load(path)
    app = Cadence(settings)
    partner = settings.relationships[0].partner.email
    for _ in range(3):
        app.send(UNIT, partner, NOW.isoformat(), [])
    pause = tmp_path / "paused"
    # each worker sleeps 3 s at its first crash point, inside the unit's tick
    slow = {"CADENCE_PAUSE_AT": "1", "CADENCE_PAUSE_FILE": str(pause)}
    workers = [worker(path, tmp_path / f"w{i}.log", **slow) for i in range(2)]
    try:
        services.wait_for(lambda: done_ticks(folder) >= 3, 120, "three runs of the unit")
    finally:
        for w in workers:
            services.stop(w)
    ticks = [t for t in finished(folder) if t["status"] != "running"]
    spans = sorted((str(t["started_at"]), str(t["finished_at"])) for t in ticks)
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start >= end, f"two runs of one unit overlapped: {spans}"
    keys, _, _ = outcome(folder)
    assert keys and all(n == 1 for n in keys.values())
    logs = (tmp_path / "w0.log").read_text() + (tmp_path / "w1.log").read_text()
    assert "is leased" in logs  # the workers did meet at the lease


@pytest.mark.slow
def test_two_workers_on_a_postgresql_store(name: str, tmp_path: Path) -> None:
    """The same round with the store in PostgreSQL (the workers share no file): every
    meeting booked once, every mail sent once, as on SQLite."""
    import psycopg

    from tests.stores import fresh_database

    with fresh_database() as url:
        folder = tmp_path / "demo"
        path = workspace(folder, name)
        path.write_text(path.read_text().replace("store: var/cadence.db", f"store: {url}"))
        assert url in path.read_text()
        enqueue_round(path)
        workers = [worker(path, tmp_path / f"pg{i}.log") for i in range(2)]

        def done() -> int:
            plain = url.replace("postgresql+psycopg://", "postgresql://")
            try:
                with psycopg.connect(plain) as conn:
                    row = conn.execute(
                        "SELECT count(*) FROM ticks WHERE status NOT IN ('running', 'interrupted')"
                    ).fetchone()
            except psycopg.Error:
                return 0  # not migrated yet
            return int(row[0]) if row else 0

        try:
            services.wait_for(lambda: done() >= ROUND_TASKS, 120, "the round on PostgreSQL")
        finally:
            for w in workers:
                services.stop(w)
        keys, mails, states = outcome(folder)
        assert len(keys) >= 4 and all(n == 1 for n in keys.values())
        assert len(mails) == 6
        assert all(s in ("booked", "sent") for s in states.values()), states
