"""Cadence at organization scale, on the local Google and Microsoft Graph test servers.

Generates a simulated organization (N relationships, 1.1 people per relationship, a year
of history, about 15 events per person per week with recurring ones) straight into the
fake servers' state, adds latency to every request, and measures what an administrator
pays: the first full sync, a quiet tick, a booking sweep where 10 % of the relationships
lapse at once, memory, and the slot search; then the same work done naively (full
re-listing every tick, one free/busy request per pair, one request at a time).

    python -m benchmarks.org --relationships 100,1000 --latency 0.05

The servers run in a child process (``--inline`` keeps them in this one), so that the
memory and CPU measured are the agent's own. Request counts are exact; times depend on
the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import json
import multiprocessing
import os
import random
import re
import resource
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # a Monday
GOOGLE, GRAPH = "acme", "contoso"
DOMAINS = {GOOGLE: "acme.example", GRAPH: "contoso.example"}
ZONES = ("Europe/Berlin", "America/New_York", "Europe/London", "Asia/Tokyo")
SECRET_ENV = "CADENCE_BENCH_GRAPH_SECRET"
TITLES = (
    "Design review",
    "Customer call",
    "Planning",
    "Interview",
    "Focus time",
    "Lunch and learn",
    "Incident review",
    "Budget sync",
)
PROGRAM = """\
programs:
  leader-cycle:
    organizer: employee
    series:
      deep_dive:
        every: 90d
        duration: 60m
        stages: [align, advance, amplify, advocate]
        title: "Development {{ stage | title }}: {{ employee.first_name }} & {{ partner.first_name }}"
        match: '(?i)\\b(align|advance|amplify|advocate|deep dive)\\b'
    lapse_grace: 7d
    booking: {horizon: 14d, lead_time: 2d, window: "09:00-17:00", buffer: 10m, conference: none}
