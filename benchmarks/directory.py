"""A company directory of 50,000 people in Entra ID, read through the local Graph server.

Builds a reporting tree (a fan-out of eight) in the fake Graph's directory, with a
program group of nested team groups holding a tenth of the people, and runs
``cadence directory sync`` as the service does (read, compare, guard, store):

1. the first sync: a full read (the managers expanded, 100 users a page, Graph's limit)
   and the program's members (999 a page);
2. a quiet sync: the delta link replayed, nothing changed;
3. a sync after a day's changes: managers changed, joiners, leavers.

    python -m benchmarks.directory --users 50000 --latency 0.0

Request counts are exact (the sign-in, two requests, is counted apart); times depend on
the machine and include the fake server, which runs in this process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SECRET_ENV = "CADENCE_BENCH_GRAPH_SECRET"
DOMAIN = "contoso.example"
FANOUT = 8
TEAM = 100  # people per team group in the program
CONFIG = """\
timezone: Europe/Berlin
store: cadence.db
accounts:
  m365:
    provider: microsoft
    tenant: {tenant}
    client_id: {client_id}
    client_secret_env: {secret_env}
    authority: {url}
    graph: {url}
    ca_bundle: graph-ca.pem
directory:
  source: {{kind: entra, account: m365, group: program}}
  program: development
programs:
  development:
    series:
      deep_dive:
        every: 90d
        duration: 60m
        title: "Development {{{{ stage | title }}}}"
        stages: [align, advance, amplify, advocate]
"""


@dataclass
class Step:
    name: str
    requests: int
    http: int
    seconds: float
    server_seconds: float
    changes: int
    people: int

    def row(self) -> str:
        return (
            f"| {self.name} | {self.requests} | {self.http} | {self.seconds:.2f} | "
            f"{self.server_seconds:.2f} | {self.changes} | {self.people} |"
        )


def build(server: Any, users: int) -> list[str]:
    """The reporting tree and the program group; return the mails in tree order."""
    d = server.directory
    mails = [f"p{n:06d}@{DOMAIN}" for n in range(users)]
    for n, m in enumerate(mails):
        boss = mails[(n - 1) // FANOUT] if n else None
        d.add_user(m, f"Person {n}", boss, usageLocation=("DE", "US", "GB", "JP")[n % 4])
    program = mails[users // 2 : users // 2 + users // 10]
    teams = []
    for t in range(0, len(program), TEAM):
        name = f"team-{t // TEAM}"
        d.add_group(name, program[t : t + TEAM])
        teams.append(name)
    d.add_group("program", teams)
    return mails


def step(name: str, server: Any, settings: Any, store: Any, when: datetime) -> Step:
    from agent.connectors.directory import DirectoryContext
    from agent.core.retry import RetryPolicy
    from agent.tick import directory

    ctx = DirectoryContext(
        base=settings.path.parent, accounts=settings.accounts, retry=RetryPolicy.none()
    )
    http, busy = server.http_requests, server.busy_seconds
    began = time.perf_counter()
    out = directory.sync(settings, store, when, confirm=True, ctx=ctx)
    seconds = time.perf_counter() - began
    assert out.applied, out.held
    return Step(
        name,
        out.requests,
        server.http_requests - http,
        seconds,
        server.busy_seconds - busy,
        out.diff.size,
        out.diff.after,
    )


def run(users: int, latency: float) -> list[Step]:
    from agent.settings import config
    from agent.store.sqlite import Store
    from tests.microsoft.server import GraphServer

    with tempfile.TemporaryDirectory() as work, GraphServer([], latency=latency) as server:
        folder = Path(work)
        os.environ[SECRET_ENV] = server.client_secret or ""
        server.write_ca(folder / "graph-ca.pem")
        (folder / "cadence.yaml").write_text(
            CONFIG.format(
                tenant=server.tenant,
                client_id=server.client_id,
                secret_env=SECRET_ENV,
                url=server.url,
            )
        )
        mails = build(server, users)
        settings = config.load(folder / "cadence.yaml")
        store = Store(folder / "cadence.db")
        try:
            steps = [step("first sync (full read)", server, settings, store, NOW)]
            steps.append(step("quiet sync (delta)", server, settings, store, NOW))
            d = server.directory
            first = users // 2  # the program's people
            for n in range(50):  # a busy day: 50 new managers, 25 joiners, 25 leavers
                d.set_manager(mails[first + n * 3], mails[n + 1])
            for n in range(25):
                d.add_user(f"new{n}@{DOMAIN}", f"New {n}", mails[n])
                d.delete(mails[-100 - n])
            later = NOW + timedelta(days=1)
            steps.append(step("a day's changes (delta)", server, settings, store, later))
            return steps
        finally:
            store.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per request")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    steps = run(args.users, args.latency)
    if args.json:
        print(json.dumps([s.__dict__ for s in steps], indent=2))
        return
    print(f"{args.users} users, {args.latency:g}s latency per request")
    print(
        "| step | Graph requests | HTTP requests | seconds | fake server seconds | changes "
        "| people |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for s in steps:
        print(s.row())


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
