"""Soak: many relationships over many ticks against the fake Google and Graph servers with a share of all
requests faulted, every kind of tests.chaos mixed: throttling with Retry-After, 500, 502
and 503, answers lost after the call took effect, added latency, answers held past the
client's timeout, connections dropped before or after the call took effect, and access
tokens that expire in the middle of a tick. The token endpoints (Google's token URI,
the Microsoft identity platform's token endpoint and OpenID configuration) are faulted
as well (tests.chaos.TOKEN): a token that is not issued fails that call for the
account, which goes again at a later attempt or tick. When the faults stop, the next
ticks must reach exactly the state a fault-free run reaches: the same bookings and
mails, nothing twice, nothing missing (an interrupted send is looked up among the
sender's sent mail), and no request to a throttled endpoint before the Retry-After it
was given.

``make test`` runs a short version; ``make soak`` the full one (SOAK=200x20).

The program here has no ``skip_near``: whether a check-in is skipped depends on when the
deep dive landed, and a booking deferred by a fault finds the calendars as the bookings
of other relationships left them, so its slot (never its key) may differ from the
fault-free run's.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import time
import types
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import msal.individual_cache
import pytest

from agent.core.retry import RetryPolicy
from agent.tick.engine import Engine
from tests import chaos
from tests.google.harness import workspace

pytestmark = pytest.mark.slow

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
ZONES = ["Europe/Berlin", "Europe/London", "America/New_York", "Asia/Kolkata", "America/Sao_Paulo"]
PROGRAM = """\
programs:
  cycle:
    series:
      deep_dive: {every: 90d, duration: 60m, stages: [align, advance, amplify, advocate],
                  title: "Development {{ stage | title }}: {{ employee.first_name }} & {{ partner.first_name }}",
                  match: '(?i)\\b(align|advance|amplify|advocate|deep dive)\\b'}
      check_in: {every: 30d, duration: 15m,
                 title: "Development check-in: {{ employee.first_name }} & {{ partner.first_name }}",
                 match: '(?i)\\bcheck-?in\\b'}
    booking: {horizon: 14d, lead_time: 2d, buffer: 10m, max_per_day: 3, max_per_week: 10}
    recap: {after: 2h, collect_replies: true, backfill: 1d}
