"""What to do about a meeting the agent booked: keep it, accept a move made by hand,
move it, book it anew, hold back, or ask the employee to pick a time.

Guardrails: never move less than ``min_notice`` before the start, at most ``max_moves``
automatic moves per meeting (then ask), never fight a person who moved it by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from agent.core.durations import format_duration
from agent.rules.cadence import SeriesState
from agent.rules.classify import Meeting, Status


@dataclass(frozen=True)
class OwnBooking:
    key: str
    start: datetime
    end: datetime
    moves: int = 0


@dataclass(frozen=True)
class Review:
    action: str  # keep | accept | move | rebook | hold | ask
    reason: str = ""


def review(
    state: SeriesState,
    booking: OwnBooking,
    meeting: Meeting | None,
    conflicts: Sequence[str],
    now: datetime,
) -> Review:
    """Decide what to do with the agent's booking for ``state``'s next meeting."""
    program = state.relationship.program
    zone = state.relationship.employee.zone
    if meeting is None:
        if booking.end <= now:
            return Review("keep")
        problem = "the booked event was deleted"
        start = booking.start
    else:
        if meeting.status is Status.HELD:
            return Review("keep")
        if meeting.status is Status.SCHEDULED and meeting.start != booking.start:
            when = meeting.start.astimezone(zone)
            return Review("accept", f"moved by hand to {when:%a %Y-%m-%d %H:%M}; accepted")
        if meeting.status is Status.DECLINED:
            problem = f"declined by {meeting.declined_by}"
        elif meeting.status is Status.CANCELLED:
            problem = "cancelled"
        elif conflicts:
            problem = "lost its slot: " + "; ".join(conflicts)
        else:
            return Review("keep")
        start = meeting.start
    if meeting is not None and start - now < program.min_notice:
        hours = int((start - now).total_seconds() // 3600)
        return Review(
            "hold",
            f"{problem}; not moved: it starts in {hours}h, less than "
            f"{format_duration(program.min_notice)} notice",
        )
    if booking.moves >= program.max_moves:
        return Review(
            "ask",
            f"{problem}; already moved {booking.moves} time(s): asking "
            f"{state.relationship.employee.email} to pick a time",
        )
    return Review("rebook" if meeting is None else "move", problem)
