"""Hard calendars: the shared corpus of real-world ICS files and our own exports in the
shapes Google, Outlook, Apple and Thunderbird write. Each is read or, where invalid,
skipped with a reason; none stops a tick."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.connectors.local import LocalCalendar
from agent.core.model import Interval
from agent.settings import config
from agent.store.sqlite import Store
from agent.tick.engine import Engine
from tests.factories import at, person

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "ics"
OWN = Path(__file__).resolve().parent / "corpus"
WIDE = Interval(datetime(1995, 1, 1, tzinfo=UTC), datetime(2032, 1, 1, tzinfo=UTC))
ANA = person("ana", "Europe/Berlin")


def corpus_files() -> list[Path]:
    files = sorted(OWN.glob("*.ics"))
    if CORPUS.is_dir():
        files += sorted(CORPUS.glob("*.ics"))
    return files


@pytest.mark.parametrize("path", corpus_files(), ids=lambda p: p.name)
def test_every_calendar_is_read_or_skipped_with_a_reason(path: Path, tmp_path: Path) -> None:
    shutil.copy(path, tmp_path / "ana@acme.example.ics")
    changes = LocalCalendar(tmp_path, [ANA]).changes(ANA, None, WIDE)
    for event in changes.events:
        assert event.start.tzinfo is not None and event.start <= event.end
    for item in changes.skipped:
        assert item.reason


def events_of(name: str, window: Interval = WIDE) -> dict[str, list]:
    folder = Path(__import__("tempfile").mkdtemp())
    shutil.copy(OWN / name, folder / "ana@acme.example.ics")
    changes = LocalCalendar(folder, [ANA]).changes(ANA, None, window)
    out: dict[str, list] = {}
    for e in changes.events:
        out.setdefault(e.title, []).append(e)
    shutil.rmtree(folder)
    return out | {"__skipped__": list(changes.skipped)}


def test_outlook_export_with_windows_zone_names() -> None:
    found = events_of("outlook.ics")
    weekly = sorted(found["Team sync"], key=lambda e: e.start)
    # W. Europe Standard Time: 10:00 local is 09:00 UTC in winter, 08:00 in summer
    assert weekly[0].start == at("2026-03-02T09:00:00+00:00")
    assert at("2026-03-30T08:00:00+00:00") in [e.start for e in weekly]
    assert len(weekly) == 6  # COUNT=8 less two EXDATEs
    assert found["Vacation"][0].all_day and found["Vacation"][0].kind == "outOfOffice"
    assert found["Vacation"][0].end - found["Vacation"][0].start >= timedelta(days=4, hours=23)
    assert found["Tentative"][0].transparent is False


def test_google_export_with_overrides_and_cancelled_instances() -> None:
    found = events_of("google.ics")
    monthly = found["Monthly review"]
    # RRULE BYSETPOS=-1 (last weekday of the month), UNTIL; one instance cancelled, one moved
    starts = sorted(e.start for e in monthly if not e.cancelled)
    assert at("2026-01-30T15:00:00+00:00") in starts
    assert at("2026-02-27T15:00:00+00:00") not in starts
    moved = found["Monthly review (moved)"][0]
    assert moved.start == at("2026-03-30T14:00:00+00:00")
    assert found["Conference"][0].all_day
    assert len(found["Long description"][0].description) > 10_000


def test_apple_and_thunderbird_exports() -> None:
    apple = events_of("apple.ics")
    assert apple["Floating breakfast"][0].start == at(
        "2026-05-04T06:30:00+00:00"
    )  # Berlin wall clock
    assert apple["Quick call"][0].end - apple["Quick call"][0].start == timedelta(minutes=20)
    no_end = apple["No end"][0]
    assert no_end.start == no_end.end  # RFC 5545: a DTSTART without DTEND or DURATION lasts nothing
    tb = events_of("thunderbird.ics")
    future = sorted(e.start for e in tb["Series, then changed"])
    # RECURRENCE-ID;RANGE=THISANDFUTURE moves this and later instances (08:00 → 10:00 CEST)
    assert future == [
        at("2026-06-01T06:00:00+00:00"),
        at("2026-06-08T06:00:00+00:00"),
        at("2026-06-15T08:00:00+00:00"),
        at("2026-06-22T08:00:00+00:00"),
    ]
    assert [s.ref for s in tb["__skipped__"]] == ["broken-1@thunderbird"]


def test_a_tick_survives_a_broken_calendar(workspace: Path, tmp_path: Path) -> None:
    settings = config.load(workspace)
    target = settings.base / "calendars" / "chloe@acme.example.ics"
    target.write_text((OWN / "thunderbird.ics").read_text() + "\nthis is garbage\n")
    (settings.base / "calendars" / "dev@acme.example.ics").write_bytes(b"\xff\xfe not even text")
    store = Store(tmp_path / "t.db")
    with Engine(settings, store=store) as engine:
        report = engine.tick(at("2026-11-23T14:00:00+00:00"))
    assert report.count("book") >= 3
    skipped = store.audit_rows(kind="skipped")
    assert any("dev@acme.example" in r["message"] for r in skipped)