"""
#: the connectors' timeout in the soak (seconds): a held answer costs this much real time
TIMEOUT = 0.5


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
    uncertain: int = 0
    seconds: float = 0.0
    #: faults of the token endpoints, by kind
    token_faults: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)


def size() -> tuple[int, int]:
    text = os.environ.get("SOAK", "40x6")
    relationships, ticks = text.split("x")
    return int(relationships), int(ticks)


def _org(relationships: int) -> tuple[list[tuple[str, str, str]], str, int]:
    leaders = max(1, relationships // 10)
    people = [(f"lead{j}@acme.example", f"Lee{j} Lead", ZONES[j % 2]) for j in range(leaders)]
    people += [
        (f"emp{i}@acme.example", f"Em{i} Ploy", ZONES[i % len(ZONES)]) for i in range(relationships)
    ]
    rels = "\n".join(
        f"  - {{employee: emp{i}@acme.example, partner: lead{i % leaders}@acme.example, program: cycle}}"
        for i in range(relationships)
    )
    return people, f"relationships:\n{rels}\n" + PROGRAM, leaders


def _history(relationships: int, leaders: int, add: Any) -> None:
    """The same history on any server: ``add(owner, title, start, end, attendee)``."""
    for i in range(relationships):
        emp, lead = f"emp{i}@acme.example", f"lead{i % leaders}@acme.example"
        held = (NOW - timedelta(days=80 + (i * 7) % 60)).replace(hour=13)
        add(emp, "Development Align", held, held + timedelta(hours=1), lead)
        check = (NOW - timedelta(days=25 + i % 10)).replace(hour=14)
        add(emp, "Development check-in", check, check + timedelta(minutes=15), lead)
        if i % 10 == 0:  # a check-in tomorrow: its agenda is due
            soon = NOW + timedelta(hours=20)
            add(emp, "Development check-in", soon, soon + timedelta(minutes=15), lead)
        if i % 7 == 0:  # a deep dive that ended before the first tick: a recap is due
            # (within the program's backfill)
            ended = NOW - timedelta(hours=4)
            add(emp, "Development Advance", ended, ended + timedelta(hours=1), lead)


def _uncertain(settings: Any) -> int:
    """Mails whose send was interrupted where the provider cannot tell if it went out."""
    from agent.store.sqlite import Store

    store = Store(settings.store)
    try:
        return sum(1 for r in store.outbox_rows() if r["status"] == "uncertain")
    finally:
        store.close()


def _ticks(settings: Any, clock: Clock, ticks: int, calm: Any) -> None:
    policy = RetryPolicy(attempts=4, base=0.5, sleep=clock.sleep, rand=lambda: 0.5, max_total=60)
    with Engine(settings, retry=policy) as engine:
        for t in range(ticks):
            engine.tick(NOW + timedelta(minutes=10 * t))
            clock.sleep(600)
        calm()  # the faults stop
        for t in range(ticks, ticks + 2):
            report = engine.tick(NOW + timedelta(minutes=10 * t))
            clock.sleep(600)
        assert report.ok, report.errors[:3]
        assert not [a for a in report.actions if a.outcome == "done"], "not settled"


def _mails(messages: list[Any]) -> collections.Counter[str]:
    # the same mail in two runs: the same subject to the same people (Message-IDs derive
    # from the servers' event ids, which differ between runs)
    ids = collections.Counter(str(m["Message-ID"]) for m in messages)
    assert max(ids.values(), default=1) == 1, "a mail was sent twice"
    return collections.Counter(f"{m['Subject']} → {m['To']}" for m in messages)


def run_google(tmp: Path, relationships: int, ticks: int, rate: float) -> Outcome:
    people, rest, leaders = _org(relationships)
    clock = Clock()
    tmp.mkdir(parents=True)
    began = time.monotonic()
    extra = f"    timeout: {TIMEOUT}\n"
    # threaded: an answer held for one client must not hold up the others
    with workspace(tmp, people=tuple(people), rest=rest, account_extra=extra, threaded=True) as ws:
        srv = ws.server
        _history(relationships, leaders, lambda o, t, a, b, who: srv.add_event(o, t, a, b, [who]))
        if rate:
            srv.state.chaos(rate, seed=relationships * 1000 + ticks, clock=clock, token=True)

        def calm() -> None:
            srv.state.chaos_rate = 0.0

        _ticks(ws.settings, clock, ticks, calm)
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
        mails = _mails([s.message for s in srv.state.sent])
        return Outcome(
            bookings,
            mails,
            list(srv.state.early),
            srv.state.chaos_count,
            sum(srv.state.counts.values()),
            _uncertain(ws.settings),
            time.monotonic() - began,
            srv.state.token_faults,
        )


GRAPH_ACCOUNT = """\
timezone: Europe/Berlin
store: cadence.db
accounts:
  m365:
    provider: microsoft
    tenant: {tenant}
    client_id: {client_id}
    client_secret_env: SOAK_GRAPH_SECRET
    authority: {url}
    graph: {url}
    ca_bundle: graph-ca.pem
    timeout: {timeout}
