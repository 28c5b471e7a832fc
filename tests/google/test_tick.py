"""The whole tick against the fake Google: lapse found, booking made, agenda sent, rerun quiet."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.core.retry import RetryPolicy
from agent.tick.engine import Engine
from tests.google.harness import workspace

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # a Monday
ANA, BEN = "ana@acme.example", "ben@acme.example"
PROGRAMS = """\
relationships:
  - {employee: ana@acme.example, partner: ben@acme.example, role: leader, program: leader-cycle}
programs:
  leader-cycle:
    organizer: employee
    series:
      deep_dive:
        every: 90d
        duration: 60m
        stages: [align, advance, amplify, advocate]
        title: "Deep dive {{ stage | title }}: {{ employee.first_name }} & {{ partner.first_name }}"
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


def test_tick_books_the_lapsed_deep_dive_mails_the_agenda_and_reruns_quietly(
    tmp_path: Path,
) -> None:
    with workspace(tmp_path, rest=PROGRAMS) as ws:
        srv = ws.server
        held = NOW - timedelta(days=120)
        srv.add_event(ANA, "Development Align: Ana & Ben", held, held + timedelta(hours=1), [BEN])
        tomorrow = NOW + timedelta(hours=23)
        srv.add_event(
            ANA,
            "Development check-in: Ana & Ben",
            tomorrow,
            tomorrow + timedelta(minutes=15),
            [BEN],
        )
        srv.add_event(BEN, "Board meeting", NOW + timedelta(days=2), NOW + timedelta(days=9))

        with Engine(ws.settings, retry=RetryPolicy.none()) as engine:
            first = engine.tick(NOW)
            assert first.ok, first.errors
            done = {(a.kind, a.series, a.outcome) for a in first.actions}
            assert ("lapse", "deep_dive", "found") in done
            assert ("book", "deep_dive", "done") in done
            assert ("agenda", "check_in", "done") in done
            booked = next(a for a in first.actions if a.kind == "book")

            before = Counter(srv.state.counts)
            second = engine.tick(NOW + timedelta(minutes=10))
            quiet = Counter(srv.state.counts)
            quiet.subtract(before)
            assert second.ok, second.errors
            assert not [a for a in second.actions if a.outcome in ("done", "already")]
            # a quiet tick costs one events.list per calendar and nothing else
            assert +quiet == Counter({"calendar.events.list": 2})

        # the booking is on both calendars, tagged, with a Meet link, invitations sent
        key = booked.data["key"]
        mine = srv.state.calendars[ANA].events[key]
        theirs = srv.state.calendars[BEN].events[key]
        start = datetime.fromisoformat(mine["start"]["dateTime"])
        assert mine["extendedProperties"]["private"]["cadenceKey"] == key
        assert mine["summary"] == booked.data["title"] and theirs["start"] == mine["start"]
        assert mine["hangoutLink"].startswith("https://meet.google.com/")
        assert (
            NOW + timedelta(days=9) <= start <= NOW + timedelta(days=16)
        )  # after Ben's board week
        assert ("REQUEST", ANA, key, (BEN,)) in srv.state.notifications
        # the agenda went out once, from Ana's mailbox
        (agenda,) = srv.state.sent
        assert agenda.user == ANA and "check-in" in agenda.message["Subject"].lower()
        assert {BEN, ANA} <= {a.strip() for a in agenda.message["To"].split(",")}

        # a new process (fresh tokens, stored sync tokens) is just as quiet
        before = Counter(srv.state.counts)
        with Engine(ws.settings, retry=RetryPolicy.none()) as engine:
            third = engine.tick(NOW + timedelta(minutes=20))
        fresh = Counter(srv.state.counts)
        fresh.subtract(before)
        assert third.ok and not [a for a in third.actions if a.outcome in ("done", "already")]
        assert +fresh == Counter({"calendar.events.list": 2, "token": 2})
        assert len(srv.state.sent) == 1
