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
ANA, BEN = "ana@acme.example", "ben@acme.example"


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
