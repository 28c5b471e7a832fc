"""Push at scale, on the local Google and Graph test servers: what a quiet day costs with
push, and how long a change takes to become an action.

    python -m benchmarks.push --relationships 1000 --latency 0.05 --changes 20
    python -m benchmarks.push --provider microsoft --relationships 1000 --days 3

An organization of N relationships (ten employees per leader, every deep dive held 20
days ago: nothing is due) on one Google Workspace or Microsoft 365 account. The first
tick reads every calendar and opens a channel (a subscription on Graph) on each.

- **A quiet day** (or ``--days``). Ticks ten minutes apart in simulated time, each
  reading only the calendars whose channel is not healthy or which were read
  ``push.poll`` ago, then the channel upkeep (renewals). The process's clock moves with
  the simulated time, so access tokens expire in it and are asked again. Every request
  the fake server answers is counted, token requests included, and divided by
  calendars and hours.
- **From change to action.** A running service (its receiver on a local port); ``K``
  leaders each decline a meeting booked for one of their employees, one after the
  other, and the time from the decline on the server to the moved event on the server
  is measured (the notification, the debounce, the focused tick).
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import time_machine

from agent.app.service import Service
from agent.core.retry import RetryPolicy
from agent.settings import config
from agent.settings.config import Settings
from agent.tick import metrics as metrics_mod
from agent.tick import push
from agent.tick.engine import Engine
from tests.environ import clean_environ
from tests.google.harness import workspace
from tests.microsoft.fixtures import ACCOUNT_SETTINGS, graph_event
from tests.microsoft.server import GraphServer

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
GRAPH_SECRET_ENV = "CADENCE_BENCH_GRAPH_SECRET"


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


class Fake(Protocol):
    """What the benchmark needs of a provider's test server."""

    settings: Settings
    latency: float

    def requests(self) -> int: ...
    def tokens(self) -> int: ...
    def hold(self, employee: str, leader: str, start: datetime) -> None: ...
    def drain(self) -> None: ...
    def booked(self, owner: str) -> dict[str, Any] | None: ...
    def decline(self, leader: str, booking: dict[str, Any]) -> None: ...


class GoogleFake:
    def __init__(self, ws: Any) -> None:
        self.srv, self.settings = ws.server, ws.settings

    @property
    def latency(self) -> float:
        return float(self.srv.latency)

    @latency.setter
    def latency(self, value: float) -> None:
        self.srv.latency = value

    def requests(self) -> int:
        return int(self.srv.http_requests)

    def tokens(self) -> int:
        return len(self.srv.state.tokens)

    def hold(self, employee: str, leader: str, start: datetime) -> None:
        self.srv.add_event(employee, "Deep dive", start, start + timedelta(hours=1), [leader])

    def drain(self) -> None:
        self.srv.state.push.drain()

    def booked(self, owner: str) -> dict[str, Any] | None:
        with self.srv.state.lock:
            return next(
                (
                    dict(e)
                    for e in self.srv.state.calendars[owner].events.values()
                    if e.get("status") != "cancelled"
                    and "cadenceKey" in str(e.get("extendedProperties"))
                ),
                None,
            )

    def decline(self, leader: str, booking: dict[str, Any]) -> None:
        self.srv.calendar.respond(leader, booking["id"], "declined")


class GraphFake:
    def __init__(self, server: GraphServer, settings: Settings) -> None:
        self.srv, self.settings = server, settings

    @property
    def latency(self) -> float:
        return self.srv.latency

    @latency.setter
    def latency(self, value: float) -> None:
        self.srv.latency = value

    def requests(self) -> int:
        # each request of a $batch counts against Graph's limits, the envelope does not
        with self.srv.lock:
            return sum(n for route, n in self.srv.counts.items() if route != "batch")

    def tokens(self) -> int:
        return len(self.srv.tokens)

    def hold(self, employee: str, leader: str, start: datetime) -> None:
        body = graph_event("Deep dive", start, start + timedelta(hours=1))
        body["attendees"] = [{"emailAddress": {"address": leader}, "type": "required"}]
        self.srv.add_event(employee, body)

    def drain(self) -> None:
        self.srv.subscriptions.drain()

    def booked(self, owner: str) -> dict[str, Any] | None:
        return next(
            (
                e
                for e in self.srv.events_of(owner)
                if e.get("transactionId") and not e.get("isCancelled")
            ),
            None,
        )

    def decline(self, leader: str, booking: dict[str, Any]) -> None:
        with self.srv.lock:
            copy = next(
                ev.id
                for ev in self.srv.mailboxes[leader].events.values()
                if ev.master_of_copy and ev.master_of_copy[1] == booking["id"]
            )
        self.srv.respond(leader, copy, "declined")


@contextmanager
def google(work: Path, people: tuple[tuple[str, str, str], ...], rest: str) -> Iterator[Fake]:
    with workspace(work, people=people, rest=rest, threaded=True) as ws:
        yield GoogleFake(ws)


