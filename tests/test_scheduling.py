"""Bookings people can trust: moves with guardrails, hand moves, leader load."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import icalendar
from typer.testing import CliRunner

from agent.app.cli import app
from agent.core.records import StoredBooking
from agent.formats import ical
from agent.settings import config
from agent.store.sqlite import Store
from agent.tick.engine import Engine, TickReport
from tests.conftest import NOW

ANA_BEN = "ana@acme.example/ben@acme.example"


def tick(settings: config.Settings, now: datetime) -> TickReport:
    with Engine(settings) as engine:
        return engine.tick(now)


def booking(settings: config.Settings, rel: str, series: str = "deep_dive") -> StoredBooking:
    store = Store(settings.store_at)
    try:
        return next(b for b in store.bookings(rel) if b.series == series)
    finally:
        store.close()


def edit(settings: config.Settings, email: str, key: str, change: Callable[[Any], None]) -> None:
    path = settings.base / "calendars" / f"{email}.ics"
    cal = icalendar.Calendar.from_ical(path.read_bytes())
    for comp in cal.walk("VEVENT"):
        if str(comp.get("X-CADENCE-KEY", "")) == key:
            change(comp)
    path.write_bytes(cal.to_ical())


def decline(who: str) -> Callable[[Any], None]:
    def change(comp: Any) -> None:
        for attendee in ical.as_list(comp.get("ATTENDEE")):
            if str(attendee).lower() == f"mailto:{who}":
                attendee.params["PARTSTAT"] = "DECLINED"

    return change


def ours(settings: config.Settings, email: str, key: str) -> list[Any]:
    path = settings.base / "calendars" / f"{email}.ics"
    cal = icalendar.Calendar.from_ical(path.read_bytes())
    return [c for c in cal.walk("VEVENT") if str(c.get("X-CADENCE-KEY", "")) == key]


def test_a_declined_meeting_is_moved_once_then_the_employee_is_asked(
    settings: config.Settings,
) -> None:
    tick(settings, NOW)
    first = booking(settings, ANA_BEN)
    key = first.key
    for email in ("ana@acme.example", "ben@acme.example"):
        edit(settings, email, key, decline("ben@acme.example"))

    report = tick(settings, NOW + timedelta(hours=1))
    moves = [a for a in report.actions if a.kind == "move" and a.relationship == ANA_BEN]
    assert [a.outcome for a in moves] == ["done"]
    assert "declined by ben@acme.example" in moves[0].detail
    moved = booking(settings, ANA_BEN)
    assert moved.moves == 1 and moved.start != first.start
    for email in ("ana@acme.example", "ben@acme.example"):
        copies = ours(settings, email, key)
        assert len(copies) == 1  # the same event, moved: never a second one
        assert int(copies[0]["SEQUENCE"]) == 1
        assert copies[0].decoded("DTSTART") == moved.start
    # the provider sends no invitations itself, so an updated iTIP request goes out
    assert any(
        a.kind == "invite" and a.relationship == ANA_BEN and a.outcome == "done"
        for a in report.actions
    )
    assert list((settings.base / "outbox").glob(f"{key}-invite1.eml"))

    for email in ("ana@acme.example", "ben@acme.example"):
        edit(settings, email, key, decline("ben@acme.example"))
    report = tick(settings, NOW + timedelta(hours=2))
    asks = [a for a in report.actions if a.kind == "ask" and a.relationship == ANA_BEN]
    assert len(asks) == 1 and asks[0].data["to"] == ["ana@acme.example"]
    raw = (settings.base / "outbox" / f"{key}-ask1.eml").read_bytes()
    ask = message_from_bytes(raw, policy=policy.default)
    assert isinstance(ask, EmailMessage)
    # Ana reads Brazilian Portuguese: her pick-a-time mail is in it, times in her zone
    assert str(ask["Subject"]).startswith("Escolha um horário")
    plain = ask.get_body(preferencelist=("plain",))
    assert plain is not None
    text = str(plain.get_content())
    assert text.count("America/Sao_Paulo") >= 3
    assert booking(settings, ANA_BEN).moves == 1
    again = tick(settings, NOW + timedelta(hours=3))
    assert not [a for a in again.actions if a.kind in ("ask", "move") and a.outcome == "done"]


def test_no_move_within_the_notice_period(settings: config.Settings) -> None:
    tick(settings, NOW)
    row = booking(settings, ANA_BEN)
    for email in ("ana@acme.example", "ben@acme.example"):
        edit(settings, email, row.key, decline("ben@acme.example"))
    start = row.start
    assert start is not None
    report = tick(settings, start - timedelta(hours=30))
    held = [a for a in report.actions if a.kind == "move" and a.relationship == ANA_BEN]
    assert held and held[0].outcome == "held-back"
    assert "less than 2d notice" in held[0].detail
    assert booking(settings, ANA_BEN).start == row.start


def test_a_meeting_moved_by_hand_is_accepted(settings: config.Settings) -> None:
    tick(settings, NOW)
    row = booking(settings, ANA_BEN)

    def later(comp: Any) -> None:
        start, end = comp.decoded("DTSTART"), comp.decoded("DTEND")
        comp["DTSTART"] = icalendar.vDDDTypes(start + timedelta(days=1))
        comp["DTEND"] = icalendar.vDDDTypes(end + timedelta(days=1))

    for email in ("ana@acme.example", "ben@acme.example"):
        edit(settings, email, row.key, later)
    report = tick(settings, NOW + timedelta(hours=1))
    accepted = [a for a in report.actions if a.kind == "accept" and a.relationship == ANA_BEN]
    assert accepted and "moved by hand" in accepted[0].detail
    after = booking(settings, ANA_BEN)
    assert after.start != row.start
    quiet = tick(settings, NOW + timedelta(hours=2))
    assert not [
        a
        for a in quiet.actions
        if a.relationship == ANA_BEN and a.kind in ("move", "accept", "book")
    ]


def test_a_deleted_meeting_is_booked_anew(settings: config.Settings) -> None:
    tick(settings, NOW)
    row = booking(settings, ANA_BEN)
    for email in ("ana@acme.example", "ben@acme.example"):
        path = settings.base / "calendars" / f"{email}.ics"
        cal = icalendar.Calendar.from_ical(path.read_bytes())
        cal.subcomponents = [
            c for c in cal.subcomponents if str(c.get("X-CADENCE-KEY", "")) != row.key
        ]
        path.write_bytes(cal.to_ical())
    report = tick(settings, NOW + timedelta(hours=1))
    assert [
        a.outcome for a in report.actions if a.kind == "book" and a.relationship == ANA_BEN
    ] == ["done"]
    assert len(ours(settings, "ben@acme.example", row.key)) == 1
    assert booking(settings, ANA_BEN).moves == 1


def test_a_new_out_of_office_moves_the_meeting(settings: config.Settings) -> None:
    tick(settings, NOW)
    row = booking(settings, ANA_BEN)
    assert row.start is not None
    day = row.start.astimezone(settings.people["ben@acme.example"].zone).date()
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
    report = tick(settings, NOW + timedelta(hours=1))
    moves = [a for a in report.actions if a.kind == "move" and a.relationship == ANA_BEN]
    assert [a.outcome for a in moves] == ["done"]
    assert "Ben out of office ('Out sick')" in moves[0].detail
    new_start = booking(settings, ANA_BEN).start
    assert new_start is not None
    assert new_start.astimezone(settings.people["ben@acme.example"].zone).date() != day


def _team(tmp_path: Path, reports: int, extra: str = "") -> Path:
    people = ["  - {email: lead@acme.example, name: Lee Lead, timezone: Europe/Berlin}"]
    rels = []
    for i in range(reports):
        people.append(
            f"  - {{email: r{i}@acme.example, name: Report {i}, timezone: Europe/Berlin}}"
        )
        rels.append(
            f"  - {{employee: r{i}@acme.example, partner: lead@acme.example, program: cycle}}"
        )
    (tmp_path / "cal").mkdir()
    for i in range(reports):
        # report i last met the lead (100 + i) days ago: all lapsed, r{reports-1} the most
        cal = icalendar.Calendar()
        cal.add("prodid", "-//t//EN")
        cal.add("version", "2.0")
        ev = icalendar.Event()
        ev.add("uid", f"old-{i}")
        ev.add("dtstamp", NOW)
        start = (NOW - timedelta(days=100 + i)).replace(hour=9, minute=0)
        ev.add("dtstart", start)
        ev.add("dtend", start + timedelta(hours=1))
        ev.add("summary", "Deep dive")
        ev.add("organizer", f"mailto:r{i}@acme.example")
        ev.add("attendee", "mailto:lead@acme.example", parameters={"PARTSTAT": "ACCEPTED"})
        ev.add("attendee", f"mailto:r{i}@acme.example", parameters={"PARTSTAT": "ACCEPTED"})
        cal.add_component(ev)
        (tmp_path / "cal" / f"r{i}@acme.example.ics").write_bytes(cal.to_ical())
    text = f"""