"""


# --- the organization ---------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    relationships: int
    seed: int = 7
    weeks: int = 52  # of history
    per_week: int = 15  # events per person per week, 7 of them recurring
    ahead: int = 16  # weeks of single events ahead (the booking window and beyond)
    lapse: float = 0.10  # the share of relationships that lapse in the sweep
    accounts: tuple[str, ...] = (GOOGLE, GRAPH)  # taken in turn, relationship by relationship


@dataclass(frozen=True)
class Member:
    email: str
    name: str
    zone: str
    account: str


@dataclass
class Org:
    spec: Spec
    people: dict[str, Member]
    #: (employee, partner) per relationship, in order
    pairs: list[tuple[str, str]]

    @property
    def lapsing(self) -> list[int]:
        """The relationships whose recent deep dive is cancelled in the sweep."""
        # pairs of neighbours, so that both accounts (even: Google, odd: Graph) lapse
        step = max(1, round(1 / self.spec.lapse))
        return [n for n in range(len(self.pairs)) if (n // 2) % step == 0]


def build_org(spec: Spec) -> Org:
    """The people and relationships; the same for the same spec, in any process."""
    rng = random.Random(spec.seed)
    people: dict[str, Member] = {}
    pairs: list[tuple[str, str]] = []
    for n in range(spec.relationships):
        account = spec.accounts[n % len(spec.accounts)]
        domain = DOMAINS[account]
        group = n // (10 * len(spec.accounts))  # ten employees per partner in each account
        zone = ZONES[group % len(ZONES)]
        partner = f"p{group:05d}@{domain}"
        employee = f"e{n:06d}@{domain}"
        if partner not in people:
            people[partner] = Member(partner, f"Pat {group}", zone, account)
        people[employee] = Member(employee, f"Eve {n} {rng.choice('ABCDEFGH')}", zone, account)
        pairs.append((employee, partner))
    return Org(spec, people, pairs)


def config_yaml(org: Org, endpoints: dict[str, Any], concurrency: int) -> str:
    g, m = endpoints["google"], endpoints["graph"]
    lines = [
        "timezone: Europe/Berlin",
        "store: cadence.db",
        f"sync: {{concurrency: {concurrency}}}",
        "accounts:",
    ]
    if GOOGLE in org.spec.accounts:
        lines += [
            f"  {GOOGLE}:",
            "    provider: google",
            "    credentials: google-key.json",
            "    endpoints:",
            f"      calendar: {g['calendar']}",
            f"      gmail: {g['gmail']}",
        ]
    if GRAPH in org.spec.accounts:
        lines += [
            f"  {GRAPH}:",
            "    provider: microsoft",
            f"    tenant: {m['tenant']}",
            f"    client_id: {m['client_id']}",
            f"    client_secret_env: {SECRET_ENV}",
            f"    authority: {m['url']}",
            f"    graph: {m['url']}",
            "    ca_bundle: graph-ca.pem",
        ]
    lines += [
        "defaults:",
        '  working_hours: {mon-fri: "09:00-17:00"}',
        "people:",
    ]
    for p in org.people.values():
        lines.append(
            f"  - {{email: {p.email}, name: {p.name}, timezone: {p.zone}, account: {p.account}}}"
        )
    lines.append("relationships:")
    for employee, partner in org.pairs:
        lines.append(f"  - {{employee: {employee}, partner: {partner}, program: leader-cycle}}")
    return "\n".join(lines) + "\n" + PROGRAM


# --- the calendars: generated into the fake servers' state ----------------------------


@dataclass
class Planned:
    owner: str
    title: str
    start: datetime
    end: datetime
    attendees: tuple[str, ...] = ()
    rrule: str | None = None
    deep_dive: int | None = None  # the relationship of a deep dive


def write_workspace(
    work: Path, org: Org, ends: dict[str, Any], concurrency: int, store: str | None = None
) -> Path:
    """The fake servers' Google key (0600), the Graph secret's variable and
    ``cadence.yaml`` in ``work``; ``store`` a store URL other than the SQLite file."""
    key = work / "google-key.json"
    key.write_text(json.dumps(ends["key"]))
    key.chmod(0o600)
    os.environ[SECRET_ENV] = ends["graph"]["secret"]
    path = work / "cadence.yaml"
    text = config_yaml(org, ends, concurrency)
    if store is not None:
        text = text.replace("store: cadence.db", f"store: {store}")
    path.write_text(text)
    return path


def calendar_of(org: Org, email: str, colleagues: Sequence[str]) -> Iterator[Planned]:
    """One person's year: three recurring series (7 a week) and single events."""
    spec, person = org.spec, org.people[email]
    rng = random.Random(f"{spec.seed}:{email}")
    zone = ZoneInfo(person.zone)
    first = (NOW - timedelta(weeks=spec.weeks)).astimezone(zone).date()
    first -= timedelta(days=first.weekday())

    def at(day: date, hour: int, minute: int = 0) -> datetime:
        return datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone)

    yield Planned(
        email,
        "Stand-up",
        at(first, 9, 30),
        at(first, 9, 45),
        rrule="FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR",
    )
    tuesday, thursday = first + timedelta(days=1), first + timedelta(days=3)
    yield Planned(email, "Team meeting", at(tuesday, 14), at(tuesday, 15), rrule="FREQ=WEEKLY")
    yield Planned(email, "Manager 1:1", at(thursday, 11), at(thursday, 11, 30), rrule="FREQ=WEEKLY")
    singles = max(0, spec.per_week - 7)
    for week in range(spec.weeks + spec.ahead):  # the history and the weeks ahead
        monday = first + timedelta(weeks=week)
        for _ in range(singles):
            day = monday + timedelta(days=rng.randrange(5))
            start = at(day, rng.randrange(10, 17), rng.choice((0, 30)))
            others = tuple(rng.sample(colleagues, k=min(len(colleagues), rng.randrange(3))))
            length = timedelta(minutes=rng.choice((30, 60)))
            yield Planned(email, rng.choice(TITLES), start, start + length, others)


