"""Push at scale, on the local Google test server: what a quiet day costs with push, and
how long a change takes to become an action.

    python -m benchmarks.push --relationships 1000 --latency 0.05 --changes 20

An organization of N relationships (ten employees per leader, every deep dive held 20
days ago: nothing is due) on one Google account. The first tick reads every calendar and
opens a channel on each.

- **A quiet day.** 144 ticks ten minutes apart, in simulated time, each reading only the
  calendars whose channel is not healthy or which were read ``push.poll`` ago, then the
  channel upkeep (renewals): every request the fake Google answers is counted, token
  requests included, and divided by calendars and hours.
- **From change to action.** A running service (its receiver on a local port); ``K``
  leaders each decline a meeting booked for one of their employees, one after the
  other, and the time from the decline on the server to the moved event on the server
  is measured (the notification, the debounce, the focused tick).
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import time_machine

from agent.app.service import Service
from agent.core.retry import RetryPolicy
from agent.tick import metrics as metrics_mod
from agent.tick import push
from agent.tick.engine import Engine
from tests.google.harness import workspace

PROGRAM = """\
programs:
  leader-cycle:
    organizer: employee
    series:
      deep_dive:
        every: 90d
        duration: 60m
        title: "Deep dive: {{ employee.first_name }} & {{ partner.first_name }}"
        match: '(?i)\\bdeep dive\\b'
    booking: {horizon: 14d, lead_time: 2d, window: "10:00-16:00"}
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def organization(n: int, lapsed: int) -> tuple[tuple[tuple[str, str, str], ...], str]:
    """People and relationships: employee i is led by leader i // 10; the first employee
    of each of the first ``lapsed`` leaders is due (their last deep dive is old)."""
    leaders = (n + 9) // 10
    people = [(f"lead{j}@acme.example", f"Lead {j}", "Europe/Berlin") for j in range(leaders)]
    people += [(f"emp{i}@acme.example", f"Emp {i}", "Europe/Berlin") for i in range(n)]
    lines = ["relationships:"]
    lines += [
        f"  - {{employee: emp{i}@acme.example, partner: lead{i // 10}@acme.example,"
        " role: leader, program: leader-cycle}"
        for i in range(n)
    ]
    return tuple(people), "\n".join(lines) + "\n" + PROGRAM


def run(n: int, latency: float, changes: int, poll: str, work: Path) -> dict[str, Any]:
    port = _port()
    people, rest = organization(n, changes)
    rest += (
        f"service: {{host: 127.0.0.1, port: {port}}}\n"
        f"push: {{public_url: 'http://127.0.0.1:{port}/push', poll: {poll}}}\n"
    )
    out: dict[str, Any] = {"relationships": n}
    with workspace(work, people=people, rest=rest, threaded=True) as ws:
        srv = ws.server
        now = datetime.now(UTC)
        for i in range(n):
            held = now - timedelta(days=100 if i % 10 == 0 and i // 10 < changes else 20)
            srv.add_event(
                f"emp{i}@acme.example",
                "Deep dive",
                held,
                held + timedelta(hours=1),
                [f"lead{i // 10}@acme.example"],
            )
        calendars = len(people)
        out["calendars"] = calendars
        srv.latency = latency
        settings = ws.settings
        with Engine(settings, retry=RetryPolicy.none()) as engine:
            began = time.perf_counter()
            first = engine.tick(now)
            push.maintain(engine, now)
            out["first_tick_and_channels_s"] = round(time.perf_counter() - began, 1)
            out["booked"] = first.count("book")
            srv.state.push.drain()

            before, tokens_before = srv.http_requests, len(srv.state.tokens)
            began = time.perf_counter()
            for k in range(1, 145):
                at = now + timedelta(minutes=10 * k)
                # the clock moves with the simulated day, so access tokens expire in it
                with time_machine.travel(at, tick=True):
                    report = engine.tick(at, skip=push.quiet(settings, engine.store, at))
                    assert report.ok, report.errors
                    push.maintain(engine, at)
            used = srv.http_requests - before
            out["quiet_day_requests"] = used
            out["quiet_day_token_requests"] = len(srv.state.tokens) - tokens_before
            out["quiet_day_requests_per_calendar_hour"] = round(used / calendars / 24, 3)
            out["quiet_day_wall_s"] = round(time.perf_counter() - began, 1)

        # the service, its receiver and the fake Google's notifications
        delays: list[float] = []
        service = Service(settings)
        assert service.push is not None
        service.push.start()
        service.start_http()
        try:
            service.tick()
            srv.state.push.drain()
            for j in range(min(changes, out["booked"])):
                employee, leader = f"emp{j * 10}@acme.example", f"lead{j}@acme.example"
                booking = _booked(srv, employee)
                if booking is None:
                    continue
                started = time.perf_counter()
                srv.calendar.respond(leader, booking["id"], "declined")
                while _booked(srv, employee)["start"] == booking["start"]:  # type: ignore[index]
                    if time.perf_counter() - started > 120:
                        break
                    time.sleep(0.02)
                delays.append(time.perf_counter() - started)
        finally:
            service.stop_http()
            service.push.stop()
            metrics_mod.deactivate()
        if delays:
            delays.sort()
            out["change_to_action_s"] = {
                "n": len(delays),
                "median": round(statistics.median(delays), 2),
                "p95": round(delays[max(0, int(len(delays) * 0.95) - 1)], 2),
                "max": round(delays[-1], 2),
            }
    return out


def _booked(srv: Any, owner: str) -> dict[str, Any] | None:
    with srv.state.lock:
        return next(
            (
                dict(e)
                for e in srv.state.calendars[owner].events.values()
                if e.get("status") != "cancelled"
                and "cadenceKey" in str(e.get("extendedProperties"))
            ),
            None,
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--relationships", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--poll", default="12h")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        result = run(args.relationships, args.latency, args.changes, args.poll, Path(work))
    for key, value in result.items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
