"""Cadence on the task queue: the organization benchmark's rounds with 1, 2 and 4 workers.

The organization of ``benchmarks.org`` (half on the local Google server, half on the
local Graph server, latency on every request) is ticked by ``cadence worker`` processes
on RabbitMQ, Redis and PostgreSQL at 127.0.0.1, one fresh organization and store per
worker count. For each count:

1. the first sync: one round (every unit's task and the chores), to the end;
2. a quiet round;
3. a sweep: 10 % of the relationships lapse, one round books them;
4. another 10 % lapse, and one worker is SIGKILLed in the middle of the round (with a
   single worker, a new one is started after the kill); then a quiet round reads back
   what was booked. Duplicates are events with the same booking key on one calendar,
   on the servers as the store read them back; "left undone" are lapsed relationships
   without a booking.

    python -m benchmarks.queue --relationships 1000 --workers 1,2,4 --weeks 2
    python -m benchmarks.queue --relationships 1000 --workers 1,4 --weeks 2 --store postgres

The store is an SQLite file (the default), or with ``--store postgres`` a fresh
PostgreSQL database at 127.0.0.1 per worker count, dropped afterwards.

Reported per phase: wall time, units a second, the workers' and the fake servers' CPU
seconds (on a machine with few cores the servers and the store share them with the
workers: that, not the queue, is then the limit).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks.org import NOW, RemoteOrg, Spec, build_org, write_workspace

BROKER = "amqp://guest:guest@127.0.0.1:5672//"
REDIS = "redis://127.0.0.1:6379/14"
POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
ROOT = Path(__file__).resolve().parents[1]


def cpu_seconds(pid: int) -> float:
    """User and system CPU of a process and its waited-for children, in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = sum(int(f) for f in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def fresh_database() -> Iterator[str]:
    """A new PostgreSQL database for one worker count; its name, dropped after."""
    import psycopg

    name = f"cadence_qbench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Bench:
    def __init__(
        self,
        work: Path,
        org: Any,
        fake: Any,
        workers: int,
        concurrency: int,
        database: str | None = None,
    ) -> None:
        self.work, self.org, self.fake, self.count = work, org, fake, workers
        #: the PostgreSQL database of the store, or None: an SQLite file
        self.database = database
        self.name = f"bench{uuid.uuid4().hex[:8]}"
        ends = fake.endpoints()
        os.environ["CADENCE_BENCH_BROKER"] = BROKER
        store = None
        if database is not None:
            store = f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}"
        self.path = write_workspace(work, org, ends, concurrency, store)
        self.path.write_text(
            self.path.read_text()
            + "queue:\n  broker: ${CADENCE_BENCH_BROKER}\n"
            + f"  lock: {POSTGRES}\n  limits: {REDIS}\n  name: {self.name}\n  metrics_port: 0\n"
        )
        from agent.queue.app import Cadence
        from agent.settings import config

        self.settings = config.load(self.path)
        self.app = Cadence(self.settings)
        self.units = len({p for _, p in org.pairs})
        self.workers: list[subprocess.Popen[bytes]] = []
        self.spent = 0.0  # CPU seconds of the workers that ended
        self.started = 0

    def start_worker(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CADENCE_KILL")}
        env["PYTHONPATH"] = str(ROOT)
        log = (self.work / f"worker{self.started}.log").open("ab")
        with log:
            self.workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", "agent.app.cli", "worker", "--config", str(self.path),
                     "--log-level", "warning"],
                    env=env, stdout=log, stderr=subprocess.STDOUT,
                )
            )  # fmt: skip
        self.started += 1

    def cpu(self) -> float:
        return self.spent + sum(cpu_seconds(w.pid) for w in self.workers if w.poll() is None)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of the store, SQLite or PostgreSQL (``?`` marks)."""
        if self.database is None:
            with contextlib.closing(sqlite3.connect(self.work / "cadence.db", timeout=30)) as db:
                return db.execute(sql, params).fetchall()
        import psycopg

        url = POSTGRES.rsplit("/", 1)[0] + f"/{self.database}"
        with psycopg.connect(url) as conn:
            return conn.execute(sql.replace("?", "%s"), params).fetchall()

    def finished_ticks(self) -> int:
        if self.database is None and not (self.work / "cadence.db").exists():
            return 0
        try:
            rows = self.query(
                "SELECT count(*) FROM ticks WHERE status NOT IN ('running', 'interrupted')"
            )
        except Exception:  # the first worker has not made the tables yet
            return 0
        return int(rows[0][0])

    def round(self, minutes: int, kill_after: float | None = None) -> dict[str, Any]:
        """Enqueue a round at NOW + minutes and wait for its ticks; with ``kill_after``
        (a share of the round), SIGKILL a worker once that share is done."""
        from agent.queue.scheduler import Scheduler

        for key in self.app.redis.scan_iter(f"cadence:{self.name}:queued:*"):
            self.app.redis.delete(key)
        target = self.finished_ticks() + self.units + 1
        before_fake = self.fake.counts()
        cpu0, t0 = self.cpu(), time.perf_counter()
        Scheduler(self.settings, self.app).round((NOW + timedelta(minutes=minutes)).isoformat())
        killed = False
        while self.finished_ticks() < target:
            if kill_after is not None and not killed:
                done = self.finished_ticks() - (target - self.units - 1)
                if done >= kill_after * self.units:
                    victim = self.workers.pop(0)
                    self.spent += cpu_seconds(victim.pid)
                    victim.send_signal(signal.SIGKILL)
                    victim.wait(10)
                    killed = True
                    if not self.workers:
                        self.start_worker()
            time.sleep(0.2)
        wall = time.perf_counter() - t0
        after_fake = self.fake.counts()
        fake_ms = sum(after_fake[s]["ms"] - before_fake[s]["ms"] for s in ("google", "graph"))
        return {
            "wall s": round(wall, 2),
            "units per s": round(self.units / wall, 2),
            "workers' CPU s": round(self.cpu() - cpu0, 1),
            "fake servers' CPU s": round(fake_ms / 1000, 1),
            "requests": sum(
                after_fake[s]["http"] - before_fake[s]["http"] for s in ("google", "graph")
            ),
        }

    def duplicates(self) -> int:
        rows = self.query(
            "SELECT count(*) FROM (SELECT owner, key FROM events WHERE key IS NOT NULL "
            "AND cancelled = 0 GROUP BY owner, key HAVING count(*) > 1) AS twice"
        )
        return int(rows[0][0])

    def booked(self, relationships: Sequence[int]) -> int:
        ids = {f"{self.org.pairs[n][0]}/{self.org.pairs[n][1]}" for n in relationships}
        rows = self.query(
            "SELECT DISTINCT relationship FROM bookings WHERE status = 'booked' "
            "AND created_at >= ?",
            [NOW.strftime("%Y-%m-%dT%H:%M:%SZ")],
        )
        return len(ids & {r[0] for r in rows})

    def close(self) -> None:
        for w in self.workers:
            w.terminate()
        for w in self.workers:
            try:
                w.wait(30)
            except subprocess.TimeoutExpired:
                w.kill()
        import kombu

        with kombu.Connection(BROKER) as conn:
            conn.default_channel.queue_delete(self.name)


def run(
    size: int, workers: int, latency: float, weeks: int, concurrency: int, store: str = "sqlite"
) -> dict[str, Any]:
    spec = Spec(size, weeks=weeks)
    org = build_org(spec)
    out: dict[str, Any] = {"relationships": size, "workers": workers, "store": store}
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="cadence-qbench-"))
        database = stack.enter_context(fresh_database()) if store == "postgres" else None
        work = Path(tmp)
        fake = RemoteOrg(spec, latency, work)
        bench = Bench(work, org, fake, workers, concurrency, database)
        try:
            for _ in range(workers):
                bench.start_worker()
            out["units"] = bench.units
            out["first sync"] = bench.round(0)
            out["quiet"] = bench.round(10)
            lapsing = org.lapsing
            fake.lapse(lapsing)
            out["sweep"] = bench.round(20)
            out["sweep"]["lapsed"] = len(lapsing)
            out["sweep"]["booked"] = bench.booked(lapsing)
            step = max(1, round(1 / spec.lapse))
            second = [n for n in range(len(org.pairs)) if (n // 2) % step == 1]
            fake.lapse(second)
            out["sweep, a worker killed"] = bench.round(30, kill_after=0.5)
            bench.round(40)  # reads back every calendar: duplicates would show
            kill = out["sweep, a worker killed"]
            kill["lapsed"] = len(second)
            kill["left undone"] = len(second) - bench.booked(second)
            kill["duplicates"] = bench.duplicates()
        finally:
            bench.close()
            fake.close()
    print(json.dumps(out), flush=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--relationships", type=int, default=1000)
    parser.add_argument("--workers", default="1,2,4", help="worker counts, comma-separated")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added per request")
    parser.add_argument("--weeks", type=int, default=2, help="weeks of history")
    parser.add_argument("--concurrency", type=int, default=8, help="sync.concurrency")
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    results = [
        run(args.relationships, int(n), args.latency, args.weeks, args.concurrency, args.store)
        for n in args.workers.split(",")
    ]
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
