"""What an ended reporting line asks for: cancel what Cadence booked, tell the people,
and hand the employee's development over to the next leader.

Pure, like the planner: the engine passes in the lines that ended, the bookings still
ahead with their events, and the employees' plans; the executor does the rest, each
action under its own key, so a restart repeats nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from agent.core import locales
from agent.core.directory import Line
from agent.core.model import Event, Person
from agent.core.plan import Plan
from agent.core.records import StoredBooking
from agent.rules import messages
from agent.rules.actions import Action, Cancel, Send
from agent.rules.mailplan import MailContext


@dataclass(frozen=True)
class Ending:
    """One ended line and what the engine found for it."""

    line: Line
    employee: Person
    leader: Person
    successor: Person | None = None
    ahead: Sequence[tuple[StoredBooking, Event | None]] = ()
    """The line's bookings that have not started, with their events (None: not found)."""
    last: str | None = None
    """The employee's last held development meeting, as a phrase ("Align, 3 Nov 2026")."""
    first_by: datetime | None = None
    """When the next leader's first meeting is due by."""


N_ = messages.N_
WHY = {
    "left": N_("they have left"),
    "leader left": N_("their leader has left"),
    "new leader": N_("they have a new leader"),
    "left the program": N_("they have left the development program"),
    "no leader": N_("the directory names no leader for them"),
}


def _key(line: Line, kind: str) -> str:
    return f"{line.employee}/{line.leader}:{line.since:%Y%m%dT%H%M%SZ}:{kind}"


def plan(endings: Sequence[Ending], ctx: MailContext, present: frozenset[str]) -> list[Action]:
    """The actions for every ended line; ``present`` are the people still in the
    directory (only they get mail, and only they can send it)."""
    out: list[Action] = []
    for e in endings:
        rel_id = e.line.id
        cancelled = []
        for row, event in e.ahead:
            organizer = e.leader if row.organizer == e.leader.email else e.employee
            reason = f"{row.series}: the reporting line ended ({e.line.reason})"
            out.append(
                Cancel(
                    row.key,
                    rel_id,
                    row.series,
                    reason,
                    organizer=organizer,
                    event=event,
                    line=_key(e.line, "line"),
                )
            )
            if row.start is not None:
                local = row.start.astimezone(e.employee.zone)
                cancelled.append(
                    f"{row.series.replace('_', ' ')}, {local:%a} {local.day} {local:%b %Y, %H:%M}"
                )
        if e.employee.email in present:
            out.extend(_ended(e, ctx, cancelled, present))
            if e.successor is not None and e.successor.email in present:
                handover = _handover(e, ctx)
                if handover is not None:
                    out.append(handover)
    return out


def _mail(
    e: Ending,
    ctx: MailContext,
    kind: str,
    to: tuple[str, ...],
    content: messages.Content,
    reason: str,
) -> Send:
    key = _key(e.line, kind)
    mail = ctx.outgoing(key, e.employee, to, content)
    return Send(
        key,
        e.line.id,
        None,
        reason,
        kind=kind,
        # the note about the ended line waits for its cancellations; the hand-over does not
        meeting=_key(e.line, "line") if kind == "ended" else key,
        account=e.employee.account,
        mail=mail,
    )


def _ended(
    e: Ending, ctx: MailContext, cancelled: list[str], present: frozenset[str]
) -> list[Action]:
    key = _key(e.line, "ended")
    if ctx.sent(key):
        return []
    to = tuple(p.email for p in (e.employee, e.leader) if p.email in present)
    language = e.employee.language or ctx.language
    _ = messages.translator(ctx.templates, language).gettext
    names = [p.first_name for p in (e.employee, e.leader) if p.email in present]
    greeting = " ".join(names[:1])
    if len(names) == 2:
        greeting = _("%(one)s and %(other)s") % {"one": names[0], "other": names[1]}
    subject = _("Development conversations with %(name)s have ended") % {
        "name": e.leader.first_name
    }
    content = messages.render_page(
        "ended",
        subject,
        ctx.templates,
        language=language,
        greeting=greeting,
        employee=e.employee,
        leader=e.leader,
        successor=e.successor,
        why=_(WHY[e.line.reason])
        if e.line.reason in WHY
        else e.line.reason or _("the reporting line ended"),
        cancelled=cancelled,
    )
    return [_mail(e, ctx, "ended", to, content, f"the line ended: {e.line.reason}")]


def _handover(e: Ending, ctx: MailContext) -> Action | None:
    assert e.successor is not None
    key = _key(e.line, "handover")
    if ctx.sent(key):
        return None
    plan: Plan | None = ctx.plans.get(e.employee.email)
    shared = bool(plan and plan.share_with_new_leader)
    actions = ctx.actions(e.employee.email).open if shared else ()
    first_by = e.first_by.astimezone(e.successor.zone) if e.first_by else None
    language = e.employee.language or ctx.language
    _ = messages.translator(ctx.templates, language).gettext
    content = messages.render_page(
        "handover",
        _("Development hand-over: %(name)s") % {"name": e.employee.name},
        ctx.templates,
        language=language,
        employee=e.employee,
        leader=e.successor,
        previous=e.leader,
        shared=shared,
        plan=plan if shared else None,
        actions=actions,
        last=e.last if shared else None,
        first_by=locales.full_day(first_by, language) if first_by else _("soon"),
    )
    to = (e.successor.email, e.employee.email)
    return _mail(e, ctx, "handover", to, content, f"new leader {e.successor.email}")
