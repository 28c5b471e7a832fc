"""Recaps only for what Cadence watched: a meeting that ended before Cadence began watching
its relationship gets none, unless it lies within the program's ``recap.backfill``."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from agent.core.model import Program, Relationship
from agent.rules import mailplan, planning
from agent.rules.actions import Send
from agent.settings.templates import packaged
from tests.factories import PROGRAM, at, meeting_event, relationship
from tests.rules.test_planning import snapshot

TEMPLATES = packaged()
NOW = at("2026-11-23T09:00:00+00:00")

hours = st.integers(min_value=0, max_value=24 * 40).map(lambda h: timedelta(hours=h))


@given(
    end=st.integers(min_value=-24 * 60, max_value=24 * 60).map(lambda h: NOW + timedelta(hours=h)),
    watched=st.none() | st.integers(-24 * 60, 24 * 60).map(lambda h: NOW + timedelta(hours=h)),
    after=hours,
    within=hours,
    backfill=hours,
)
def test_the_recap_window_never_reaches_before_the_watch_or_its_backfill(
    end: datetime,
    watched: datetime | None,
    after: timedelta,
    within: timedelta,
    backfill: timedelta,
) -> None:
    program = dataclasses.replace(
        PROGRAM, recap_after=after, recap_within=within, recap_backfill=backfill
    )
    window = mailplan.recap_window(end, program, watched)
    if watched is not None and end <= watched - backfill:
        assert window is None
        return
    assert window is not None
    opens, closes = window
    assert closes - opens == within
    assert opens >= end + after  # never before the meeting's own time
    if watched is None or end > watched:
        assert opens == end + after  # a watched meeting keeps its usual window
    else:
        assert opens == max(end + after, watched)  # a backfilled one: from the switch-on


def _recaps(rel: Relationship, ends: list[datetime], watched: datetime | None) -> list[str]:
    events = [
        meeting_event(rel, "Development check-in: Ana & Ben", end - timedelta(minutes=15), 15)
        for end in ends
    ]
    snap = snapshot([rel], events)
    snap.mail = mailplan.MailContext(
        now=NOW,
        relationships=[rel],
        templates=TEMPLATES,
        secret=b"k" * 32,
        watched={rel.id: watched} if watched else {},
    )
    actions = planning.plan(snap, {}, planning.units([rel]))
    return sorted(a.meeting for a in actions if isinstance(a, Send) and a.kind == "recap")


def _rel(backfill: timedelta = timedelta(0)) -> Relationship:
    program: Program = dataclasses.replace(PROGRAM, recap_backfill=backfill)
    return dataclasses.replace(relationship(), program=program)


def test_first_switch_on_recaps_nothing_that_ended_before_it() -> None:
    rel = _rel()
    ends = [NOW - timedelta(days=d) for d in (1, 3, 6)]
    assert len(_recaps(rel, ends, None)) == 3  # without a watch start: all inside `within`
    assert _recaps(rel, ends, NOW) == []


def test_a_meeting_ending_after_the_watch_began_gets_its_recap() -> None:
    rel = _rel()
    watched = NOW - timedelta(days=2)
    recaps = _recaps(rel, [NOW - timedelta(days=3), NOW - timedelta(days=1)], watched)
    assert len(recaps) == 1 and "20261122" in recaps[0]


def test_backfill_recaps_what_ended_inside_it_at_the_first_tick() -> None:
    rel = _rel(timedelta(days=4))
    ends = [NOW - timedelta(days=d) for d in (1, 3, 5)]
    recaps = _recaps(rel, ends, NOW)
    assert len(recaps) == 2 and not any("20261118" in r for r in recaps)
