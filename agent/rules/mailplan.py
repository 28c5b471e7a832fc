"""Which mails are due, and their content: invitations, agendas, recaps, pick-a-time
requests and updated recaps, as ``Send`` actions.

Each mail has an outbox key (meeting id and kind); a key the outbox holds as sent or
``uncertain`` is never planned again. A recap goes out only for a meeting that ended
after Cadence began watching its relationship (or within the program's
``recap.backfill`` before it): Cadence neither booked nor announced what came before.
The Message-ID is keyed by the store's secret (``message_id``), and a recap threads to
its agenda. Everything here is pure: the plans, recorded actions and
outbox come in with the ``MailContext``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import format_datetime
from typing import Any, Protocol

from agent.core import locales
from agent.core.model import Interval, Invitation, OutgoingMail, Person, Program, Relationship
from agent.core.plan import Plan
from agent.core.timestamps import from_store
from agent.formats import ical
from agent.rules import cadence, messages, replies
from agent.rules.actions import Send, draft
from agent.rules.classify import Meeting, Own, Status

#: outbox statuses that mean "never send this key again"
DONE = ("sent", "uncertain")


class OutboxRow(Protocol):
    """What the planner reads of one outbox row."""

    @property
    def status(self) -> str: ...
    @property
    def message_id(self) -> str | None: ...


@dataclass(frozen=True)
class Outboxed:
    status: str
    message_id: str | None = None


@dataclass
class MailContext:
    """What mail content needs beyond the meetings: plans, outbox, accounts, templates."""

    now: datetime
    relationships: Sequence[Relationship]
    #: the store's secret that keys Message-IDs (``Store.mail_secret``)
    secret: bytes
    outbox: Mapping[str, OutboxRow] = field(default_factory=dict)
    #: per account: whether Cadence must mail invitations itself (the provider does not)
    invites: Mapping[str, bool] = field(default_factory=dict)
    plans: Mapping[str, Plan | None] = field(default_factory=dict)
    recorded: Mapping[str, Sequence[replies.Action]] = field(default_factory=dict)
    hours: Mapping[str, float] = field(default_factory=dict)
    templates: Any = None
    #: the global ``language:``, for people and programs that name none
    language: str = "en"
    #: booking reasons by key, quoted in the invitations Cadence sends itself
    reasons: dict[str, str] = field(default_factory=dict)
    #: when Cadence began watching each relationship (by id); one missing is not limited
    watched: Mapping[str, datetime] = field(default_factory=dict)
    #: the pick-a-time link for (relationship id, booking key, moves so far, slot), when
    #: the web app is on
    pick_link: Callable[[str, str, int, Interval], str] | None = None

    def sent(self, key: str) -> bool:
        row = self.outbox.get(key)
        return row is not None and row.status in DONE

    def message_id(self, key: str) -> str:
        """The Message-ID of the mail ``key``: the one its outbox row holds (a row
        written by an earlier Cadence keeps its id, so a retry is still recognised),
        else ``message_id(key, secret)``."""
        row = self.outbox.get(key)
        if row is not None and row.message_id:
            return row.message_id
        return message_id(key, self.secret)

    def outgoing(
        self,
        key: str,
        sender: Person,
        to: tuple[str, ...],
        content: messages.Content,
        **threading: Any,
    ) -> OutgoingMail:
        """The mail ``key`` from ``sender`` with ``content``, dated now; ``threading``:
        ``in_reply_to``, ``references``, ``invitation``."""
        return OutgoingMail(
            key=key,
            sender=sender.email,
            sender_name=sender.name,
            to=to,
            subject=content.subject,
            text=content.text,
            html=content.html,
            message_id=self.message_id(key),
            headers={"Date": format_datetime(self.now.astimezone(UTC))},
            **threading,
        )

    def actions(self, email: str) -> replies.Actions:
        """The plan's action items with those recorded from replies laid over them."""
        return replies.merge(self.plans.get(email), self.recorded.get(email, ()))