people:
{people}
"""


def run_graph(tmp: Path, relationships: int, ticks: int, rate: float) -> Outcome:
    from agent.settings import config
    from tests.microsoft.fixtures import graph_event
    from tests.microsoft.server import GraphServer

    people, rest, leaders = _org(relationships)
    clock = Clock()
    tmp.mkdir(parents=True)
    began = time.monotonic()
    with GraphServer([p[0] for p in people]) as server:
        server.write_ca(tmp / "graph-ca.pem")
        lines = "\n".join(f"  - {{email: {e}, name: {n}, timezone: {z}}}" for e, n, z in people)
        path = tmp / "cadence.yaml"
        path.write_text(
            GRAPH_ACCOUNT.format(
                tenant=server.tenant,
                client_id=server.client_id,
                url=server.url,
                people=lines,
                timeout=TIMEOUT,
            )
            + rest
        )
        os.environ["SOAK_GRAPH_SECRET"] = server.client_secret or ""
        settings = config.load(path)
        everyone = {p.email: p for p in settings.people.values()}

        def add(owner: str, title: str, start: datetime, end: datetime, who: str) -> None:
            server.add_event(owner, graph_event(title, start, end, [everyone[who]]))

        _history(relationships, leaders, add)
        if rate:
            server.chaos(rate, seed=relationships * 1000 + ticks, clock=clock, token=True)

        def calm() -> None:
            server.chaos_rate = 0.0

        # MSAL answers a failed sign-in from its cache for a few seconds (its throttling):
        # those seconds pass on the soak's clock, as ticks ten minutes apart do
        base = time.time()
        msal_time = types.SimpleNamespace(time=lambda: base + clock.now())
        try:
            with mock.patch.object(msal.individual_cache, "time", msal_time):
                _ticks(settings, clock, ticks, calm)
        finally:
            os.environ.pop("SOAK_GRAPH_SECRET", None)
        bookings: collections.Counter[str] = collections.Counter()
        for email in everyone:
            for ev in server.events_of(email):
                tx = ev.get("transactionId") or ""
                if tx.startswith("cadence-") and not ev.get("isCancelled"):
                    bookings[tx] += 1
        return Outcome(
            bookings,
            _mails(list(server.sent)),
            list(server.early),
            server.chaos_count,
            sum(server.counts.values()),
            _uncertain(settings),
            time.monotonic() - began,
            server.token_faults,
        )


@pytest.mark.parametrize("provider", ["google", "microsoft"])
def test_faults_then_calm_reach_the_fault_free_state(tmp_path: Path, provider: str) -> None:
    relationships, ticks = size()
    run = run_google if provider == "google" else run_graph
    calm = run(tmp_path / "calm", relationships, ticks, 0.0)
    stormy = run(tmp_path / "stormy", relationships, ticks, 0.3)
    faults = ", ".join(f"{n} {k}" for k, n in sorted(stormy.faults.items()))
    print(
        f"\nsoak ({provider}): {relationships} relationships, {ticks} ticks at 30 % faults: "
        f"{sum(stormy.faults.values())} of {stormy.requests} requests faulted ({faults}); "
        f"token endpoint faults: {dict(sorted(stormy.token_faults.items()))}; "
        f"bookings {len(stormy.bookings)} of {len(calm.bookings)}, "
        f"mails {len(stormy.mails)} of {len(calm.mails)} "
        f"({stormy.uncertain} interrupted sends left uncertain), early requests "
        f"{len(stormy.early)}; {calm.seconds:.0f} s calm, {stormy.seconds:.0f} s stormy"
    )
    assert sum(stormy.faults.values()) > relationships  # the storm was real
    kinds = {"403", *chaos.KINDS} if provider == "google" else set(chaos.KINDS)
    assert set(stormy.faults) == kinds, "every kind of fault was injected"
    assert calm.bookings and calm.mails
    assert max(stormy.bookings.values()) == 1 and max(stormy.mails.values()) == 1  # nothing twice
    assert set(stormy.bookings) == set(calm.bookings)  # nothing missing, nothing extra
    assert sum(stormy.token_faults.values()) > 0  # the sign-in was faulted too
    # nothing missing: Gmail with its read scope, and Graph with Mail.Read, find an
    # interrupted send in the sender's sent mail, so none is left uncertain
    assert set(stormy.mails) == set(calm.mails)
    assert stormy.uncertain == 0
    assert stormy.early == []  # Retry-After honoured