@contextmanager
def microsoft(work: Path, people: tuple[tuple[str, str, str], ...], rest: str) -> Iterator[Fake]:
    with clean_environ(), GraphServer([p[0] for p in people]) as server:
        server.write_ca(work / "graph-ca.pem")
        account = ACCOUNT_SETTINGS.format(
            tenant=server.tenant,
            client_id=server.client_id,
            secret_env=GRAPH_SECRET_ENV,
            url=server.url,
        )
        listed = "".join(
            f"  - {{email: {e}, name: {name}, timezone: {zone}}}\n" for e, name, zone in people
        )
        path = work / "cadence.yaml"
        path.write_text(
            "timezone: Europe/Berlin\nstore: cadence.db\naccounts:\n  m365:\n"
            + account
            + "defaults:\n  account: m365\n"
            + '  working_hours: {mon-fri: "09:00-17:00"}\n'
            + "people:\n"
            + listed
            + rest
        )
        os.environ[GRAPH_SECRET_ENV] = server.client_secret or ""
        yield GraphFake(server, config.load(path))


PROVIDERS = {"google": google, "microsoft": microsoft}


def run(
    n: int,
    latency: float,
    changes: int,
    poll: str,
    work: Path,
    provider: str = "google",
    days: int = 1,
) -> dict[str, Any]:
    port = _port()
    people, rest = organization(n, changes)
    rest += (
        f"service: {{host: 127.0.0.1, port: {port}}}\n"
        f"push: {{public_url: 'http://127.0.0.1:{port}/push', poll: {poll}}}\n"
    )
    out: dict[str, Any] = {"provider": provider, "relationships": n, "days": days}
    with PROVIDERS[provider](work, people, rest) as fake:
        now = datetime.now(UTC)
        for i in range(n):
            held = now - timedelta(days=100 if i % 10 == 0 and i // 10 < changes else 20)
            fake.hold(f"emp{i}@acme.example", f"lead{i // 10}@acme.example", held)
        calendars = len(people)
        out["calendars"] = calendars
        fake.latency = latency
        settings = fake.settings
        # the receiver answers Graph's validation handshake when a subscription is made
        service = Service(settings)
        assert service.push is not None
        service.start_http()
        try:
            with Engine(settings, retry=RetryPolicy.none()) as engine:
                began = time.perf_counter()
                first = engine.tick(now)
                push.maintain(engine, now)
                out["first_tick_and_channels_s"] = round(time.perf_counter() - began, 1)
                out["booked"] = first.count("book")
                fake.drain()
                out.update(_quiet(engine, fake, now, days, calendars))
            delays = _reactions(service, fake, changes, out["booked"])
        finally:
            service.stop_http()
            service.push.stop()
            metrics_mod.deactivate()
        if delays:
            delays.sort()
            out["change_to_action_s"] = {
                "n": len(delays),
                "median": round(statistics.median(delays), 2),
                "p95": round(delays[math.ceil(len(delays) * 0.95) - 1], 2),
                "max": round(delays[-1], 2),
            }
    return out


def _quiet(engine: Engine, fake: Fake, now: datetime, days: int, calendars: int) -> dict[str, Any]:
    """Ticks ten minutes apart for ``days``, the process's clock moved with them."""
    settings = engine.settings
    before, tokens_before = fake.requests(), fake.tokens()
    began = time.perf_counter()
    for k in range(1, 144 * days + 1):
        at = now + timedelta(minutes=10 * k)
        with time_machine.travel(at, tick=True):
            report = engine.tick(at, skip=push.quiet(settings, engine.store, at))
            assert report.ok, report.errors
            push.maintain(engine, at)
    used = fake.requests() - before
    return {
        "quiet_requests": used,
        "quiet_token_requests": fake.tokens() - tokens_before,
        "quiet_requests_per_calendar_hour": round(used / calendars / (24 * days), 3),
        "quiet_wall_s": round(time.perf_counter() - began, 1),
    }


def _reactions(service: Service, fake: Fake, changes: int, booked: int) -> list[float]:
    """The service's push worker and receiver running: leaders decline one by one."""
    assert service.push is not None
    delays: list[float] = []
    service.push.start()
    service.tick()
    fake.drain()
    for j in range(min(changes, booked)):
        employee, leader = f"emp{j * 10}@acme.example", f"lead{j}@acme.example"
        booking = fake.booked(employee)
        if booking is None:
            continue
        started = time.perf_counter()
        fake.decline(leader, booking)
        while (fake.booked(employee) or {}).get("start") == booking["start"]:
            if time.perf_counter() - started > 120:
                break
            time.sleep(0.02)
        delays.append(time.perf_counter() - started)
    return delays


def arguments(doc: str, changes: int) -> argparse.ArgumentParser:
    """The options every push benchmark takes: the organization, latency, the changes
    timed, ``push.poll``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--relationships", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--changes", type=int, default=changes)
    parser.add_argument("--poll", default="12h")
    return parser


def printed(result: dict[str, Any]) -> int:
    for key, value in result.items():
        print(f"{key}: {value}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = arguments(__doc__, 20)
    parser.add_argument("--provider", choices=sorted(PROVIDERS), default="google")
    parser.add_argument("--days", type=int, default=1, help="simulated quiet days")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        result = run(
            args.relationships,
            args.latency,
            args.changes,
            args.poll,
            Path(work),
            args.provider,
            args.days,
        )
    return printed(result)


if __name__ == "__main__":
    sys.exit(main())