def deep_dives(org: Org, n: int) -> Iterator[Planned]:
    """A relationship's history: a deep dive 120 days ago and a recent one (10-50 days),
    on the employee's calendar with the partner invited, and on the partner's."""
    employee, partner = org.pairs[n]
    zone = ZoneInfo(org.people[employee].zone)
    for ago, hour in ((120, 10), (10 + n % 41, 13)):
        day = (NOW - timedelta(days=ago)).astimezone(zone).date()
        day -= timedelta(days=max(0, day.weekday() - 4))  # a weekday
        start = datetime(day.year, day.month, day.day, hour, tzinfo=zone)
        title = f"Deep dive: {org.people[employee].name} & {org.people[partner].name}"
        for owner, other in ((employee, partner), (partner, employee)):
            yield Planned(owner, title, start, start + timedelta(hours=1), (other,), deep_dive=n)


class FakeOrg:
    """Both fake servers holding the organization; the benchmark's only handle on them."""

    def __init__(self, spec: Spec, latency: float, workdir: Path) -> None:
        from agent.connectors import google as google_connector
        from tests.google.harness import SERVICE_ACCOUNT, rsa_key
        from tests.google.server import GoogleServer
        from tests.microsoft.server import GraphServer

        self.org = build_org(spec)
        self.google = GoogleServer(latency=latency, threaded=True)
        graph_people = [p.email for p in self.org.people.values() if p.account == GRAPH]
        self.graph = GraphServer(graph_people, latency=latency)
        self.stack = contextlib.ExitStack()
        self.stack.enter_context(self.google)
        self.stack.enter_context(self.graph)
        for p in self.org.people.values():
            if p.account == GOOGLE:
                self.google.state.add_calendar(p.email, p.zone)
        sa = self.google.state.add_service_account(
            SERVICE_ACCOUNT, set(google_connector.scopes_for(True)), rsa_key()
        )
        self.key = sa.key_file(self.google.token_uri)
        self.graph.write_ca(workdir / "graph-ca.pem")
        #: the deep-dive events of each relationship: (account, owner, id)
        self.dives: dict[int, list[tuple[str, str, str]]] = {}
        self.events = 0
        self._populate()

    def _populate(self) -> None:
        by_account: dict[str, list[str]] = {}
        for p in self.org.people.values():
            by_account.setdefault(p.account, []).append(p.email)
        for email, p in self.org.people.items():
            pool = by_account[p.account]
            rng = random.Random(email)
            colleagues = [c for c in rng.sample(pool, k=min(len(pool), 8)) if c != email]
            for item in calendar_of(self.org, email, colleagues):
                self._put(item)
        for n in range(len(self.org.pairs)):
            for item in deep_dives(self.org, n):
                ident = self._put(item)
                self.dives.setdefault(n, []).append(
                    (self.org.people[item.owner].account, item.owner, ident)
                )

    def _put(self, item: Planned) -> str:
        self.events += 1
        account = self.org.people[item.owner].account
        zone = self.org.people[item.owner].zone
        if account == GOOGLE:
            body: dict[str, Any] = {
                "summary": item.title,
                "start": {"dateTime": item.start.isoformat(), "timeZone": zone},
                "end": {"dateTime": item.end.isoformat(), "timeZone": zone},
            }
            if item.attendees:
                body["attendees"] = [{"email": item.owner, "responseStatus": "accepted"}] + [
                    {"email": a, "responseStatus": "accepted"} for a in item.attendees
                ]
            if item.rrule:
                body["recurrence"] = [f"RRULE:{item.rrule}"]
            with self.google.state.lock:
                cal = self.google.state.calendars[item.owner]
                body["id"] = f"ev{self.events:09d}"
                self.google.state._stamp(body, item.owner, item.owner)
                cal.events[body["id"]] = body
                self.google.state._touch(cal, body["id"])
            return str(body["id"])
        from agent.connectors.microsoft import format_dtz
        from tests.microsoft.fixtures import recurrence

        payload: dict[str, Any] = {
            "subject": item.title,
            "showAs": "busy",
            "start": format_dtz(item.start, zone),
            "end": format_dtz(item.end, zone),
            "attendees": [
                {"emailAddress": {"address": a, "name": a.split("@")[0]}, "type": "required"}
                for a in item.attendees
            ],
        }
        if item.rrule:
            payload["recurrence"] = recurrence(item.rrule, item.start, zone)
        with self.graph.lock:
            box = self.graph.mailboxes[item.owner]
            made = self.graph._create(box, payload, False)
        return str(made["id"])

    # --- what the benchmark asks -------------------------------------------------------

    def endpoints(self) -> dict[str, Any]:
        return {
            "google": dict(self.google.endpoints),
            "graph": {
                "url": self.graph.url,
                "tenant": self.graph.tenant,
                "client_id": self.graph.client_id,
                "secret": self.graph.client_secret,
            },
            "key": self.key,
            "events": self.events,
        }

    def counts(self) -> dict[str, Any]:
        with self.google.state.lock:
            google = dict(self.google.state.counts)
            google["http"] = self.google.http_requests
            google["ms"] = round(self.google.busy_seconds * 1000)
        with self.graph.lock:
            graph = dict(self.graph.counts)
            graph["http"] = self.graph.http_requests
            graph["ms"] = round(self.graph.busy_seconds * 1000)
        return {"google": google, "graph": graph}

    def lapse(self, relationships: Sequence[int]) -> int:
        """Cancel the recent deep dive of ``relationships`` (both copies); return how many
        calendars changed."""
        touched = set()
        for n in relationships:
            for account, owner, ident in self.dives[n][2:]:
                touched.add(owner)
                if account == GOOGLE:
                    with self.google.state.lock:
                        cal = self.google.state.calendars[owner]
                        cal.events[ident]["status"] = "cancelled"
                        self.google.state._touch(cal, ident)
                else:
                    with self.graph.lock:
                        box = self.graph.mailboxes[owner]
                        ev = box.events[ident]
                        ev.body["isCancelled"] = True
                        self.graph._touch(box, ev)
        return len(touched)

    def close(self) -> None:
        self.stack.close()