def message_id(key: str, secret: bytes) -> str:
    """A valid RFC 5322 msg-id for an outbox key that only the store's holder can make.

    The id is an HMAC of the key under the store's random ``secret``: the same key gives
    the same id in ``cadence plan`` and ``cadence run`` and after a crash, but no one
    can work out the id of a recap from its meeting and forge a reply to it (replies
    are matched by In-Reply-To). Only the key's kind is kept in clear, cleaned to
    ``[A-Za-z0-9-]``: a dot-atom with no second "@" (mail libraries would rewrite the
    header, and replies would then answer an id the outbox does not know), and a local
    part of at most 48 characters, so "In-Reply-To: <...@cadence>" stays within 78 and
    the header never needs folding. Raise ValueError without a secret."""
    if not secret:
        raise ValueError("a Message-ID needs the store's secret")
    kind = re.sub(r"[^A-Za-z0-9-]+", "-", key.rsplit(":", 1)[-1]).strip("-")[:15]
    digest = hmac.new(secret, key.encode(), hashlib.sha256).hexdigest()[:32]
    return f"<{digest}.{kind}@cadence>" if kind else f"<{digest}@cadence>"


def outbox_key(meeting: Meeting, kind: str) -> str:
    """The outbox key; an updated invitation (higher SEQUENCE) is a new mail."""
    sequence = meeting.event.sequence if meeting.event else 0
    if kind == "invite" and sequence:
        return f"{meeting.id}:invite{sequence}"
    return f"{meeting.id}:{kind}"


def hours(
    relationships: Sequence[Relationship], meetings: Mapping[str, Sequence[Meeting]], now: datetime
) -> dict[str, float]:
    """Hours of development meetings held this (local) year, per employee."""
    out: dict[str, float] = {}
    for rel in relationships:
        year = now.astimezone(rel.employee.zone).year
        for m in meetings.get(rel.id, []):
            if m.status is Status.HELD and m.start.astimezone(rel.employee.zone).year == year:
                out[rel.employee.email] = out.get(rel.employee.email, 0.0) + (
                    (m.end - m.start).total_seconds() / 3600
                )
    return out


def leaders_of(relationships: Sequence[Relationship], rel: Relationship) -> list[str]:
    """Who gets the paper trail: the employee's leaders, else the relationship's partner."""
    leaders = [
        r.partner.email
        for r in relationships
        if r.employee.email == rel.employee.email and r.role == "leader"
    ]
    return leaders or [rel.partner.email]


def recap_window(
    end: datetime, program: Program, watched: datetime | None
) -> tuple[datetime, datetime] | None:
    """When the recap of a meeting ending at ``end`` may go out: from ``recap.after``
    past its end for ``recap.within``; None for a meeting that ended before the watch
    began (less ``recap.backfill``). A backfilled recap's window opens at the watch start,
    so the first tick sends it."""
    opens = end + program.recap_after
    if watched is not None:
        if end <= watched - program.recap_backfill:
            return None
        opens = max(opens, watched)
    return opens, opens + program.recap_within


def kinds_due(
    ctx: MailContext, rel: Relationship, meeting: Meeting, own: Mapping[str, Own]
) -> list[str]:
    program = rel.program
    kinds = []
    if meeting.status is Status.SCHEDULED:
        if meeting.key and meeting.key in own and ctx.invites.get(rel.organizer.account, False):
            kinds.append("invite")
        if meeting.start - program.agenda_before <= ctx.now < meeting.start:
            kinds.append("agenda")
    if meeting.status is Status.HELD:
        window = recap_window(meeting.end, program, ctx.watched.get(rel.id))
        if window is not None and window[0] <= ctx.now <= window[1]:
            kinds.append("recap")
    return [k for k in kinds if not ctx.sent(outbox_key(meeting, k))]


def due(
    ctx: MailContext,
    rel: Relationship,
    meetings: Sequence[Meeting],
    states: Sequence[cadence.SeriesState],
    own: Mapping[str, Own],
) -> list[Send]:
    """The invitations, agendas and recaps now due for one relationship."""
    out = []
    for meeting in meetings:
        for kind in kinds_due(ctx, rel, meeting, own):
            out.append(_meeting_mail(ctx, rel, meetings, states, meeting, kind))
    return out


