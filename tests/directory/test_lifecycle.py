"""A directory in action on the local provider: joiners, a manager change, a leaver, the
guard, export and forget, through the ``cadence`` command as an administrator runs it."""

from __future__ import annotations

import email
import json
from datetime import UTC, datetime, timedelta
from email import policy
from pathlib import Path

import icalendar
import pytest
from typer.testing import CliRunner

from agent.app.cli import app
from agent.store.sqlite import Store

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)  # a Monday
CONFIG = r"""timezone: Europe/Berlin
store: var/cadence.db
accounts:
  team: {provider: local, calendars: calendars, outbox: outbox}
defaults:
  working_hours: {mon-fri: "09:00-17:00"}
directory:
  source:
    kind: csv
    path: people.csv
    columns: {email: Email, name: Name, manager: Manager, timezone: Zone, country: Country}
    members: {column: Program, values: ["yes"]}
  program: development
  first_within: 30d
  plans: plans
programs:
  development:
    series:
      deep_dive:
        every: 90d
        duration: 60m
        title: "Development {{ stage | title }}: {{ employee.first_name }} & {{ partner.first_name }}"
        stages: [align, advance, amplify, advocate]
        match: '(?i)\b(align|advance|amplify|advocate)\b'
      check_in:
        every: 30d
        duration: 15m
        title: "Development check-in: {{ employee.first_name }} & {{ partner.first_name }}"
        skip_near: deep_dive
        match: '(?i)\bcheck-?in\b'
"""
HEADER = "Email,Name,Manager,Zone,Country,Program\n"
PEOPLE = {
    "boss": "Bo Boss,,Europe/Berlin,DE,no",
    "lea": "Lea Lead,boss@acme.example,Europe/Berlin,DE,yes",
    "max": "Max Lead,boss@acme.example,Europe/Berlin,DE,no",
    "ana": "Ana Alves,lea@acme.example,Europe/Berlin,DE,yes",
    "ben": "Ben Berg,lea@acme.example,America/New_York,US,yes",
}


def write_people(folder: Path, people: dict[str, str]) -> None:
    rows = "".join(f"{who}@acme.example,{rest}\n" for who, rest in people.items())
    (folder / "people.csv").write_text(HEADER + rows)


PLAN = """\
purpose: Grow into a staff engineer <script>alert(1)</script>
goals:
  - title: Lead the payments migration
actions:
  - title: Pair with the SRE team
share_with_new_leader: true
"""


@pytest.fixture
def org(tmp_path: Path) -> Path:
    (tmp_path / "calendars").mkdir()
    (tmp_path / "plans").mkdir()
    (tmp_path / "plans" / "ana@acme.example.yaml").write_text(PLAN)
    (tmp_path / "cadence.yaml").write_text(CONFIG)
    write_people(tmp_path, PEOPLE)
    return tmp_path