def _serve(spec: Spec, latency: float, workdir: str, conn: Connection) -> None:
    """The child process: build the servers, answer the parent's calls until 'close'."""
    fake = FakeOrg(spec, latency, Path(workdir))
    conn.send(fake.endpoints())
    try:
        while True:
            name, args = conn.recv()
            if name == "close":
                break
            conn.send(getattr(fake, name)(*args))
    finally:
        fake.close()
        conn.close()


class RemoteOrg:
    """A FakeOrg in a child process, with the same calls."""

    def __init__(self, spec: Spec, latency: float, workdir: Path) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_serve, args=(spec, latency, str(workdir), child), daemon=True
        )
        self.process.start()
        child.close()
        self._endpoints = self.conn.recv()

    def endpoints(self) -> dict[str, Any]:
        return dict(self._endpoints)

    def _call(self, name: str, *args: Any) -> Any:
        self.conn.send((name, args))
        return self.conn.recv()

    def counts(self) -> dict[str, Any]:
        return dict(self._call("counts"))

    def lapse(self, relationships: Sequence[int]) -> int:
        return int(self._call("lapse", list(relationships)))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(("close", ()))
        self.process.join(30)
        self.conn.close()


# --- measuring ----------------------------------------------------------------------


def rss_mb() -> float:
    """Resident memory now, in MB."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Counter[str]]:
    return {
        side: Counter({k: after[side].get(k, 0) - before[side].get(k, 0) for k in after[side]})
        for side in after
    }


def server_seconds(d: dict[str, Counter[str]]) -> float:
    """CPU time the fake servers spent answering (in their own process): the part of a
    wall time that Google or Microsoft would spend, not the agent."""
    return sum(d[side]["ms"] for side in d) / 1000


def requests(d: dict[str, Counter[str]]) -> int:
    """HTTP requests sent, token requests excluded (they come once an hour)."""
    return sum(d[side]["http"] - d[side].get("token", 0) - d[side].get("openid", 0) for side in d)


def token_requests(d: dict[str, Counter[str]]) -> int:
    """Token requests sent (Google's token endpoint, Microsoft's sign-in)."""
    return sum(d[side].get("token", 0) for side in d)


def api_calls(d: dict[str, Counter[str]]) -> int:
    """API calls, each part of a batch counted (token and batch envelopes excluded)."""
    skip = {"http", "ms", "token", "openid", "batch"}
    return sum(n for side in d for k, n in d[side].items() if k not in skip)


def freebusy_calls(d: dict[str, Counter[str]]) -> int:
    return d["google"].get("calendar.freebusy.query", 0) + d["graph"].get("getSchedule", 0)


class Phases:
    """Wall time of each step of a tick, by wrapping the steps of the engine's tick."""

    def __init__(self) -> None:
        self.times: Counter[str] = Counter()

    @contextlib.contextmanager
    def installed(self) -> Iterator[None]:
        from agent.tick.engine import _Tick

        saved = {name: getattr(_Tick, name) for name in ("sync", "assess", "plan", "act")}

        def timed(name: str, step: Callable[..., None]) -> Callable[..., None]:
            @functools.wraps(step)
            def run(tick: Any, *args: Any) -> None:
                t = time.perf_counter()
                try:
                    step(tick, *args)
                finally:
                    self.times[name] += time.perf_counter() - t

            return run

        for name, step in saved.items():
            setattr(_Tick, name, timed(name, step))
        try:
            yield
        finally:
            for name, step in saved.items():
                setattr(_Tick, name, step)


