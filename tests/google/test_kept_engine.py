"""An engine kept from tick to tick patches what it keeps from each sync's changes
(Google's incremental sync) instead of reading every relationship of a changed calendar
again; it must act exactly as a fresh engine does on every tick."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from agent.store.sqlite import Store
from agent.tick.engine import Engine
from tests.google.harness import workspace
from tests.test_soak import NOW, _history, _org

SIZE = 20


def _ours(srv: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """The agent's events as (key, organizer, event), by key."""
    found = []
    for cal in srv.state.calendars.values():
        for ev in cal.events.values():
            private = (ev.get("extendedProperties") or {}).get("private") or {}
            if (
                private
                and ev["organizer"]["email"] == cal.owner
                and ev.get("status") != "cancelled"
            ):
                found.append((ev["id"], cal.owner, ev))
    return sorted(found, key=lambda f: f[0])


def _run(tmp: Path, kept: bool) -> dict[str, Any]:
    people, rest, leaders = _org(SIZE)
    tmp.mkdir()
    with workspace(tmp, people=tuple(people), rest=rest) as ws:
        srv = ws.server
        _history(SIZE, leaders, lambda o, t, a, b, who: srv.add_event(o, t, a, b, [who]))
        engine = Engine(ws.settings) if kept else None
        moments: list[Any] = []

        def tick(hours: float) -> None:
            when = NOW + timedelta(hours=hours)
            if engine is not None:
                report = engine.tick(when)
            else:
                with Engine(ws.settings) as fresh:
                    report = fresh.tick(when)
            assert report.ok, report.errors
            moments.append(sorted((a.kind, a.relationship, a.outcome) for a in report.actions))

        try:
            tick(0)
            first = _ours(srv)
            assert len(first) >= SIZE
            # a partner declines one booking
            key, organizer, ev = first[0]
            attendee = next(a["email"] for a in ev["attendees"] if a["email"] != organizer)
            srv.calendar.respond(attendee, key, "declined")
            tick(1)
            # a new busy block in front of another
            key, organizer, ev = first[1]
            start = ev["start"]["dateTime"]
            srv.add_event(organizer, "Dentist", _dt(start), _dt(start) + timedelta(hours=2))
            tick(2)
            # someone deletes a third from the organizer's calendar
            key, organizer, ev = first[2]
            with srv.state.lock:
                cal = srv.state.calendars[organizer]
                cal.events[key]["status"] = "cancelled"
                srv.state._touch(cal, key)
            tick(3)
            # a check-in held by hand yesterday for a fourth pair
            key, organizer, ev = first[3]
            who = next(a["email"] for a in ev["attendees"] if a["email"] != organizer)
            held = NOW - timedelta(days=1)
            srv.add_event(
                organizer, "Development check-in", held, held + timedelta(minutes=15), [who]
            )
            tick(4)
            tick(30)  # agendas and recaps
            tick(31)
        finally:
            if engine is not None:
                engine.close()
        store = Store(ws.settings.store)
        try:
            return {
                "moments": moments,
                "bookings": sorted((b.key, b.status, b.start, b.moves) for b in store.bookings()),
                # keys of mails about meetings made by hand hold the server's random UIDs
                "outbox": sorted(
                    (r["relationship"], r["kind"], r["subject"], r["status"])
                    for r in store.outbox_rows()
                ),
                "meetings": sorted(
                    (m["relationship"], m["series"], m["status"], m["start"], m["key"])
                    for m in store.meetings()
                ),
                "server": [(k, o, e["start"], e["end"]) for k, o, e in _ours(srv)],
            }
        finally:
            store.close()


def _dt(text: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(text)


@pytest.mark.slow
def test_a_kept_engine_acts_as_a_fresh_one_on_incremental_sync(tmp_path: Path) -> None:
    fresh = _run(tmp_path / "fresh", kept=False)
    kept = _run(tmp_path / "kept", kept=True)
    assert any(b[3] for b in fresh["bookings"]), "the scenario moved nothing"
    for name in ("moments", "bookings", "outbox", "meetings", "server"):
        assert kept[name] == fresh[name], name
