"""A quiet tick run as ``cadence run --once`` (cron, a systemd timer): one process a tick.

The organization of :mod:`benchmarks.org` on one Google account (domain-wide delegation),
with latency added to every request. A first ``run --once`` does the full sync; then each
quiet ``run --once`` is a new process that loads the configuration, signs in, reads every
calendar's changes and plans, with nothing to do. Measured per quiet run: wall time, the
process's CPU time (user + system, from the operating system), calendar requests and
token requests. The latency bound is what the calendar requests alone cost:
``ceil(calendars / sync.concurrency) x latency``.

    python -m benchmarks.once --relationships 1000 --latency 0.05 --runs 5

The servers run in a child process; their CPU time is not the agent's.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks.org import GOOGLE, NOW, RemoteOrg, Spec, build_org, delta, write_workspace

ROOT = Path(__file__).resolve().parent.parent


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(config: Path, when: str, profile: Path | None = None) -> tuple[float, float]:
    """One ``cadence run --once`` in a new process; return its wall and CPU seconds."""
    command = [sys.executable]
    if profile is not None:
        command += ["-m", "cProfile", "-o", str(profile)]
    command += [
        "-m",
        "agent.app.cli",
        "run",
        "--once",
        "--config",
        str(config),
        "--now",
        when,
        "--log-level",
        "error",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cpu = children_cpu()
    t = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=config.parent)
    wall = time.perf_counter() - t
    if done.returncode != 0:
        raise RuntimeError(f"run --once failed ({done.returncode}): {done.stderr[-2000:]}")
    return wall, children_cpu() - cpu


def measure(args: argparse.Namespace) -> dict[str, Any]:
    spec = Spec(args.relationships, weeks=args.weeks, accounts=(GOOGLE,))
    org = build_org(spec)
    calendars = len(org.people)
    bound = math.ceil(calendars / args.concurrency) * args.latency
    figures: dict[str, Any] = {"relationships": args.relationships, "calendars": calendars}

    def put(name: str, value: Any) -> None:
        figures[name] = value
        shown = round(value, 3) if isinstance(value, float) else value
        print(f"  {name:<44} {shown}", flush=True)

    print(
        f"\n== run --once: {args.relationships} relationships, {calendars} calendars on one "
        f"Google account, latency {args.latency * 1000:.0f} ms",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="cadence-once-") as tmp:
        work = Path(tmp)
        fake = RemoteOrg(spec, args.latency, work)
        try:
            ends = fake.endpoints()
            config = write_workspace(work, org, ends, args.concurrency)
            before = fake.counts()
            wall, cpu = run_once(config, NOW.isoformat())
            d = delta(before, fake.counts())["google"]
            put("first run: wall s", wall)
            put("first run: CPU s", cpu)
            put("first run: token requests", d["token"])
            walls, cpus, tokens, api = [], [], [], []
            for n in range(args.runs):
                when = (NOW + timedelta(minutes=10 * (n + 1))).isoformat()
                before = fake.counts()
                profile = args.profile if args.profile and n == args.runs - 1 else None
                wall, cpu = run_once(config, when, profile)
                d = delta(before, fake.counts())["google"]
                walls.append(wall)
                cpus.append(cpu)
                tokens.append(d["token"])
                api.append(d["http"] - d["token"])
            put("quiet run: wall s (median)", statistics.median(walls))
            put("quiet run: wall s (each)", [round(w, 2) for w in walls])
            put("quiet run: CPU s (median)", statistics.median(cpus))
            put("quiet run: CPU s (each)", [round(c, 2) for c in cpus])
            put("quiet run: token requests (each)", tokens)
            put("quiet run: calendar requests (each)", api)
            put("latency bound s", bound)
            if bound:
                put("quiet run: wall / latency bound", statistics.median(walls) / bound)
        finally:
            fake.close()
    return figures


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--relationships", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added per request")
    parser.add_argument("--runs", type=int, default=5, help="quiet run --once processes")
    parser.add_argument("--concurrency", type=int, default=8, help="sync.concurrency")
    parser.add_argument("--weeks", type=int, default=52, help="weeks of history")
    parser.add_argument("--profile", type=Path, help="cProfile the last quiet run into this file")
    parser.add_argument("--json", type=Path, help="write the figures here")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    figures = measure(args)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
