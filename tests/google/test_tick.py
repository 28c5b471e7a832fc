"""A whole tick against the fake Google where only Google can say it (the tick every
provider shares is in tests/connectors/test_contract.py): the booking waits out Ben's
board week, and the agenda leaves from Ana's own Gmail mailbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent.core.retry import RetryPolicy
from agent.tick.engine import Engine
from tests.google.harness import PROGRAMS, workspace

NOW = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)  # a Monday
ANA, BEN, CHLOE = "ana@acme.example", "ben@acme.example", "chloe@acme.example"


def test_tick_books_after_the_board_week_and_mails_the_agenda_from_anas_mailbox(
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
        assert ("book", "deep_dive", "done") in done
        assert ("agenda", "check_in", "done") in done
        booked = next(a for a in first.actions if a.kind == "book")

        key = booked.data["key"]
        mine = srv.state.calendars[ANA].events[key]
        start = datetime.fromisoformat(mine["start"]["dateTime"])
        assert (
            NOW + timedelta(days=9) <= start <= NOW + timedelta(days=16)
        )  # after Ben's board week
        # the agenda went out once, from Ana's mailbox as Gmail recorded it
        (agenda,) = srv.state.sent
        assert agenda.user == ANA and "check-in" in agenda.message["Subject"].lower()
        assert {BEN, ANA} <= {a.strip() for a in agenda.message["To"].split(",")}


def test_one_unreadable_free_busy_waits_alone_and_the_rest_of_the_account_books(
    tmp_path: Path,
) -> None:
    # Ana led by Ben books; Chloe (led by Ben too) has a calendar whose free/busy the
    # account may not read: only her relationship waits
    rest = PROGRAMS.replace(
        "relationships:\n",
        "relationships:\n"
        "  - {employee: chloe@acme.example, partner: ben@acme.example, role: leader,"
        " program: leader-cycle}\n",
    )
    with workspace(tmp_path, rest=rest) as ws:
        ws.server.state.freebusy_errors[CHLOE] = "forbidden"
        with Engine(ws.settings, retry=RetryPolicy.none()) as engine:
            report = engine.tick(NOW)
        booked = {a.data["key"] for a in report.actions if a.kind == "book" and a.outcome == "done"}
        assert booked and all(key in ws.server.state.calendars[ANA].events for key in booked)
        assert not ws.server.state.calendars[CHLOE].events  # nothing booked over unknown time
        assert any(CHLOE in e and "forbidden" in e for e in report.errors)
        assert not any(ANA in e or "account" in e for e in report.errors)
