"""An engine kept from tick to tick (as ``cadence serve`` keeps it) remembers what it read
so a quiet tick reads and writes little. Whatever it remembers, it must act exactly as a
fresh engine would: after edits to the calendars, after its own bookings and moves, and
after another process ticked on the same store."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import icalendar
import pytest

from agent.settings import config
from agent.store.sqlite import Store
from agent.tick.engine import Engine
from tests.conftest import NOW
from tests.stores import fresh_database, use_store
from tests.test_scheduling import ANA_BEN, booking, decline, edit

Step = Callable[[config.Settings], None]


def _out_sick(settings: config.Settings) -> None:
    row = booking(settings, ANA_BEN)
    start = row.start
    assert start is not None
    day = start.astimezone(settings.people["ben@acme.example"].zone).date()
    path = settings.base / "calendars" / "ben@acme.example.ics"
    cal = icalendar.Calendar.from_ical(path.read_bytes())
    oof = icalendar.Event()
    oof.add("uid", "sick-day")
    oof.add("dtstamp", NOW)
    oof.add("dtstart", day)
    oof.add("dtend", day + timedelta(days=1))
    oof.add("summary", "Out sick")
    oof.add("X-MICROSOFT-CDO-BUSYSTATUS", "OOF")
    cal.add_component(oof)
    path.write_bytes(cal.to_ical())


def _ben_declines(settings: config.Settings) -> None:
    edit(settings, "ben@acme.example", booking(settings, ANA_BEN).key, decline("ben@acme.example"))


def _nothing(settings: config.Settings) -> None:
    pass


#: (hours after NOW, what changes on the calendars before that tick)
SCENARIO: list[tuple[int, Step]] = [
    (0, _nothing),
    (1, _nothing),
    (2, _ben_declines),
    (3, _nothing),
    (4, _out_sick),
    (5, _nothing),
    (30, _nothing),  # agendas of the next day, held meetings become recaps
    (31, _nothing),
]


def _trace(settings: config.Settings) -> dict[str, Any]:
    store = Store(settings.store_at)
    try:
        return {
            "bookings": sorted((b.key, b.status, b.start, b.moves) for b in store.bookings()),
            "outbox": sorted((r["key"], r["status"]) for r in store.outbox_rows()),
            "audit": [
                (r["kind"], r["relationship"], r["series"], r["message"])
                for r in store.audit_rows(limit=100_000)
            ],
            "meetings": sorted(
                (m["relationship"], m["id"], m["status"], m["start"]) for m in store.meetings()
            ),
            "mails": sorted(p.name for p in (settings.base / "outbox").glob("*.eml")),
        }
    finally:
        store.close()


def _run(workspace: Path, kept: bool, other_process_at: int | None = None) -> dict[str, Any]:
    settings = config.load(workspace)
    engine: Engine | None = Engine(settings) if kept else None
    try:
        for i, (hours, change) in enumerate(SCENARIO):
            change(settings)
            when = NOW + timedelta(hours=hours)
            if engine is not None and i != other_process_at:
                report = engine.tick(when)
            else:
                with Engine(settings) as fresh:
                    report = fresh.tick(when)
            assert report.ok, report.errors
    finally:
        if engine is not None:
            engine.close()
    return _trace(settings)


def test_a_kept_engine_acts_as_a_fresh_one(workspace: Path, tmp_path: Path) -> None:
    _kept_as_fresh(workspace, tmp_path)


@pytest.mark.slow
def test_a_kept_engine_acts_as_a_fresh_one_on_postgresql(workspace: Path, tmp_path: Path) -> None:
    """The same, each run on a PostgreSQL database of its own: there the kept engine
    notices the other process's writes by the store's count of writes."""
    with contextlib.ExitStack() as stack:
        _kept_as_fresh(workspace, tmp_path, lambda: stack.enter_context(fresh_database()))


def _kept_as_fresh(
    workspace: Path, tmp_path: Path, database: Callable[[], str] | None = None
) -> None:
    copies = [tmp_path / f"run{i}" for i in range(3)]
    for folder in copies:
        shutil.copytree(workspace.parent, folder)
        if database is not None:
            use_store(folder / workspace.name, database())
    fresh = _run(copies[0] / workspace.name, kept=False)
    kept = _run(copies[1] / workspace.name, kept=True)
    # another process ticks between two of the kept engine's ticks, right after a move
    shared = _run(copies[2] / workspace.name, kept=True, other_process_at=3)
    assert any(b[3] for b in fresh["bookings"]), "the scenario moved nothing"
    assert any(k == "move" for k, *_ in fresh["audit"])
    for name in ("bookings", "outbox", "meetings", "mails"):
        assert kept[name] == fresh[name], name
        assert shared[name] == fresh[name], name
    # the audit differs in nothing but the tick numbers it does not show here
    assert kept["audit"] == fresh["audit"]
    assert shared["audit"] == fresh["audit"]


def test_a_quiet_tick_of_a_kept_engine_reads_no_calendar_from_the_store(
    settings: config.Settings, monkeypatch: Any
) -> None:
    with Engine(settings) as engine:
        engine.tick(NOW)
        engine.tick(NOW + timedelta(minutes=10))
        reads: list[Any] = []
        real = Store.events

        def counted(self: Store, *args: Any, **kwargs: Any) -> Any:
            reads.append(args)
            return real(self, *args, **kwargs)

        monkeypatch.setattr(Store, "events", counted)
        report = engine.tick(NOW + timedelta(minutes=20))
        assert report.ok and not [a for a in report.actions if a.outcome == "done"]
        assert reads == []
