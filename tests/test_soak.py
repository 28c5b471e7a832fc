"""Soak: many relationships over many ticks against the fake Google with a share of all
requests faulted (throttling, 5xx, answers lost after the call took effect). When the
faults stop, the next ticks must reach exactly the state a fault-free run reaches: the
same bookings and mails, nothing twice, nothing missing, and no request to a throttled
endpoint before the Retry-After it was given.

``make test`` runs a short version; ``make soak`` the full one (SOAK=200x20).
"""

from __future__ import annotations

import collections
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.connectors.base import RetryPolicy
from agent.engine import Engine
from tests.google.harness import workspace

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
ZONES = ["Europe/Berlin", "Europe/London", "America/New_York", "Asia/Kolkata", "America/Sao_Paulo"]
PROGRAM = """\
programs:
  cycle:
    series:
      deep_dive: {every: 90d, duration: 60m, stages: [align, advance, amplify, advocate],
                  title: "Development {{ stage | title }}: {{ employee.first_name }} & {{ partner.first_name }}",
                  match: '(?i)\\b(align|advance|amplify|advocate|deep dive)\\b'}
      check_in: {every: 30d, duration: 15m, skip_near: deep_dive,
                 title: "Development check-in: {{ employee.first_name }} & {{ partner.first_name }}",
                 match: '(?i)\\bcheck-?in\\b'}
    booking: {horizon: 14d, lead_time: 2d, buffer: 10m, max_per_day: 3, max_per_week: 10}
    recap: {after: 2h, collect_replies: true}
"""


class Clock:
    """Fake time shared by the retry policy (sleeping advances it) and the server."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class Outcome:
    bookings: collections.Counter[str]
    mails: collections.Counter[str]
    early: list[str]
    faults: collections.Counter[str]
    requests: int


def size() -> tuple[int, int]:
    text = os.environ.get("SOAK", "40x6")
    relationships, ticks = text.split("x")
    return int(relationships), int(ticks)


def run(tmp: Path, relationships: int, ticks: int, rate: float) -> Outcome:
    leaders = max(1, relationships // 10)
    people = [(f"lead{j}@acme.example", f"Lee{j} Lead", ZONES[j % 2]) for j in range(leaders)]
    people += [
        (f"emp{i}@acme.example", f"Em{i} Ploy", ZONES[i % len(ZONES)]) for i in range(relationships)
    ]
    rels = "\n".join(
        f"  - {{employee: emp{i}@acme.example, partner: lead{i % leaders}@acme.example, program: cycle}}"
        for i in range(relationships)
    )
    clock = Clock()
    tmp.mkdir(parents=True)
    with workspace(tmp, people=tuple(people), rest=f"relationships:\n{rels}\n" + PROGRAM) as ws:
        srv = ws.server
        for i in range(relationships):
            emp, lead = f"emp{i}@acme.example", f"lead{i % leaders}@acme.example"
            held = (NOW - timedelta(days=80 + (i * 7) % 60)).replace(hour=13)
            srv.add_event(emp, "Development Align", held, held + timedelta(hours=1), [lead])
            check = (NOW - timedelta(days=25 + i % 10)).replace(hour=14)
            srv.add_event(emp, "Development check-in", check, check + timedelta(minutes=15), [lead])
            if i % 10 == 0:  # a check-in tomorrow: its agenda is due
                soon = NOW + timedelta(hours=20)
                srv.add_event(
                    emp, "Development check-in", soon, soon + timedelta(minutes=15), [lead]
                )
            if i % 7 == 0:  # a deep dive that ended an hour before the first tick: a recap
                ended = NOW - timedelta(hours=4)
                srv.add_event(emp, "Development Advance", ended, ended + timedelta(hours=1), [lead])
        if rate:
            srv.state.chaos(rate, seed=relationships * 1000 + ticks, clock=clock)
        policy = RetryPolicy(
            attempts=4, base=0.5, sleep=clock.sleep, rand=lambda: 0.5, max_total=60
        )
        with Engine(ws.settings, retry=policy) as engine:
            for t in range(ticks):
                engine.tick(NOW + timedelta(minutes=10 * t))
                clock.sleep(600)
            srv.state.chaos_rate = 0.0  # the faults stop
            for t in range(ticks, ticks + 2):
                report = engine.tick(NOW + timedelta(minutes=10 * t))
                clock.sleep(600)
            assert report.ok, report.errors[:3]
            assert not [a for a in report.actions if a.outcome == "done"], "not settled"
        bookings: collections.Counter[str] = collections.Counter()
        for cal in srv.state.calendars.values():
            for ev in cal.events.values():
                private = (ev.get("extendedProperties") or {}).get("private") or {}
                if (
                    private
                    and ev.get("status") != "cancelled"
                    and ev["organizer"]["email"] == cal.owner
                ):
                    bookings[ev["id"]] += 1
        # the same mail in two runs: the same subject to the same people (the Message-IDs
        # derive from the server's event ids, which differ between runs)
        ids = collections.Counter(str(s.message["Message-ID"]) for s in srv.state.sent)
        assert max(ids.values(), default=1) == 1, "a mail was sent twice"
        mails = collections.Counter(
            f"{s.message['Subject']} → {s.message['To']}" for s in srv.state.sent
        )
        return Outcome(
            bookings,
            mails,
            list(srv.state.early),
            srv.state.chaos_count,
            sum(srv.state.counts.values()),
        )


def test_faults_then_calm_reach_the_fault_free_state(tmp_path: Path) -> None:
    relationships, ticks = size()
    calm = run(tmp_path / "calm", relationships, ticks, 0.0)
    stormy = run(tmp_path / "stormy", relationships, ticks, 0.3)
    print(
        f"\nsoak: {relationships} relationships, {ticks} ticks at 30 % faults "
        f"({sum(stormy.faults.values())} faults: {dict(stormy.faults)}; {stormy.requests} requests); "
        f"bookings {len(stormy.bookings)}, mails {len(stormy.mails)}, early requests {len(stormy.early)}"
    )
    assert sum(stormy.faults.values()) > relationships  # the storm was real
    assert calm.bookings and calm.mails
    assert max(stormy.bookings.values()) == 1 and max(stormy.mails.values()) == 1  # nothing twice
    assert set(stormy.bookings) == set(calm.bookings)  # nothing missing, nothing extra
    assert set(stormy.mails) == set(calm.mails)
    assert stormy.early == []  # Retry-After honoured