@dataclass
class Run:
    size: int
    latency: float
    figures: dict[str, Any] = field(default_factory=dict)

    def put(self, name: str, value: Any) -> None:
        self.figures[name] = value
        if isinstance(value, float):
            value = round(value, 3)
        print(f"  {name:<42} {value}", flush=True)


def _engine(path: Path) -> Any:
    from agent.core.retry import RetryPolicy
    from agent.settings import config
    from agent.tick.engine import Engine

    return Engine(config.load(path), retry=RetryPolicy.none())


def tick(
    engine: Any, fake: Any, when: datetime
) -> tuple[float, dict[str, Counter[str]], Any, Phases]:
    before = fake.counts()
    phases = Phases()
    with phases.installed():
        t = time.perf_counter()
        report = engine.tick(when)
        wall = time.perf_counter() - t
    if report.errors:
        raise RuntimeError(f"tick at {when} failed: {report.errors[:3]}")
    return wall, delta(before, fake.counts()), report, phases


def slot_search(org: Org, limit: int = 1000, blocks: int = 200) -> tuple[float, float, float]:
    """Median and 99th percentile of find_slot per relationship with ``blocks`` busy
    blocks on each side (milliseconds); the pure function, no I/O."""
    from agent.core.model import Interval, Person, Span, WorkingHours
    from agent.rules import slots

    hours = WorkingHours({d: (Span(clock(9), clock(17)),) for d in range(5)})
    rng = random.Random(org.spec.seed)
    times = []
    earliest = NOW + timedelta(days=2)
    latest = NOW + timedelta(days=16)
    for employee, partner in org.pairs[:limit]:
        e, p = org.people[employee], org.people[partner]
        a = Person(e.email, e.name, e.zone, hours, account=e.account)
        b = Person(p.email, p.name, p.zone, hours, account=p.account)
        busy = []
        for _ in range(2):
            side = []
            for _ in range(blocks):
                start = earliest + timedelta(minutes=15 * rng.randrange(14 * 96))
                side.append(Interval(start, start + timedelta(minutes=rng.choice((30, 60)))))
            busy.append(side)
        request = slots.SlotRequest(
            employee=a, partner=b, duration=timedelta(hours=1), earliest=earliest, latest=latest
        )
        t = time.perf_counter()
        slots.find_slot(request, busy[0], busy[1])
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return (
        statistics.mean(times),
        statistics.median(times),
        times[min(len(times) - 1, int(len(times) * 0.99))],
    )


