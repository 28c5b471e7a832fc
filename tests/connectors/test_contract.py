"""The behaviour every provider promises, run against each provider's local server.

Backends live in tests/connectors/backends/, one module per provider. The first tests
drive a connector's Calendar and Mailer; the last ones drive whole ticks of the engine
over the same servers, so what a tick promises is written once for every provider.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from agent.core.errors import CursorExpired, PermanentError
from agent.core.model import EventDraft, Interval, OutgoingMail
from agent.core.retry import RetryPolicy
from agent.tick.engine import Engine, TickReport
from tests.connectors.backends import spoil_cursors

WINDOW = Interval(datetime(2026, 11, 1, tzinfo=UTC), datetime(2027, 1, 31, tzinfo=UTC))
START = datetime(2026, 12, 1, 14, 0, tzinfo=UTC)


def draft(b: Any, key: str = "0123456789abcdef0123456789abcdef") -> EventDraft:
    ana, ben = b.people[0], b.people[1]
    return EventDraft(
        key=key,
        organizer=ana,
        attendees=(ben,),
        title="Development Align: Ana & Ben",
        start=START,
        end=START + timedelta(hours=1),
        timezone=ana.timezone,
        series="deep_dive",
        stage="align",
        conference="none",
    )


def test_create_is_idempotent_on_the_key(backend: Any) -> None:
    first = backend.calendar.create(draft(backend))
    second = backend.calendar.create(draft(backend))
    assert first.key == second.key == draft(backend).key
    ana = backend.people[0]
    events = [e for e in backend.calendar.changes(ana, None, WINDOW).events if e.key == first.key]
    assert len(events) == 1
    assert events[0].start == START and events[0].end == START + timedelta(hours=1)
    assert {a.email for a in events[0].attendees} >= {backend.people[1].email}


def test_find_returns_the_agents_event_by_key(backend: Any) -> None:
    ana = backend.people[0]
    assert backend.calendar.find(ana, draft(backend).key) is None
    created = backend.calendar.create(draft(backend))
    found = backend.calendar.find(ana, created.key)
    assert found is not None and found.key == created.key and found.start == START


def test_changes_show_a_create_and_are_quiet_after(backend: Any) -> None:
    ana = backend.people[0]
    full = backend.calendar.changes(ana, None, WINDOW)
    assert full.full
    quiet = backend.calendar.changes(ana, full.cursor, WINDOW)
    assert not quiet.events and not quiet.removed
    backend.calendar.create(draft(backend))
    after = backend.calendar.changes(ana, quiet.cursor, WINDOW)
    assert any(e.key == draft(backend).key for e in after.events)
    settled = backend.calendar.changes(ana, after.cursor, WINDOW)
    assert not settled.events and not settled.removed


def test_busy_matches_events(backend: Any) -> None:
    ana, ben, cleo = backend.people[:3]
    backend.add_event(ben, "Lunch", START, START + timedelta(hours=1))
    backend.add_event(
        ben, "Free time", START + timedelta(hours=2), START + timedelta(hours=3), transparent=True
    )
    backend.add_event(
        ben,
        "Standup",
        START - timedelta(days=2),
        START - timedelta(days=2) + timedelta(minutes=15),
        rrule="FREQ=DAILY;COUNT=5",
    )
    busy = backend.calendar.busy(
        [ana, ben, cleo], Interval(START - timedelta(days=3), START + timedelta(days=3))
    )
    assert set(busy) >= {ana.email, ben.email, cleo.email}
    ben_busy = busy[ben.email]
    assert any(iv.start <= START and iv.end >= START + timedelta(hours=1) for iv in ben_busy)
    assert not any(
        iv.overlaps(Interval(START + timedelta(hours=2), START + timedelta(hours=3)))
        for iv in ben_busy
    )
    standups = [
        iv for iv in ben_busy if iv.duration <= timedelta(minutes=15) + timedelta(minutes=1)
    ]
    assert len(standups) >= 4
    assert busy[cleo.email] == []


def test_move_and_cancel_touch_only_own_events(backend: Any) -> None:
    ana = backend.people[0]
    created = backend.calendar.create(draft(backend))
    later = Interval(START + timedelta(days=1), START + timedelta(days=1, hours=1))
    moved = backend.calendar.move(ana, created, later)
    assert moved.start == later.start and moved.key == created.key
    assert moved.sequence > created.sequence
    backend.add_event(ana, "Someone else's", START, START + timedelta(hours=1))
    theirs = next(
        e for e in backend.calendar.changes(ana, None, WINDOW).events if e.title == "Someone else's"
    )
    with pytest.raises(PermanentError):
        backend.calendar.cancel(ana, theirs)
    with pytest.raises(PermanentError):
        backend.calendar.move(ana, theirs, later)
    backend.calendar.cancel(ana, moved)
    remaining = [
        e for e in backend.calendar.changes(ana, None, WINDOW).events if e.key == created.key
    ]
    assert all(e.cancelled for e in remaining)
    assert any(
        e.title == "Someone else's" and not e.cancelled
        for e in backend.calendar.changes(ana, None, WINDOW).events
    )


def test_mail_is_delivered_once_with_the_right_headers(backend: Any) -> None:
    ana, ben = backend.people[0], backend.people[1]
    mail = OutgoingMail(
        key="contract:agenda",
        sender=ana.email,
        sender_name=ana.name,
        to=(ana.email, ben.email),
        subject="Agenda: Development Align with Ben",
        text="plain text",
        html="<p>html</p>",
        message_id="<contract.agenda@cadence>",
        in_reply_to="<earlier@cadence>",
        references=("<earlier@cadence>",),
    )
    backend.mailer.send(mail)
    delivered = [m for m in backend.delivered() if m["Message-ID"] == "<contract.agenda@cadence>"]
    assert len(delivered) == 1
    msg = delivered[0]
    assert msg["Subject"] == "Agenda: Development Align with Ben"
    assert msg["From"].endswith(f"<{ana.email}>") and ben.email in msg["To"]
    assert msg["In-Reply-To"] == "<earlier@cadence>"
    assert msg.get_body(preferencelist=("plain",)) is not None
    assert msg.get_body(preferencelist=("html",)) is not None


def test_busy_merges_overlaps_and_costs_one_batch(backend: Any) -> None:
    ana, ben, cleo = backend.people[:3]
    backend.add_event(ana, "A", START, START + timedelta(hours=1))
    backend.add_event(ana, "B", START + timedelta(minutes=30), START + timedelta(hours=2))
    backend.add_event(
        ana, "Free", START + timedelta(hours=3), START + timedelta(hours=4), transparent=True
    )
    later = START + timedelta(days=1)
    backend.add_event(ben, "Dentist", later, later + timedelta(minutes=30))
    before = backend.counts()
    busy = backend.calendar.busy(
        [ana, ben, cleo], Interval(START - timedelta(days=1), START + timedelta(days=2))
    )
    merged = {
        ana.email: [Interval(START, START + timedelta(hours=2))],
        ben.email: [Interval(later, later + timedelta(minutes=30))],
        cleo.email: [],
    }
    if backend.merges_busy:
        assert busy == merged
    else:
        assert {who: union(times) for who, times in busy.items()} == merged
    if backend.wire:
        used = backend.counts()
        used.subtract(before)
        expected = backend.wire.busy(3)
        assert {op: used[op] for op in expected} == expected


def union(times: list[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for iv in sorted(times, key=lambda iv: iv.start):
        if out and iv.start <= out[-1].end:
            out[-1] = Interval(out[-1].start, max(out[-1].end, iv.end))
        else:
            out.append(iv)
    return out


def test_busy_of_an_unknown_calendar_is_an_error_not_free_time(backend: Any) -> None:
    stranger = backend.stranger()
    window = Interval(START, START + timedelta(days=1))
    if backend.unknown_mailbox is None:
        assert backend.calendar.busy([*backend.people, stranger], window)[stranger.email] == []
        return
    ana = backend.people[0]
    backend.add_event(ana, "Lunch", START, START + timedelta(hours=1))
    busy = backend.calendar.busy([*backend.people, stranger], window)
    assert stranger.email not in busy  # unknown time is not free time
    assert re.search(backend.unknown_mailbox, busy.failed[stranger.email])
    assert stranger.email in busy.failed[stranger.email]
    # the error is the stranger's alone: everyone else's free/busy was read
    assert set(busy) == {p.email for p in backend.people} and not set(busy.failed) - {
        stranger.email
    }
    assert union(busy[ana.email]) == [Interval(START, START + timedelta(hours=1))]


def test_a_stale_cursor_raises_cursor_expired_and_a_full_sync_recovers(backend: Any) -> None:
    ana = backend.people[0]
    backend.add_event(ana, "Lunch", START, START + timedelta(hours=1))
    full = backend.calendar.changes(ana, None, WINDOW)
    stale = backend.stale(full.cursor)
    if backend.refuses_stale_cursors:
        with pytest.raises(CursorExpired):
            backend.calendar.changes(ana, stale, WINDOW)
        again = backend.calendar.changes(ana, None, WINDOW)
    else:
        again = backend.calendar.changes(ana, stale, WINDOW)
    assert again.full and [e.title for e in again.events] == ["Lunch"]
    assert backend.calendar.changes(ana, again.cursor, WINDOW).quiet


# --- whole ticks -------------------------------------------------------------------------

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # a Monday
TITLE = "Development {{ stage | title }}: {{ employee.first_name }} & {{ partner.first_name }}"
PROGRAMS = """\
relationships:
  - {employee: @ANA@, partner: @BEN@, role: leader, program: leader-cycle}
  - {employee: @CHLOE@, partner: @BEN@, role: leader, program: leader-cycle}
