"""Exchange streaming notifications at scale, on the local EWS server: what a quiet day
costs, and how long a decline takes to become a move.

    python -m benchmarks.exstream --relationships 1000 --latency 0.05 --changes 10

An organization of N relationships (ten employees per leader, every deep dive held 20
days ago except the first employee of each of the first ``--changes`` leaders, who is
due) on one Exchange account with impersonation. The running service makes its first
tick: every calendar read, the due meetings booked, a streaming subscription made for
each calendar, held by one ``GetStreamingEvents`` connection per ``push.stream_group``.

- **From decline to move.** Each of the ``--changes`` leaders declines the meeting booked
  with an employee, one after the other; the time from the decline on the server to the
  moved meeting on the server is measured (streamed, debounced, the focused tick).
- **Streaming, quiet.** The server's ``ConnectionTimeout`` minute is ``--minute``
  seconds, so each connection is closed and opened again (``push.stream_timeout``) in
  real time; for ``--window`` seconds nothing changes, and every request the server
  answers is counted and divided by calendars and (simulated) hours.
- **The safety poll.** The service stopped, the engine ticks ten minutes apart through a
  simulated day as ``cadence serve`` does, each tick reading only the calendars read
  ``push.poll`` ago, then the subscription upkeep; the streamer's keeping the rows alive
  is played every ``push.stream_timeout`` (its requests are what the window counts).
  Every request is counted and divided by calendars and hours.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from agent.app.service import Service
from agent.core.retry import RetryPolicy
from agent.settings import config
from agent.store.push import PushRows
from agent.tick import metrics as metrics_mod
from agent.tick import pulls, push
from agent.tick.engine import Engine
from benchmarks.push import _port, arguments, organization, printed
from tests.environ import clean_environ
from tests.exchange.fixtures import ACCOUNT_SETTINGS
from tests.exchange.server import EwsServer, Item

PASSWORD_ENV = "CADENCE_BENCH_EWS_PASSWORD"


@contextmanager
def exchange(n: int, changes: int, work: Path, poll: str) -> Iterator[tuple[EwsServer, Path]]:
    """The server with the organization's mailboxes and deep dives, and its config."""
    people, rest = organization(n, changes)
    with clean_environ(), EwsServer({e: name for e, name, _ in people}) as server:
        now = datetime.now(UTC)
        for i in range(n):
            held = now - timedelta(days=100 if i % 10 == 0 and i // 10 < changes else 20)
            server.add_event(
                f"emp{i}@acme.example",
                "Deep dive",
                held,
                held + timedelta(hours=1),
                [f"lead{i // 10}@acme.example"],
            )
        server.write_ca(work / "ews-ca.pem")
        account = ACCOUNT_SETTINGS.format(
            url=server.url, username=server.username, password_env=PASSWORD_ENV
        )
        lines = ["people:"] + [
            f"  - {{email: {e}, name: {name}, timezone: {zone}}}" for e, name, zone in people
        ]
        text = (
            "timezone: Europe/Berlin\nstore: var/cadence.db\naccounts:\n  onprem:\n"
            + account
            + 'defaults:\n  account: onprem\n  working_hours: {mon-fri: "09:00-17:00"}\n'
            + "\n".join(lines)
            + "\n"
            + rest
            + f"service: {{host: 127.0.0.1, port: {_port()}}}\n"
            + f"push: {{exchange: stream, poll: {poll}, debounce: 1s}}\n"
        )
        path = work / "cadence.yaml"
        path.write_text(text)
        os.environ[PASSWORD_ENV] = server.password
        yield server, path


def _booked(server: EwsServer, owner: str) -> Item | None:
    with server._lock:
        return next((i for i in server.items_of(owner) if i.ext), None)


def requests(server: EwsServer) -> int:
    with server._lock:
        return sum(server.counts.values())


def run(
    n: int, latency: float, changes: int, poll: str, minute: float, window: float, work: Path
) -> dict[str, Any]:
    out: dict[str, Any] = {"relationships": n}
    with exchange(n, changes, work, poll) as (server, path):
        server.minute = minute
        server.delay = latency
        settings = config.load(path)
        calendars = len(settings.people)
        out["calendars"] = calendars
        service = Service(settings)
        assert service.push is not None and service.push.streamer is not None
        service.push.start()
        try:
            began = time.perf_counter()
            service.tick()
            out["first_tick_and_subscriptions_s"] = round(time.perf_counter() - began, 1)
            out["booked"] = sum(1 for i in range(n) if _booked(server, f"emp{i}@acme.example"))
            out["subscribe_requests"] = server.counts["Subscribe"]
            while server.held < -(-calendars // settings.push.stream_group):  # type: ignore[union-attr]
                time.sleep(0.1)
            out["connections"] = server.held

            delays: list[float] = []
            for j in range(changes):
                employee, leader = f"emp{j * 10}@acme.example", f"lead{j}@acme.example"
                booking = _booked(server, employee)
                if booking is None:
                    continue
                start = booking.start
                started = time.perf_counter()
                server.respond(leader, booking.id, "Decline")
                while (moved := _booked(server, employee)) is not None and moved.start == start:
                    if time.perf_counter() - started > 120:
                        break
                    time.sleep(0.02)
                delays.append(time.perf_counter() - started)
                time.sleep(1.5)  # the move's own events are streamed and debounced
            if delays:
                delays.sort()
                out["decline_to_move_s"] = {
                    "n": len(delays),
                    "median": round(statistics.median(delays), 2),
                    "p95": round(delays[max(0, int(len(delays) * 0.95) - 1)], 2),
                    "max": round(delays[-1], 2),
                }
            while service.push.reactor.pending:
                time.sleep(0.1)
            with service._running:
                pass

            # streaming through a quiet window, in real time at the shortened minute
            with server._lock:
                before = dict(server.counts)
            time.sleep(window)
            with server._lock:
                used = {k: v - before.get(k, 0) for k, v in server.counts.items()}
            used = {k: v for k, v in used.items() if v}
            hours = window / minute / 60  # simulated hours: ``minute`` seconds each
            out["stream_window_simulated_h"] = round(hours, 2)
            out["stream_window_requests"] = used
            out["stream_requests_per_calendar_hour"] = round(
                sum(used.values()) / calendars / hours, 4
            )
            out["stream_connections_end"] = server.held
        finally:
            service.push.stop()
            metrics_mod.deactivate()

        # the safety poll through a simulated day, the streamer's keeping played along
        timeout = settings.push.stream_timeout  # type: ignore[union-attr]
        with Engine(settings, retry=RetryPolicy.none()) as engine:
            now = datetime.now(UTC)
            before_day = requests(server)
            with server._lock:
                counted = dict(server.counts)
            rows = PushRows(engine.store)
            for k in range(1, 145):
                at = now + timedelta(minutes=10 * k)
                if (10 * k) % int(timeout.total_seconds() // 60) == 0 or k == 1:
                    for owner, row in rows.all().items():
                        if pulls.streamed(row):
                            rows.pulled(
                                owner, row.channel.id, pulls.STREAM, at + pulls.LIFETIME, at
                            )
                report = engine.tick(at, skip=push.quiet(settings, engine.store, at))
                assert report.ok, report.errors
                push.maintain(engine, at)
            day = requests(server) - before_day
            out["day_requests"] = day
            with server._lock:
                by = {k: v - counted.get(k, 0) for k, v in server.counts.items()}
            out["day_requests_by_operation"] = {k: v for k, v in by.items() if v}
            out["poll_requests_per_calendar_hour"] = round(day / calendars / 24, 4)
        out["total_requests_per_calendar_hour"] = round(
            out["stream_requests_per_calendar_hour"] + out["poll_requests_per_calendar_hour"], 4
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = arguments(__doc__, 10)
    parser.add_argument("--minute", type=float, default=0.5, help="seconds per server minute")
    parser.add_argument("--window", type=float, default=60.0, help="quiet seconds streamed")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        result = run(
            args.relationships,
            args.latency,
            args.changes,
            args.poll,
            args.minute,
            args.window,
            Path(work),
        )
    return printed(result)


if __name__ == "__main__":
    sys.exit(main())
