"""The organization benchmark in small (100 relationships, no latency, two weeks of
history): the request counts it relies on are deterministic, so they are checked here;
the times are only in the benchmark's own runs."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.core.model import Interval
from benchmarks import org as bench

SIZE = 100


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[bench.FakeOrg, Path]]:
    work = tmp_path_factory.mktemp("bench")
    spec = bench.Spec(SIZE, weeks=2, ahead=3)
    made = bench.FakeOrg(spec, 0.0, work)
    try:
        ends = made.endpoints()
        key = work / "google-key.json"
        key.write_text(json.dumps(ends["key"]))
        key.chmod(0o600)
        path = work / "cadence.yaml"
        path.write_text(bench.config_yaml(made.org, ends, concurrency=4))
        yield made, path
    finally:
        made.close()


@pytest.fixture
def engine(fake: tuple[bench.FakeOrg, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    made, path = fake
    monkeypatch.setenv(bench.SECRET_ENV, made.endpoints()["graph"]["secret"])
    with bench._engine(path) as running:
        yield running


def test_quiet_tick_one_request_per_calendar_and_sweep_batched(
    fake: tuple[bench.FakeOrg, Path], engine: Any
) -> None:
    made, _ = fake
    org = made.org
    calendars = len(org.people)
    assert calendars == 110  # 1.1 people per relationship

    _, first, report, _ = bench.tick(engine, made, bench.NOW)
    assert report.count("book") == 0
    graph = len([p for p in org.people.values() if p.account == bench.GRAPH])
    # one page per calendar (the largest pages), and each Graph mailbox's settings once
    # (its language: the config gives none; asked again after 30 days)
    assert bench.requests(first) == calendars + graph
    assert first["graph"]["mailboxSettings"] == graph

    for n in (1, 2):
        _, quiet, report, _ = bench.tick(engine, made, bench.NOW + timedelta(minutes=10 * n))
        assert bench.requests(quiet) / calendars <= 1.05
        assert quiet["google"]["calendar.events.list"] == len(
            [p for p in org.people.values() if p.account == bench.GOOGLE]
        )
        assert quiet["graph"]["delta"] == len(
            [p for p in org.people.values() if p.account == bench.GRAPH]
        )
        assert bench.freebusy_calls(quiet) == 0
        assert bench.token_requests(quiet) == 0  # the tokens of the first tick, reused
        assert not report.actions or {a.kind for a in report.actions} <= {"skip"}

    lapsing = org.lapsing
    changed = made.lapse(lapsing)
    _, sweep, report, _ = bench.tick(engine, made, bench.NOW + timedelta(minutes=30))
    assert report.count("book") == len(lapsing) == 10
    needed = {bench.GOOGLE: set(), bench.GRAPH: set()}
    for n in lapsing:
        for email in org.pairs[n]:
            needed[org.people[email].account].add(email)
    # one free/busy query per batch of people at the provider's limit, never one per pair
    assert sweep["google"]["calendar.freebusy.query"] == math.ceil(len(needed[bench.GOOGLE]) / 50)
    assert sweep["graph"]["getSchedule"] == math.ceil(len(needed[bench.GRAPH]) / 20)
    assert bench.freebusy_calls(sweep) < len(lapsing)
    # the sweep reads every calendar with one request, changed or not; on Google, find()
    # before each booking is a list too
    google_lapses = sum(1 for n in lapsing if org.people[org.pairs[n][0]].account == bench.GOOGLE)
    assert sweep["graph"]["delta"] == 55
    assert sweep["google"]["calendar.events.list"] == 55 + google_lapses
    assert changed == 2 * len(lapsing)


@pytest.mark.parametrize(("account", "limit"), [(bench.GOOGLE, 50), (bench.GRAPH, 20)])
def test_free_busy_batches_at_the_provider_limit(
    fake: tuple[bench.FakeOrg, Path], engine: Any, account: str, limit: int
) -> None:
    made, _ = fake
    people = [p for p in engine.settings.people.values() if p.account == account]
    assert len(people) == 55
    calendar, _ = engine.connection(account)
    span = Interval(bench.NOW + timedelta(days=1), bench.NOW + timedelta(days=18))
    before = made.counts()
    busy = calendar.busy(people, span)
    used = bench.delta(before, made.counts())
    assert {e.lower() for e in busy} == {p.email.lower() for p in people}
    assert any(busy.values())
    side = "google" if account == bench.GOOGLE else "graph"
    method = "calendar.freebusy.query" if account == bench.GOOGLE else "getSchedule"
    assert used[side][method] == math.ceil(len(people) / limit)  # 2 or 3, not 55
    assert bench.requests(used) == 1  # carried in one HTTP batch


def test_run_once_quiet_ticks_ask_for_no_token() -> None:
    """``benchmarks.once`` in small: each quiet ``run --once`` is a new process that
    reads every calendar once and asks for no token (the first run kept them)."""
    from benchmarks import once

    args = once.parser().parse_args(
        ["--relationships", "20", "--latency", "0", "--runs", "2", "--weeks", "2"]
    )
    figures = once.measure(args)
    assert figures["calendars"] == 22
    assert figures["first run: token requests"] == 22  # one per person, once
    assert figures["quiet run: token requests (each)"] == [0, 0]
    assert figures["quiet run: calendar requests (each)"] == [22, 22]


def test_the_web_benchmark_in_small(tmp_path: Path) -> None:
    from benchmarks import web

    path = web.build(tmp_path / "org", 40)
    times = web.measure(path, 3)
    assert set(times) == {"/team", "/admin/report"} and all(times.values())