def ask(
    ctx: MailContext,
    rel: Relationship,
    state: cadence.SeriesState,
    moves: int,
    reason: str,
    proposals: Sequence[Interval],
) -> Send | None:
    """Ask the employee to pick a time after the automatic moves are used up; with the
    web app on, each proposal has a link that picks it."""
    key = f"{state.key}:ask{moves}"
    if ctx.outbox.get(key) is not None and ctx.outbox[key].status == "sent":
        return None
    language = rel.language(ctx.language)
    tr = messages.translator(ctx.templates, language)
    lines = [
        messages.when_lines(p.start, p.end, (rel.employee, rel.partner), language, tr.gettext)[0]
        for p in proposals
    ]
    content = messages.render(
        "pick",
        rel,
        state.name,
        state.stage,
        ctx.now,
        ctx.now,
        reason=why(reason, language, tr.gettext, (rel.employee, rel.partner)),
        proposals=tuple(lines),
        pick_links=tuple(ctx.pick_link(rel.id, state.key, moves, p) for p in proposals)
        if ctx.pick_link is not None
        else (),
        templates=ctx.templates,
        language=language,
    )
    mail = ctx.outgoing(key, rel.employee, (rel.employee.email,), content)
    return _send(rel, state.name, state.key, "ask", mail, reason)


def update(
    ctx: MailContext,
    row: Mapping[str, Any],
    rel: Relationship,
    meetings: Sequence[Meeting],
    states: Sequence[cadence.SeriesState],
    sender_name: str,
) -> Send | None:
    """The updated recap that answers one recorded reply; None once its meeting is gone."""
    meeting = next((m for m in meetings if m.id == row["meeting"]), None)
    if meeting is None:
        return None
    items = tuple(
        replies.Item(i["title"], i["done"], date.fromisoformat(i["due"]) if i["due"] else None)
        for i in json.loads(row["items"] or "[]")
    )
    received = from_store(row["received_at"]).astimezone(rel.employee.zone)
    language = rel.language(ctx.language)
    content = _render(
        ctx,
        "recap",
        rel,
        meetings,
        meeting,
        next_meeting=_next_text(ctx, rel, meetings, states, meeting),
        update=messages.Update(
            sender=sender_name,
            received=f"{locales.full_day(received, language)}, {locales.clock(received, language)}",
            items=items,
            notes=row["notes"] or "",
        ),
    )
    sent = []
    for key in (f"{meeting.id}:agenda", f"{meeting.id}:recap"):
        found = ctx.outbox.get(key)
        if found is not None and found.status == "sent" and found.message_id:
            sent.append(found.message_id)
    to = tuple(dict.fromkeys([*leaders_of(ctx.relationships, rel), rel.employee.email]))
    mail = ctx.outgoing(
        row["update_key"],
        rel.employee,
        to,
        content,
        in_reply_to=row["message_id"],
        references=(*sent, row["message_id"]),
    )
    return _send(rel, meeting.series, meeting.id, "update", mail, f"reply {row['message_id']}")


def _meeting_mail(
    ctx: MailContext,
    rel: Relationship,
    meetings: Sequence[Meeting],
    states: Sequence[cadence.SeriesState],
    meeting: Meeting,
    kind: str,
) -> Send:
    key = outbox_key(meeting, kind)
    reason = ctx.reasons.get(meeting.key or "", "") if kind == "invite" else ""
    if kind == "invite" and rel.organizer_language(ctx.language) != locales.SOURCE:
        reason = ""  # the booking's reason is the audit log's English, not a sentence to translate
    content = _render(
        ctx,
        "invitation" if kind == "invite" else kind,
        rel,
        meetings,
        meeting,
        next_meeting=_next_text(ctx, rel, meetings, states, meeting) if kind == "recap" else "",
        reason=reason,
        since=_previous(meetings, meeting),
        # the invitation is the organizer's; agendas and recaps speak the employee's language
        language=rel.organizer_language(ctx.language) if kind == "invite" else None,
    )
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    if kind == "recap":
        agenda = ctx.outbox.get(f"{meeting.id}:agenda")
        if agenda is not None and agenda.status == "sent" and agenda.message_id:
            in_reply_to = agenda.message_id
            references = (agenda.message_id,)
    invitation = None
    if kind == "invite":
        title = messages.event_title(
            rel, meeting.series, meeting.stage, ctx.templates, ctx.language
        )
        made = draft(
            rel,
            meeting.series,
            meeting.stage,
            meeting.key or meeting.id,
            title,
            Interval(meeting.start, meeting.end),
        )
        sequence = meeting.event.sequence if meeting.event else 0
        invitation = Invitation("REQUEST", ical.invitation(made, stamp=ctx.now, sequence=sequence))
    mail = ctx.outgoing(
        key,
        rel.employee,
        (rel.employee.email, rel.partner.email),
        content,
        in_reply_to=in_reply_to,
        references=references,
        invitation=invitation,
    )
    return _send(rel, meeting.series, meeting.id, kind, mail, f"{kind} due for {meeting.id}")


