"""Retention of tick rows (``retention: {ticks: 90d}``), on both stores: old finished
ticks and their audit rows go, in bounded batches; nothing else does."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.core.errors import ConfigError
from agent.core.timestamps import to_store
from agent.settings import config
from agent.store import retention
from agent.store.database import Done
from agent.store.sqlite import Store
from tests.stores import use_store

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def tick(store: Store, days_ago: int, status: str = "ok") -> int:
    started = NOW - timedelta(days=days_ago)
    made = store.begin_tick(started, started)
    if status != "running":
        store.end_tick(made, status, {}, started + timedelta(seconds=5))
    store.audit(made, started, "assess", f"tick {made} assessed", "a@x/b@x", "check_in")
    store.audit(made, started, "book", f"tick {made} booked", "a@x/b@x", "check_in")
    return made


def test_old_finished_ticks_go_with_their_audit_and_nothing_else(store_at: Path | str) -> None:
    store = Store(store_at)
    try:
        old = [tick(store, 200 + n, status) for n, status in enumerate(["ok"] * 5 + ["held"])]
        interrupted = tick(store, 150, "interrupted")
        running = tick(store, 120, "running")
        recent = tick(store, 10)
        store.audit(None, NOW - timedelta(days=300), "web", "a page was read")
        store.save_booking(
            {"key": "k1", "relationship": "a@x/b@x", "series": "check_in", "status": "booked"},
            NOW - timedelta(days=300),
        )
        store.save_outbox(
            {"key": "m1", "meeting": "k1", "kind": "agenda", "status": "sent"},
            NOW - timedelta(days=300),
        )
        store.save_meetings("a@x/b@x", [], old[0])

        # two ticks a batch: four batches, each its own transactions
        assert retention.delete_ticks(store, NOW - timedelta(days=90), batch=2) == 7

        left = {t["id"] for t in store.ticks(limit=100)}
        assert left == {running, recent}
        audited = {r["tick"] for r in store.audit_rows(limit=100)}
        assert audited == {running, recent, None}
        assert not set(old) & audited and interrupted not in audited
        assert store.booking("k1") is not None and store.outbox("m1") is not None
        # a second pass finds nothing more
        assert retention.delete_ticks(store, NOW - timedelta(days=90)) == 0
    finally:
        store.close()


def test_prune_runs_when_configured_and_at_most_hourly(store_at: Path | str) -> None:
    store = Store(store_at)
    try:
        tick(store, 100)
        assert retention.prune(store, None, NOW) is None  # kept forever by default
        assert retention.prune(store, timedelta(days=90), NOW) == 1
        tick(store, 100)
        assert retention.prune(store, timedelta(days=90), NOW + timedelta(minutes=30)) is None
        assert retention.prune(store, timedelta(days=90), NOW + timedelta(hours=1)) == 1
    finally:
        store.close()


@pytest.mark.parametrize("marked", [False, True], ids=["first-look", "next-look"])
def test_of_two_processes_that_read_the_same_mark_one_prunes(
    store_at: Path | str, monkeypatch: pytest.MonkeyPatch, marked: bool
) -> None:
    first, second = Store(store_at), Store(store_at)
    try:
        if marked:  # a look two hours ago: due again
            assert retention.prune(first, timedelta(days=90), NOW - timedelta(hours=2)) == 0
        tick(first, 100)
        results: list[int | None] = []
        read = first.db.execute

        def racing(sql: str, params: Sequence[Any] = ()) -> Done:
            done = read(sql, params)
            if sql.startswith("SELECT value FROM meta"):
                # the other process looks just after this one read the mark
                results.append(retention.prune(second, timedelta(days=90), NOW))
            return done

        monkeypatch.setattr(first.db, "execute", racing)
        results.append(retention.prune(first, timedelta(days=90), NOW))
        assert results == [1, None]  # the second prunes; the first finds the mark moved
        mark = first.db.query("SELECT value FROM meta WHERE name = 'retention_at'")
        assert [r["value"] for r in mark] == [to_store(NOW)]
    finally:
        first.close()
        second.close()


def test_concurrent_prunes_prune_once(store_at: Path | str) -> None:
    stores = [Store(store_at) for _ in range(4)]
    try:
        tick(stores[0], 100)
        start = threading.Barrier(len(stores))
        results: list[int | None] = []

        def look(store: Store) -> None:
            start.wait()
            results.append(retention.prune(store, timedelta(days=90), NOW))

        threads = [threading.Thread(target=look, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results, key=lambda r: r is None) == [1] + [None] * (len(stores) - 1)
    finally:
        for store in stores:
            store.close()


def test_serve_prunes_after_its_tick(
    workspace: Path, store_at: Path | str, caplog: pytest.LogCaptureFixture
) -> None:
    from agent.app.service import Service

    use_store(workspace, store_at)
    workspace.write_text(workspace.read_text() + "retention: {ticks: 30d}\n")
    store = Store(store_at)
    try:
        old = tick(store, 400)  # ``started_at`` is the wall clock: long before today
    finally:
        store.close()
    Service(config.load(workspace)).tick()
    store = Store(store_at)
    try:
        ticks = store.ticks(limit=10)
        assert old not in {t["id"] for t in ticks} and len(ticks) == 1
        assert not store.audit_rows(tick=old)
    finally:
        store.close()


def test_retention_is_validated(workspace: Path) -> None:
    text = workspace.read_text()
    workspace.write_text(text + "retention: {ticks: 90d}\n")
    assert config.load(workspace).retention.ticks == timedelta(days=90)
    workspace.write_text(text)
    assert config.load(workspace).retention.ticks is None
    for wrong in ("12h", "soon", "{days: 3}"):
        workspace.write_text(text + f"retention: {{ticks: {wrong}}}\n")
        with pytest.raises(ConfigError) as caught:
            config.load(workspace)
        assert "retention.ticks" in str(caught.value)
    workspace.write_text(text + "retention: {events: 30d}\n")
    with pytest.raises(ConfigError):
        config.load(workspace)
