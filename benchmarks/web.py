"""The web app's pages under load: the team view and the organization report.

Builds an organization of N relationships (a leader per eight employees, each pair
with a year of monthly check-ins and quarterly deep dives in both calendars) straight
into a store, then asks the app, through its ASGI interface in this process, for a
leader's team page and for the administrators' report page, and prints the median and
p95 of each after the first (the sign-in is done once; every request reads the store
afresh, but the report is drawn once per tick: the first request after a tick pays for
it, and is printed apart).

    python -m benchmarks.web --relationships 10000 --requests 50

Times depend on the machine; the figures are in docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)
DOMAIN = "bench.example"
TEAM = 8
CONFIG = """\
timezone: Europe/Berlin
store: cadence.db
accounts:
  local: {{provider: local, calendars: calendars, outbox: outbox}}
defaults:
  account: local
  working_hours: {{mon-fri: "09:00-17:00"}}
web:
  admins: [hr@{d}]
  secure_cookies: false
programs:
  cycle:
    series:
      deep_dive: {{every: 90d, duration: 60m, title: "Deep dive", match: "(?i)deep dive"}}
      check_in: {{every: 30d, duration: 15m, skip_near: deep_dive, title: "Check-in", match: "(?i)check-in"}}
"""


def build(folder: Path, relationships: int) -> Path:
    """Write the config and fill the store; return the config's path."""
    from agent.core.model import Attendee, Event, PartStat
    from agent.store.sqlite import Store

    (folder / "calendars").mkdir(parents=True)
    lines = [CONFIG.format(d=DOMAIN), "people:\n"]
    pairs = [(f"e{i}@{DOMAIN}", f"l{i // TEAM}@{DOMAIN}") for i in range(relationships)]
    people = sorted({p for pair in pairs for p in pair})
    lines += [f"  - {{email: {p}, timezone: Europe/Berlin}}\n" for p in people]
    lines.append("relationships:\n")
    for employee, leader in pairs:
        lines.append(
            f"  - {{employee: {employee}, partner: {leader}, role: leader, program: cycle}}\n"
        )
    path = folder / "cadence.yaml"
    path.write_text("".join(lines), encoding="utf-8")
    store = Store(folder / "cadence.db")
    with store.atomic():
        for n, (employee, leader) in enumerate(pairs):
            for week in range(0, 52, 4):
                start = NOW - timedelta(weeks=week, hours=n % 5)
                title = "Deep dive" if week % 12 == 0 else "Check-in"
                length = timedelta(minutes=60 if title == "Deep dive" else 15)
                people = (
                    Attendee(employee, PartStat.ACCEPTED),
                    Attendee(leader, PartStat.ACCEPTED),
                )
                for owner in (employee, leader):
                    store.put_event(
                        Event(owner, f"{n}-{week}", title, start, start + length,
                              uid=f"{n}-{week}", organizer=leader, attendees=people)
                    )  # fmt: skip
    store.close()
    return path


def measure(path: Path, requests: int) -> dict[str, list[float]]:
    from starlette.testclient import TestClient

    from agent.settings import config
    from agent.web.app import Probes, create
    from agent.web.base import Web, security

    settings = config.load(path)
    web = Web(settings, clock=lambda: NOW)
    app = create(settings, Probes(lambda: (True, {}), lambda: b"", "text/plain"), web)
    out: dict[str, list[float]] = {}
    for who, page, count in (
        (f"l0@{DOMAIN}", "/team", requests),
        (f"hr@{DOMAIN}", "/admin/report", requests),
    ):
        with TestClient(app, base_url="http://bench") as client:
            client.cookies.set(security.SESSION_COOKIE, web.session_cookie(who, NOW))
            times = []
            for _ in range(count):
                started = time.perf_counter()
                got = client.get(page)
                times.append(time.perf_counter() - started)
                assert got.status_code == 200, got.text[:200]
            out[page] = times
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--relationships", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        path = build(Path(tmp), args.relationships)
        print(
            f"built {args.relationships} relationships in {time.perf_counter() - started:.1f} s",
            file=sys.stderr,
        )
        for page, times in measure(path, args.requests).items():
            first, ms = times[0] * 1000, sorted(t * 1000 for t in times[1:])
            p95 = ms[max(0, round(0.95 * len(ms)) - 1)]
            print(
                f"{page}: first request {first:.0f} ms; then {len(ms)} requests, "
                f"median {statistics.median(ms):.0f} ms, p95 {p95:.0f} ms"
            )


if __name__ == "__main__":
    main()