_DECLINED = re.compile(r"^declined by ([^\s;]+)")


def why(reason: str, language: str, _: messages.Gettext, people: Sequence[Person] = ()) -> str:
    """Why a meeting needs a new time, for the pick-a-time mail: the planner's reason in
    English; in another language the cause alone (declined, cancelled), translated, with
    the first name of whichever of ``people`` declined."""
    if language == locales.SOURCE:
        return reason
    declined = _DECLINED.match(reason)
    if declined:
        who = declined.group(1)
        name = next((p.first_name for p in people if p.email == who), who)
        return _("%(who)s declined it.") % {"who": name}
    if reason.startswith("cancelled"):
        return _("It was cancelled.")
    return reason


def _render(
    ctx: MailContext,
    template: str,
    rel: Relationship,
    meetings: Sequence[Meeting],
    meeting: Meeting,
    language: str | None = None,
    **extra: Any,
) -> messages.Content:
    """Render one meeting's mail with the employee's plan, actions and hours, in
    ``language`` (the pair's, ``Relationship.language``, when None)."""
    return messages.render(
        template,
        rel,
        meeting.series,
        meeting.stage,
        meeting.start,
        meeting.end,
        plan=ctx.plans.get(rel.employee.email),
        actions=ctx.actions(rel.employee.email),
        invested_hours=ctx.hours.get(rel.employee.email, 0.0),
        templates=ctx.templates,
        first=_first(meetings, meeting),
        language=language or rel.language(ctx.language),
        **extra,
    )


def _send(
    rel: Relationship, series: str, meeting: str, kind: str, mail: OutgoingMail, reason: str
) -> Send:
    return Send(
        mail.key,
        rel.id,
        series,
        reason,
        kind=kind,
        meeting=meeting,
        account=rel.employee.account,
        mail=mail,
    )


def _first(meetings: Sequence[Meeting], meeting: Meeting) -> bool:
    """Whether ``meeting`` is the first of its series for the relationship."""
    return not any(
        m.series == meeting.series and m.status is Status.HELD and m.start < meeting.start
        for m in meetings
    )


def _previous(meetings: Sequence[Meeting], meeting: Meeting) -> datetime | None:
    """When the relationship's previous held meeting started, if any."""
    held = [m.start for m in meetings if m.status is Status.HELD and m.start < meeting.start]
    return max(held, default=None)


def _next_text(
    ctx: MailContext,
    rel: Relationship,
    meetings: Sequence[Meeting],
    states: Sequence[cadence.SeriesState],
    after: Meeting,
) -> str:
    language = rel.language(ctx.language)
    tr = messages.translator(ctx.templates, language)
    upcoming = [m for m in meetings if m.status is Status.SCHEDULED and m.start > after.start]
    if upcoming:
        nxt = upcoming[0]
        people = (rel.employee, rel.partner)
        lines = messages.when_lines(nxt.start, nxt.end, people, language, tr.gettext)
        return f"{messages.what(rel, nxt.series, nxt.stage, tr)}: {lines[0]}"
    if states:
        soonest = min(states, key=lambda s: s.due)
        day = soonest.due.astimezone(rel.employee.zone)
        return tr.gettext("%(what)s due %(day)s; Cadence will book it") % {
            "what": messages.what(rel, soonest.name, soonest.stage, tr),
            "day": locales.full_day(day, language),
        }
    return ""