programs:
  leader-cycle:
    organizer: employee
    series:
      deep_dive:
        every: 90d
        duration: 60m
        stages: [align, advance, amplify, advocate]
        title: "@TITLE@"
        match: '(?i)\\b(align|advance|amplify|advocate|deep dive)\\b'
      check_in:
        every: 30d
        duration: 15m
        skip_near: deep_dive
        title: "Development check-in: {{ employee.first_name }} & {{ partner.first_name }}"
        match: '(?i)\\bcheck-?in\\b'
    lapse_grace: 7d
    booking: {horizon: 14d, lead_time: 2d, window: "10:00-16:00", buffer: 10m, conference: auto}
    agenda: {before: 24h}
    recap: {after: 2h}
"""
#: Ben is away on Wednesday and Thursday daytime, every slot of it
OFFSITE = [(NOW + timedelta(days=d)).replace(hour=7) for d in (2, 3)]
CHECK_IN = NOW + timedelta(hours=23)  # tomorrow: its agenda is due now


@pytest.fixture
def team(backend: Any, on_store: Any) -> Any:
    """Ana's deep dive with her leader Ben lapsed 120 days ago and they meet for a check-in
    tomorrow; Chloe, also led by Ben, held hers 20 days ago and a check-in 10 days ago."""
    ana, ben, chloe = backend.people[:3]
    held = NOW - timedelta(days=120)
    backend.add_event(ana, "Development Align: Ana & Ben", held, held + timedelta(hours=1), [ben])
    backend.add_event(
        ana,
        "Development check-in: Ana & Ben",
        CHECK_IN,
        CHECK_IN + timedelta(minutes=15),
        [ben],
    )
    recent = NOW - timedelta(days=20)
    backend.add_event(chloe, "Deep dive: Chloe & Ben", recent, recent + timedelta(hours=1), [ben])
    check = NOW - timedelta(days=10)
    backend.add_event(
        chloe, "Development check-in: Chloe & Ben", check, check + timedelta(minutes=15), [ben]
    )
    for start in OFFSITE:
        backend.add_event(ben, "Offsite", start, start + timedelta(hours=10))
    text = PROGRAMS.replace("@TITLE@", TITLE)
    for name, who in (("ANA", ana), ("BEN", ben), ("CHLOE", chloe)):
        text = text.replace(f"@{name}@", who.email)
    return on_store(backend.settings(text))


def done(report: TickReport) -> list[str]:
    assert report.ok, report.errors
    return sorted(a.kind for a in report.actions if a.outcome in ("done", "already"))


class Requests:
    """The requests a backend's server answers from now on."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.before = backend.counts()

    def since(self) -> Counter[str]:
        used = self.backend.counts()
        used.subtract(self.before)
        return +used