def run_size(
    size: int,
    *,
    latency: float,
    quiet_ticks: int,
    concurrency: int,
    naive: bool,
    inline: bool,
    spec_over: dict[str, Any] | None = None,
) -> Run:
    spec = Spec(size, **(spec_over or {}))
    run = Run(size, latency)
    org = build_org(spec)
    calendars = len(org.people)
    print(
        f"\n== {size} relationships, {calendars} calendars, latency {latency * 1000:.0f} ms",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="cadence-bench-") as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        fake: Any = FakeOrg(spec, latency, work) if inline else RemoteOrg(spec, latency, work)
        try:
            ends = fake.endpoints()
            run.put("calendars", calendars)
            run.put("events generated (series counted once)", ends["events"])
            run.put("generation s", time.perf_counter() - t)
            path = write_workspace(work, org, ends, concurrency)
            measure(run, org, fake, path, quiet_ticks, naive)
        finally:
            fake.close()
    return run


def measure(run: Run, org: Org, fake: Any, path: Path, quiet_ticks: int, naive: bool) -> None:
    calendars = len(org.people)
    when = NOW
    with _engine(path) as engine:
        wall, d, report, phases = tick(engine, fake, when)
        rows = engine.store.db.execute("SELECT count(*) FROM events").fetchone()[0]
        run.put("first sync: tick wall s", wall)
        run.put("first sync: sync step s", phases.times["sync"])
        run.put("first sync: requests", requests(d))
        run.put("first sync: token requests", token_requests(d))
        run.put("first sync: fake servers' own s", server_seconds(d))
        run.put("first sync: events stored", rows)
        run.put("first sync: bookings", report.count("book"))
        run.put("first sync: peak RSS MB", peak_mb())
        walls, syncs, per_cal, rss, tokens = [], [], [], [], []
        for n in range(quiet_ticks):
            when = NOW + timedelta(minutes=10 * (n + 1))
            wall, d, report, phases = tick(engine, fake, when)
            gc.collect()
            walls.append(wall)
            syncs.append(phases.times["sync"])
            per_cal.append(requests(d) / calendars)
            tokens.append(token_requests(d))
            rss.append(rss_mb())
        run.put("quiet tick: wall s (median)", statistics.median(walls))
        run.put("quiet tick: sync step s (median)", statistics.median(syncs))
        run.put(
            "quiet tick: other steps s (median)",
            statistics.median(walls) - statistics.median(syncs),
        )
        run.put("quiet tick: requests per calendar", max(per_cal))
        run.put("quiet ticks: token requests in all", sum(tokens))
        run.put("quiet tick: fake servers' own s", server_seconds(d))
        run.put("quiet tick: free/busy requests", freebusy_calls(d))
        run.put("quiet ticks: RSS MB first, last", (round(rss[0], 1), round(rss[-1], 1)))
        run.put("quiet ticks: RSS growth MB", rss[-1] - rss[0])
        # the sweep: 10 % of the relationships lapse at once
        lapsing = org.lapsing
        changed = fake.lapse(lapsing)
        when += timedelta(minutes=10)
        wall, d, report, phases = tick(engine, fake, when)
        booked = report.count("book")
        run.put("sweep: lapsed relationships", len(lapsing))
        run.put("sweep: calendars changed", changed)
        run.put("sweep: bookings made", booked)
        run.put("sweep: tick wall s", wall)
        run.put(
            "sweep: sync / plan / act step s",
            (
                round(phases.times["sync"], 2),
                round(phases.times["plan"], 2),
                round(phases.times["act"], 2),
            ),
        )
        run.put("sweep: requests", requests(d))
        run.put("sweep: fake servers' own s", server_seconds(d))
        run.put("sweep: free/busy queries", freebusy_calls(d))
        people_fb = len({p for i in lapsing for p in org.pairs[i]})
        run.put("sweep: people asked for free/busy", people_fb)
        run.put(
            "sweep: bookings per second (plan and act)",
            booked / max(phases.times["plan"] + phases.times["act"], 1e-9),
        )
        run.put("peak RSS MB", peak_mb())
        fb_fast = busy_time(engine, org, lapsing, fake, per_pair=False)
        run.put("free/busy of the lapsed, batched: s, requests, fake s", fb_fast)
    mean, median, p99 = slot_search(org)
    run.put("slot search ms per relationship (mean)", mean)
    run.put("slot search ms per relationship (median)", median)
    run.put("slot search ms per relationship (p99)", p99)
    if not naive:
        return
    # the naive baseline: a fresh store, every calendar listed in full every tick, one at
    # a time; free/busy one request per pair
    naive_path = path.with_name("naive.yaml")
    text = path.read_text().replace("store: cadence.db", "store: naive.db")
    naive_path.write_text(re.sub(r"sync: \{concurrency: \d+\}", "sync: {concurrency: 1}", text))
    with _engine(naive_path) as engine:
        for email in org.people:
            engine.store.forget_cursor(email)
        wall, d, report, phases = tick(engine, fake, when + timedelta(minutes=10))
        run.put("naive quiet tick: wall s", wall)
        run.put("naive quiet tick: sync step s", phases.times["sync"])
        run.put("naive quiet tick: requests per calendar", requests(d) / calendars)
        fb_naive = busy_time(engine, org, org.lapsing, fake, per_pair=True)
        run.put("naive free/busy of the lapsed: s, requests, fake s", fb_naive)
    run.put("quiet tick speed-up (wall)", wall / run.figures["quiet tick: wall s (median)"])
    run.put(
        "quiet tick speed-up (sync step)",
        phases.times["sync"] / max(run.figures["quiet tick: sync step s (median)"], 1e-9),
    )
    run.put("free/busy speed-up", fb_naive[0] / max(fb_fast[0], 1e-9))