timezone: Europe/Berlin
store: db.sqlite
accounts: {{local: {{provider: local, calendars: cal, outbox: out}}}}
people:
{chr(10).join(people)}
relationships:
{chr(10).join(rels)}
programs:
  cycle:
    series:
      deep_dive: {{every: 90d, duration: 60m, title: "Deep dive", match: '(?i)deep dive'}}
    booking: {{horizon: 14d, lead_time: 2d, buffer: 10m{extra}}}
"""
    path = tmp_path / "cadence.yaml"
    path.write_text(text)
    return path


def test_a_leaders_meetings_spread_under_the_limits(tmp_path: Path) -> None:
    settings = config.load(_team(tmp_path, 20))
    report = tick(settings, NOW)
    booked = [a for a in report.actions if a.kind == "book" and a.outcome == "done"]
    refused = [a for a in report.actions if a.kind == "book" and a.outcome == "no-slot"]
    zone = settings.people["lead@acme.example"].zone
    starts = [
        datetime.fromisoformat(a.data["start"].replace("Z", "+00:00")).astimezone(zone)
        for a in booked
    ]
    per_day = Counter(s.date() for s in starts)
    per_week = Counter(s.date().isocalendar()[:2] for s in starts)
    assert max(per_day.values()) <= 2 and max(per_week.values()) <= 5
    # the most overdue is booked first
    assert booked[0].relationship == "r19@acme.example/lead@acme.example"
    # the horizon touches three ISO weeks: at most 15 fit; the rest are reported
    assert len(per_week) == 3 and len(booked) == 15
    assert len(booked) + len(refused) == 20
    assert all("limits reached" in a.detail for a in refused)
    store = Store(settings.store_at)
    assert any("limits reached" in r["message"] for r in store.audit_rows(kind="not-booked"))
    store.close()


def test_limits_are_configurable_and_count_existing_meetings(tmp_path: Path) -> None:
    settings = config.load(_team(tmp_path, 3, ", max_per_day: 1"))
    report = tick(settings, NOW)
    zone = settings.people["lead@acme.example"].zone
    days = [
        datetime.fromisoformat(a.data["start"].replace("Z", "+00:00")).astimezone(zone).date()
        for a in report.actions
        if a.kind == "book" and a.outcome == "done"
    ]
    assert len(days) == 3 and len(set(days)) == 3


def test_unbookable_pairs_are_reported_with_the_reason(tmp_path: Path) -> None:
    path = _team(tmp_path, 1)
    text = (
        path.read_text()
        .replace(
            "{email: r0@acme.example, name: Report 0, timezone: Europe/Berlin}",
            "{email: r0@acme.example, name: Report 0, timezone: Pacific/Honolulu}",
        )
        .replace(
            "{email: lead@acme.example, name: Lee Lead, timezone: Europe/Berlin}",
            "{email: lead@acme.example, name: Lee Lead, timezone: Asia/Kolkata}",
        )
    )
    path.write_text(text)
    settings = config.load(path)
    report = tick(settings, NOW)
    refused = [a for a in report.actions if a.kind == "book"]
    assert refused[0].outcome == "no-slot" and "no common working hours" in refused[0].detail
    result = CliRunner().invoke(
        app, ["status", "--config", str(path), "--now", NOW.isoformat(), "--json"]
    )
    assert "no common working hours" in result.output
    result = CliRunner().invoke(app, ["log", "--config", str(path), "--kind", "not-booked"])
    assert "no common working hours" in result.output
    assert date.today()  # keep the import honest
