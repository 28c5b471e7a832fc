"""A sweep's events are made concurrently on Google (and Graph); the slots chosen, the
leader-load limits and the order of the records must be what one-by-one booking gives."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from agent.connectors.google import GoogleCalendar
from agent.store.sqlite import Store
from agent.tick.engine import Engine
from tests.google.harness import workspace
from tests.test_soak import NOW, _history, _org

_CREATE = GoogleCalendar.create


def _sweep(tmp: Path, concurrent: bool, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    with monkeypatch.context() as patch:
        if not concurrent:  # undeclared: the events are made one by one
            patch.delattr(GoogleCalendar, "concurrent_writes")
        return _sweep_once(tmp, monkeypatch)


def _sweep_once(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    threads: set[str] = set()

    def traced(self: GoogleCalendar, draft: Any) -> Any:
        threads.add(threading.current_thread().name)
        return _CREATE(self, draft)

    monkeypatch.setattr(GoogleCalendar, "create", traced)
    people, rest, leaders = _org(30)
    tmp.mkdir()
    with workspace(tmp, people=tuple(people), rest=rest) as ws:
        srv = ws.server
        _history(30, leaders, lambda o, t, a, b, who: srv.add_event(o, t, a, b, [who]))
        with Engine(ws.settings) as engine:
            report = engine.tick(NOW)
        assert report.ok, report.errors
        slots = {}
        for cal in srv.state.calendars.values():
            for ev in cal.events.values():
                private = (ev.get("extendedProperties") or {}).get("private") or {}
                if private and ev["organizer"]["email"] == cal.owner:
                    slots[ev["id"]] = (cal.owner, ev["start"]["dateTime"], ev["end"]["dateTime"])
        store = Store(ws.settings.store)
        try:
            audit = [(r["kind"], r["relationship"], r["message"]) for r in store.audit_rows()]
        finally:
            store.close()
        return {
            "slots": slots,
            "audit": audit,
            "booked": report.count("book"),
            "threads": threads,
        }


def test_concurrent_creates_book_what_one_by_one_books(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_by_one = _sweep(tmp_path / "serial", False, monkeypatch)
    together = _sweep(tmp_path / "concurrent", True, monkeypatch)
    assert one_by_one["booked"] >= 30  # every relationship books something at once
    assert together["slots"] == one_by_one["slots"]
    assert together["audit"] == one_by_one["audit"]
    assert one_by_one["threads"] == {"MainThread"}
    assert len(together["threads"]) > 1 and "MainThread" not in together["threads"]