def busy_time(
    engine: Any, org: Org, lapsing: Sequence[int], fake: Any, *, per_pair: bool
) -> tuple[float, int, float]:
    """Free/busy of the lapsed relationships' people over the booking range: batched per
    account as the engine asks, or one request per pair, one at a time."""
    from agent.core.model import Interval

    span = Interval(NOW + timedelta(days=1), NOW + timedelta(days=18))
    people = engine.settings.people
    before = fake.counts()
    t = time.perf_counter()
    if per_pair:
        for n in lapsing:
            e, p = (people[x] for x in org.pairs[n])
            calendar, _ = engine.connection(e.account)
            calendar.busy([e, p], span)
    else:
        by_account: dict[str, list[Any]] = {}
        for n in lapsing:
            for x in org.pairs[n]:
                if people[x] not in by_account.setdefault(people[x].account, []):
                    by_account[people[x].account].append(people[x])
        for account, members in by_account.items():
            calendar, _ = engine.connection(account)
            calendar.busy(members, span)
    wall = time.perf_counter() - t
    used = delta(before, fake.counts())
    return round(wall, 3), requests(used), round(server_seconds(used), 3)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--relationships", default="100,1000", help="sizes, comma-separated")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added per request")
    parser.add_argument("--quiet-ticks", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=8, help="sync.concurrency")
    parser.add_argument("--weeks", type=int, default=52, help="weeks of history")
    parser.add_argument("--no-naive", action="store_true", help="skip the naive baseline")
    parser.add_argument("--inline", action="store_true", help="servers in this process")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)
    runs = []
    for size in (int(s) for s in args.relationships.split(",")):
        runs.append(
            run_size(
                size,
                latency=args.latency,
                quiet_ticks=args.quiet_ticks,
                concurrency=args.concurrency,
                naive=not args.no_naive,
                inline=args.inline,
                spec_over={"weeks": args.weeks},
            )
        )
    if args.json:
        args.json.write_text(
            json.dumps([{"size": r.size, **r.figures} for r in runs], indent=1, default=str)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