def mails(backend: Any) -> list[Any]:
    """What the agent mailed, invitations left out."""
    return [
        m
        for m in backend.delivered()
        if not any(p.get_content_type() == "text/calendar" for p in m.walk())
    ]


def ids(backend: Any) -> set[str]:
    return {m["Message-ID"] for m in mails(backend)}


def test_tick_books_sends_agenda_and_recap_and_reruns_quietly(backend: Any, team: Any) -> None:
    ana, ben = backend.people[:2]
    wire = backend.wire
    calendars = 3

    with Engine(team, retry=RetryPolicy.none()) as engine:
        asked = Requests(backend)
        first = engine.tick(NOW)
        made = asked.since()
    assert first.ok, first.errors
    lapses = [a for a in first.actions if a.kind == "lapse"]
    booked = [a for a in first.actions if a.kind == "book" and a.outcome == "done"]
    assert [(a.relationship, a.series, a.outcome) for a in lapses] == [
        (f"{ana.email}/{ben.email}", "deep_dive", "found")
    ]
    assert [(a.relationship, a.series) for a in booked] == [
        (f"{ana.email}/{ben.email}", "deep_dive")
    ]
    invites = ["invite"] if backend.invites_by_mail else []
    assert done(first) == sorted(["agenda", "book", *invites])
    assert [a.series for a in first.actions if a.kind == "agenda"] == ["check_in"]

    # the booking: on Ana's calendar (she organizes), tagged, the stage after align, in
    # time both have free, after the lead time, and Ben invited to it
    key, title = booked[0].data["key"], booked[0].data["title"]
    stored = backend.booked(ana, key)
    start = stored.start
    assert stored.tag == key and stored.title == title and "Advance" in title
    assert start >= NOW + timedelta(days=2) and start.weekday() not in (2, 3)
    slot = Interval(start, start + timedelta(hours=1))
    ben_busy = backend.calendar.busy([ben], Interval(NOW, NOW + timedelta(days=20)))[ben.email]
    assert not any(b.overlaps(slot) and b != slot for b in ben_busy)
    assert backend.invited(key, title) == {ben.email}
    assert bool(stored.conference) == backend.conference
    if backend.invites_by_mail:
        (invitation,) = [m for m in backend.delivered() if m["Message-ID"] not in ids(backend)]
        assert sorted(a.strip() for a in invitation["To"].split(",")) == sorted(
            [ana.email, ben.email]
        )
        (vevent,) = itip_events(invitation, "REQUEST")
        assert str(vevent["UID"]) == f"{key}@cadence"
        assert vevent.decoded("DTSTART").astimezone(UTC) == start
        assert str(vevent["ORGANIZER"]) == f"mailto:{ana.email}"
        assert int(vevent["SEQUENCE"]) == 0
    if backend.copies_to_attendees:
        theirs = [e for e in backend.calendar.changes(ben, None, WINDOW).events if e.key == key]
        assert [(e.start, e.title) for e in theirs] == [(start, title)]
    if wire:  # one booking written, and where mail is written the same way, one agenda
        assert made[wire.create] == 1 + wire.mail_is_create
    assert backend.wrong_requests() == []

    # the check-in's agenda went out once, from Ana's mailbox, to both
    (agenda,) = mails(backend)
    assert agenda["From"].endswith(f"<{ana.email}>") and "check-in" in agenda["Subject"].lower()
    assert {ana.email, ben.email} <= {a.strip() for a in agenda["To"].split(",")}
    assert agenda["Message-ID"].endswith("@cadence>")

    # a fresh process costs one sync per calendar and its sign-in (and where the sync
    # names changes without their content, reading the booking's two copies): no action
    with Engine(team, retry=RetryPolicy.none()) as engine:
        asked = Requests(backend)
        quiet = engine.tick(NOW + timedelta(minutes=10))
        if wire:
            assert asked.since() == (
                Counter({wire.sync: calendars}) + wire.sign_in(calendars) + wire.fetch_booked
            )
        assert done(quiet) == []
        assert [a for a in quiet.actions if a.outcome == "failed"] == []

        # after the check-in, its recap answers its agenda in the same thread
        seen = ids(backend)
        recap_tick = engine.tick(CHECK_IN + timedelta(minutes=15, hours=2, seconds=300))
        assert done(recap_tick) == ["recap"]
        (recap,) = [m for m in mails(backend) if m["Message-ID"] not in seen]
        assert recap["In-Reply-To"] == agenda["Message-ID"]
        assert agenda["Message-ID"] in recap["References"]

        # the day before the deep dive its agenda goes out, once
        before = start - timedelta(hours=12)
        seen = ids(backend)
        assert done(engine.tick(before)) == ["agenda"]
        (deep_agenda,) = [m for m in mails(backend) if m["Message-ID"] not in seen]
        assert deep_agenda["From"].endswith(f"<{ana.email}>") and ben.email in deep_agenda["To"]
        assert "Advance" in deep_agenda["Subject"]
        assert deep_agenda["Message-ID"] not in (agenda["Message-ID"], recap["Message-ID"])

        # a rerun finds nothing to do and costs one sync per calendar
        asked = Requests(backend)
        assert done(engine.tick(before + timedelta(minutes=10))) == []
        if wire:
            assert asked.since() == Counter({wire.sync: calendars})
    sent = len(backend.delivered())

    # a fresh process is just as quiet, and after the meeting the recap answers the agenda
    with Engine(team, retry=RetryPolicy.none()) as engine:
        asked = Requests(backend)
        assert done(engine.tick(before + timedelta(minutes=20))) == []
        if wire:
            assert asked.since() == Counter({wire.sync: calendars}) + wire.sign_in(calendars)
        assert len(backend.delivered()) == sent
        seen = ids(backend)
        assert done(engine.tick(start + timedelta(hours=3, minutes=5))) == ["recap"]
    (recap,) = [m for m in mails(backend) if m["Message-ID"] not in seen]
    assert recap["In-Reply-To"] == deep_agenda["Message-ID"]
    assert deep_agenda["Message-ID"] in recap["References"]
    assert backend.wrong_requests() == []


def test_a_stale_cursor_resyncs_in_full_and_books_nothing_twice(backend: Any, team: Any) -> None:
    with Engine(team, retry=RetryPolicy.none()) as engine:
        assert engine.tick(NOW).ok
        if not backend.forget_cursors():
            spoil_cursors(engine.store)
        asked = Requests(backend)
        again = engine.tick(NOW + timedelta(minutes=10))
    assert again.ok, again.errors
    assert [a for a in again.actions if a.kind == "book" and a.outcome == "done"] == []
    if backend.wire:
        used = asked.since()
        expected = {backend.wire.create: 0, **backend.wire.resync(3)}
        assert {op: used[op] for op in expected} == expected


def itip_events(message: Any, method: str) -> list[Any]:
    import icalendar

    part = next(p for p in message.walk() if p.get_content_type() == "text/calendar")
    assert part.get_param("method") == method
    cal = icalendar.Calendar.from_ical(part.get_payload(decode=True))
    assert str(cal["METHOD"]) == method
    return list(cal.walk("VEVENT"))