def cadence(folder: Path, *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(app, [*args, "--config", str(folder / "cadence.yaml")])
    assert result.exit_code == code, result.output
    return result.stdout


def mails(folder: Path) -> dict[str, email.message.EmailMessage]:
    out = {}
    for path in sorted((folder / "outbox").glob("*.eml")):
        msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        out[path.name] = msg  # type: ignore[assignment]
    return out


def bookings(folder: Path) -> list:  # type: ignore[type-arg]
    store = Store(folder / "var" / "cadence.db")
    try:
        return store.bookings()
    finally:
        store.close()


def event_status(folder: Path, owner: str, key: str) -> str:
    cal = icalendar.Calendar.from_ical((folder / "calendars" / f"{owner}.ics").read_bytes())
    for ev in cal.walk("VEVENT"):
        if key in str(ev.get("X-CADENCE-KEY", "")) or key in str(ev.get("UID", "")):
            return str(ev.get("STATUS", "CONFIRMED"))
    raise AssertionError(f"no event {key} in {owner}'s calendar")


def at(days: int) -> str:
    return (T0 + timedelta(days=days)).isoformat()


def test_joiners_a_manager_change_and_a_leaver(org: Path) -> None:
    # diff shows and changes nothing
    out = cadence(org, "directory", "diff", "--now", at(0))
    assert "joins: ana@acme.example (leader lea@acme.example)" in out
    assert "0 -> 5 people; 5 joined" in out
    assert not (org / "var" / "cadence.db").exists() or not bookings(org)

    out = cadence(org, "directory", "sync", "--now", at(0))
    assert "applied" in out
    assert "5 -> 5 people; 0 joined" in cadence(org, "directory", "diff", "--now", at(0))

    # a new line's first meetings are due within 30 days, not at once
    out = cadence(org, "run", "--once", "--now", at(0))
    assert not bookings(org)
    out = cadence(org, "plan", "--now", at(1))
    assert "In all: 0 booking(s)" in out

    cadence(org, "run", "--once", "--now", at(17))
    booked = {b.relationship: b for b in bookings(org) if b.series == "deep_dive"}
    assert set(booked) == {
        "ana@acme.example/lea@acme.example",
        "ben@acme.example/lea@acme.example",
        "lea@acme.example/boss@acme.example",
    }
    for b in booked.values():
        assert b.stage == "align"
        assert T0 + timedelta(days=17) < b.start <= T0 + timedelta(days=30)

    # Ana moves to Max: her booked Align with Lea is cancelled, both are told, and Max
    # gets the hand-over
    write_people(org, {**PEOPLE, "ana": "Ana Alves,max@acme.example,Europe/Berlin,DE,yes"})
    out = cadence(org, "directory", "sync", "--now", at(18))
    assert "new leader: ana@acme.example: lea@acme.example -> max@acme.example" in out
    cadence(org, "run", "--once", "--now", at(18))
    old = next(b for b in bookings(org) if b.relationship == "ana@acme.example/lea@acme.example")
    assert old.status == "cancelled"
    assert event_status(org, "lea@acme.example", old.key) == "CANCELLED"
    sent = mails(org)
    ended = [m for m in sent.values() if "have ended" in str(m["Subject"])]
    handover = [m for m in sent.values() if str(m["Subject"]).startswith("Development hand-over")]
    assert len(ended) == 1 and len(handover) == 1
    assert {a.addr_spec for a in ended[0]["To"].addresses} == {
        "ana@acme.example",
        "lea@acme.example",
    }
    assert {a.addr_spec for a in handover[0]["To"].addresses} == {
        "max@acme.example",
        "ana@acme.example",
    }
    body = handover[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "keeps their development plan to themselves" not in body
    assert "Max," in body and "after Lea Lead" in body
    assert "Lead the payments migration" in body and "- [ ] Pair with the SRE team" in body
    html = handover[0].get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert "&lt;script&gt;" in html and "<script>" not in html

    # a rerun repeats nothing
    before = len(sent)
    cadence(org, "run", "--once", "--now", at(18))
    assert len(mails(org)) == before

    # Ben leaves: one of five is more than the guard's 10 %: held until confirmed
    people = dict(PEOPLE)
    del people["ben"]
    people["ana"] = "Ana Alves,max@acme.example,Europe/Berlin,DE,yes"
    write_people(org, people)
    out = cadence(org, "directory", "sync", "--now", at(19), code=1)
    assert "held: the directory read returned 4 people, 5 last time" in out
    ben = next(
        b
        for b in bookings(org)
        if b.relationship == "ben@acme.example/lea@acme.example" and b.series == "deep_dive"
    )
    assert ben.status == "booked"
    out = cadence(org, "directory", "sync", "--now", at(19), "--confirm")
    assert "leaves: ben@acme.example" in out and "applied" in out
    before = set(mails(org))
    cadence(org, "run", "--once", "--now", at(19))
    gone = [b for b in bookings(org) if b.relationship == "ben@acme.example/lea@acme.example"]
    ahead = [b for b in gone if b.start and b.start > T0 + timedelta(days=19)]
    assert ahead and all(b.status == "cancelled" for b in ahead)
    for name, msg in mails(org).items():  # nobody mails a person who has left
        if name not in before:
            assert "ben@acme.example" not in str(msg["To"])

    # the new line starts at Align, due 30 days after the change
    cadence(org, "run", "--once", "--now", at(36))
    new = [b for b in bookings(org) if b.relationship == "ana@acme.example/max@acme.example"]
    assert [b.stage for b in new if b.series == "deep_dive"] == ["align"]


def test_an_empty_read_is_held_and_cancels_nothing(org: Path) -> None:
    cadence(org, "directory", "sync", "--now", at(0))
    cadence(org, "run", "--once", "--now", at(17))
    write_people(org, {})
    out = cadence(org, "directory", "sync", "--now", at(18), code=1)
    assert "held:" in out and "nothing applied" in out
    out = cadence(org, "run", "--once", "--now", at(18))
    assert "directory read held" in out and "cadence directory sync --confirm" in out
    assert all(b.status == "booked" for b in bookings(org))
    store = Store(org / "var" / "cadence.db")
    try:
        assert store.audit_rows(kind="directory-held")
    finally:
        store.close()


def test_an_unreadable_source_keeps_the_last_read_and_says_so(org: Path) -> None:
    cadence(org, "directory", "sync", "--now", at(0))
    (org / "people.csv").unlink()
    result = CliRunner().invoke(
        app, ["directory", "sync", "--now", at(1), "--config", str(org / "cadence.yaml")]
    )
    assert result.exit_code == 1
    assert "error: directory read failed: directory file" in result.output
    assert "Traceback" not in result.output
    out = cadence(org, "run", "--once", "--now", at(17))
    assert "directory read failed" in out
    assert {b.relationship for b in bookings(org)} >= {"ana@acme.example/lea@acme.example"}


def test_export_and_forget(org: Path) -> None:
    cadence(org, "directory", "sync", "--now", at(0))
    cadence(org, "run", "--once", "--now", at(17))
    data = json.loads(cadence(org, "export", "ana@acme.example"))
    assert data["email"] == "ana@acme.example"
    assert data["store"]["directory_people"] and data["store"]["lines"]
    assert data["store"]["bookings"]
    out = cadence(org, "forget", "ana@acme.example", "--yes", "--now", at(18))
    assert "erased" in out
    data = json.loads(cadence(org, "export", "ana@acme.example"))
    assert data["forgotten_at"] is not None
    assert not any(data["store"].values())
    # the directory still lists her, but she stays forgotten
    out = cadence(org, "directory", "diff", "--now", at(19))
    assert "ana@acme.example" not in out
    store = Store(org / "var" / "cadence.db")
    try:
        rows = list(store.db.query("SELECT * FROM tombstones"))
    finally:
        store.close()
    assert rows == [{"email": "ana@acme.example", "forgotten_at": rows[0]["forgotten_at"]}]


def test_history_stays_with_the_employee_under_both_leaders(org: Path) -> None:
    cadence(org, "directory", "sync", "--now", at(0))
    cadence(org, "run", "--once", "--now", at(17))
    align = next(
        b
        for b in bookings(org)
        if b.relationship == "ana@acme.example/lea@acme.example" and b.series == "deep_dive"
    )
    after = (align.end + timedelta(hours=3)).isoformat()
    cadence(org, "run", "--once", "--now", after)  # held: its recap goes out
    write_people(org, {**PEOPLE, "ana": "Ana Alves,max@acme.example,Europe/Berlin,DE,yes"})
    cadence(org, "directory", "sync", "--now", after)
    cadence(org, "run", "--once", "--now", after)
    status = cadence(org, "status", "--now", after)
    assert "ana@acme.example/max@acme.example " in status  # the directory's line
    assert "ana@acme.example/lea@acme.example " not in status  # ended
    packet = cadence(
        org, "review-packet", "ana@acme.example", "--since", "2026-01-01", "--now", after
    )
    assert "Align" in packet and "Lea Lead" in packet
    hand = [m for m in mails(org).values() if str(m["Subject"]).startswith("Development hand-over")]
    text = hand[0].get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Last development conversation: Align" in text


def test_a_leavers_data_is_erased_after_the_retention(org: Path) -> None:
    text = (org / "cadence.yaml").read_text()
    (org / "cadence.yaml").write_text(
        text.replace("first_within: 30d", "first_within: 30d\n  retention: 10d")
    )
    cadence(org, "directory", "sync", "--now", at(0))
    cadence(org, "run", "--once", "--now", at(17))
    people = {k: v for k, v in PEOPLE.items() if k != "ben"}
    write_people(org, people)
    cadence(org, "directory", "sync", "--now", at(18), "--confirm")
    assert json.loads(cadence(org, "export", "ben@acme.example"))["store"]["bookings"]
    cadence(org, "directory", "sync", "--now", at(27))
    assert json.loads(cadence(org, "export", "ben@acme.example"))["store"]["bookings"]
    out = cadence(org, "directory", "sync", "--now", at(29))
    assert "erased after retention: 1" in out
    data = json.loads(cadence(org, "export", "ben@acme.example"))
    assert data["forgotten_at"] and not any(data["store"].values())
    assert json.loads(cadence(org, "export", "ana@acme.example"))["store"]["bookings"]


def test_mentoring_pairs_come_from_a_csv(org: Path) -> None:
    text = (org / "cadence.yaml").read_text()
    text = text.replace(
        "  plans: plans\n", "  plans: plans\n  relationships: {path: mentoring.csv}\n"
    )
    text += """
  mentoring:
    series:
      one_on_one:
        every: 30d
        duration: 30m
        title: "Mentoring: {{ employee.first_name }} & {{ partner.first_name }}"
        match: '(?i)\\bmentoring\\b'
"""
    (org / "cadence.yaml").write_text(text)
    (org / "mentoring.csv").write_text(
        "employee,partner,role,program\n"
        "ana@acme.example,max@acme.example,mentor,mentoring\n"
        "ben@acme.example,nobody@acme.example,mentor,mentoring\n"
    )
    cadence(org, "directory", "sync", "--now", at(0))
    cadence(org, "run", "--once", "--now", at(1))
    mentoring = [b for b in bookings(org) if b.series == "one_on_one"]
    assert [b.relationship for b in mentoring] == ["ana@acme.example/max@acme.example"]
    status = cadence(org, "status", "--now", at(1))
    assert "ben@acme.example/nobody@acme.example" not in status

    (org / "mentoring.csv").write_text(
        "employee,partner,role,program\nana@acme.example,max@acme.example,coach,nope\n"
    )
    result = CliRunner().invoke(app, ["check", "--config", str(org / "cadence.yaml")])
    assert result.exit_code == 2
    assert "mentoring.csv:2: role: 'coach' is not leader, mentor or peer" in result.output
    assert "mentoring.csv:2: program: no program named 'nope'" in result.output
