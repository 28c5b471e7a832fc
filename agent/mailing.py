"""The mail step of a tick: invitations, agendas, recaps and pick-a-time requests.

Each mail has an outbox key (meeting id and kind). The outbox row is written as
pending before sending and as sent after; the Message-ID is derived from the key, and a
recap threads to its agenda.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any

from agent import faults, ical
from agent import plan as idp
from agent.config import Settings
from agent.connectors.base import CadenceError, Mailer, TransientError
from agent.model import EventDraft, Invitation, OutgoingMail, Person, Relationship
from agent.rules import cadence, messages
from agent.rules.classify import Meeting, Own, Status
from agent.store import Store

if TYPE_CHECKING:
    from agent.engine import ActionRecord, Engine


def message_id(key: str) -> str:
    return f"<{key.replace(':', '.')}@cadence>"


def _ts(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class MailSteps:
    """Mixed into the tick: sends what is due, from the tick's assessment."""

    engine: Engine
    settings: Settings
    store: Store
    now: datetime
    dry_run: bool
    acting: bool
    meetings: dict[str, list[Meeting]]
    states: dict[str, list[cadence.SeriesState]]
    own: dict[str, Own]
    _plans: dict[str, idp.Plan | None]

    def audit(
        self,
        kind: str,
        message: str,
        rel: str | None = None,
        series: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None: ...

    def record(self, action: ActionRecord) -> None: ...

    def held(self, kind: str, rel: str, series: str, detail: str, data: dict[str, Any]) -> None: ...

    def error(self, where: str, exc: BaseException, rel: str | None = None) -> None: ...

    def send_ask(
        self,
        rel: Relationship,
        state: cadence.SeriesState,
        key: str,
        reason: str,
        proposals: list[str],
    ) -> None:
        """Ask the employee to pick a time after the automatic moves are used up."""
        content = messages.render(
            "pick",
            rel,
            state.name,
            state.stage,
            self.now,
            self.now,
            reason=reason,
            proposals=tuple(proposals),
            templates=self.settings.templates,
        )
        mail = OutgoingMail(
            key=key,
            sender=rel.employee.email,
            sender_name=rel.employee.name,
            to=(rel.employee.email,),
            subject=content.subject,
            text=content.text,
            html=content.html,
            message_id=message_id(key),
            headers={"Date": format_datetime(self.now.astimezone(UTC))},
        )
        self._deliver(rel, state.name, state.key, "ask", mail)

    def mail(self) -> None:
        hours = self._hours()
        for rel in self.settings.relationships:
            for meeting in self.meetings.get(rel.id, []):
                for kind in self._mail_kinds(rel, meeting):
                    try:
                        self._send(rel, meeting, kind, hours.get(rel.employee.email, 0.0))
                    except Exception as exc:
                        self.error(f"{kind} for {meeting.id}", exc, rel.id)

    def _mail_kinds(self, rel: Relationship, meeting: Meeting) -> list[str]:
        program = rel.program
        kinds = []
        if meeting.status is Status.SCHEDULED:
            if meeting.key and meeting.key in self.own:
                calendar, _ = self.engine.connection(rel.organizer.account)
                if not calendar.sends_invitations:
                    kinds.append("invite")
            if meeting.start - program.agenda_before <= self.now < meeting.start:
                kinds.append("agenda")
        if meeting.status is Status.HELD:
            sent_at = meeting.end + program.recap_after
            if sent_at <= self.now <= sent_at + program.recap_within:
                kinds.append("recap")
        out = []
        for kind in kinds:
            row = self.store.outbox(self._key(meeting, kind))
            if not row or row["status"] not in ("sent", "uncertain"):
                out.append(kind)
        return out

    @staticmethod
    def _key(meeting: Meeting, kind: str) -> str:
        """The outbox key; an updated invitation (higher SEQUENCE) is a new mail."""
        sequence = meeting.event.sequence if meeting.event else 0
        if kind == "invite" and sequence:
            return f"{meeting.id}:invite{sequence}"
        return f"{meeting.id}:{kind}"

    def _hours(self) -> dict[str, float]:
        hours: dict[str, float] = {}
        for rel in self.settings.relationships:
            year = self.now.astimezone(rel.employee.zone).year
            for m in self.meetings.get(rel.id, []):
                if m.status is Status.HELD and m.start.astimezone(rel.employee.zone).year == year:
                    hours[rel.employee.email] = hours.get(rel.employee.email, 0.0) + (
                        (m.end - m.start).total_seconds() / 3600
                    )
        return hours

    def _plan(self, person: Person) -> idp.Plan | None:
        if person.email not in self._plans:
            plan = None
            if person.plan:
                try:
                    plan = idp.load(person.plan)
                except CadenceError as exc:
                    self.audit("plan-error", f"plan of {person.email} not used: {exc}")
            self._plans[person.email] = plan
        return self._plans[person.email]

    def _next_text(self, rel: Relationship, after: Meeting) -> str:
        upcoming = [
            m
            for m in self.meetings.get(rel.id, [])
            if m.status is Status.SCHEDULED and m.start > after.start
        ]
        if upcoming:
            nxt = upcoming[0]
            lines = messages.when_lines(nxt.start, nxt.end, (rel.employee, rel.partner))
            return f"{rel.program.get(nxt.series).name.replace('_', ' ')}: {lines[0]}"
        dues = [s for s in self.states.get(rel.id, [])]
        if dues:
            soonest = min(dues, key=lambda s: s.due)
            return (
                f"{soonest.name.replace('_', ' ')} due "
                f"{soonest.due.astimezone(rel.employee.zone):%a %d %b %Y}; Cadence will book it"
            )
        return ""

    def _send(self, rel: Relationship, meeting: Meeting, kind: str, hours: float) -> None:
        key = self._key(meeting, kind)
        reason = ""
        if kind == "invite":
            booking = self.store.booking(meeting.key or "")
            reason = (booking or {}).get("reason") or ""
        content = messages.render(
            "invitation" if kind == "invite" else kind,
            rel,
            meeting.series,
            meeting.stage,
            meeting.start,
            meeting.end,
            plan=self._plan(rel.employee),
            invested_hours=hours,
            next_meeting=self._next_text(rel, meeting) if kind == "recap" else "",
            reason=reason,
            templates=self.settings.templates,
        )
        in_reply_to: str | None = None
        references: tuple[str, ...] = ()
        if kind == "recap":
            agenda = self.store.outbox(f"{meeting.id}:agenda")
            if agenda and agenda["status"] == "sent":
                in_reply_to = agenda["message_id"]
                references = (agenda["message_id"],)
        invitation = None
        if kind == "invite":
            title = messages.render_title(rel.program.get(meeting.series).title, rel, meeting.stage)
            draft = EventDraft(
                key=meeting.key or meeting.id,
                organizer=rel.organizer,
                attendees=(rel.attendee,),
                title=title,
                start=meeting.start,
                end=meeting.end,
                timezone=rel.organizer.timezone,
                series=meeting.series,
                stage=meeting.stage,
            )
            sequence = meeting.event.sequence if meeting.event else 0
            invitation = Invitation(
                "REQUEST", ical.invitation(draft, stamp=self.now, sequence=sequence)
            )
        mail = OutgoingMail(
            key=key,
            sender=rel.employee.email,
            sender_name=rel.employee.name,
            to=(rel.employee.email, rel.partner.email),
            subject=content.subject,
            text=content.text,
            html=content.html,
            message_id=message_id(key),
            in_reply_to=in_reply_to,
            references=references,
            invitation=invitation,
            headers={"Date": format_datetime(self.now.astimezone(UTC))},
        )
        self._deliver(rel, meeting.series, meeting.id, kind, mail)

    def _deliver(
        self, rel: Relationship, series: str, meeting: str, kind: str, mail: OutgoingMail
    ) -> None:
        """Send one mail with its outbox row written before and completed after."""
        data = {"subject": mail.subject, "to": list(mail.to), "message_id": mail.message_id}
        if not self.acting:
            self.held(kind, rel.id, series, mail.subject, data)
            return
        _, mailer = self.engine.connection(rel.employee.account)
        earlier = self.store.outbox(mail.key)
        if earlier and earlier["status"] == "sending":
            # a send was interrupted: ask the provider whether it went out
            went = _was_sent(mailer, mail)
            if went is not False:
                status = "sent" if went else "uncertain"
                self.store.save_outbox({"key": mail.key, "status": status}, self.now)
                text = (
                    f"{kind} {mail.subject!r}: interrupted send confirmed by the provider"
                    if went
                    else f"{kind} {mail.subject!r} may have gone out before an interruption; "
                    "not sent again, to never send it twice"
                )
                self.audit(kind, text, rel.id, series, data)
                self.record(
                    _record(
                        kind, rel.id, series, mail.subject, "already" if went else "uncertain", data
                    )
                )
                return
        self.store.save_outbox(
            {
                "key": mail.key,
                "meeting": meeting,
                "kind": kind,
                "relationship": rel.id,
                "series": series,
                "status": "pending",
                "message_id": mail.message_id,
                "sender": mail.sender,
                "recipients": ", ".join(mail.to),
                "subject": mail.subject,
            },
            self.now,
        )
        faults.point(f"mail:{kind}:before-send")
        self.store.save_outbox({"key": mail.key, "status": "sending"}, self.now)
        faults.point(f"mail:{kind}:sending")
        try:
            sent = mailer.send(mail)
        except TransientError as exc:
            if not exc.maybe_done:  # certainly not sent: the next tick sends it
                self.store.save_outbox({"key": mail.key, "status": "pending"}, self.now)
            raise
        faults.point(f"mail:{kind}:after-send")
        self.store.save_outbox(
            {"key": mail.key, "status": "sent", "location": sent.where, "sent_at": _ts(self.now)},
            self.now,
        )
        data["where"] = sent.where
        self.audit(kind, f"{kind} sent: {mail.subject}", rel.id, series, data)
        outcome = "already" if sent.already else "done"
        self.record(_record(kind, rel.id, series, mail.subject, outcome, data))


def _was_sent(mailer: Mailer, mail: OutgoingMail) -> bool | None:
    """Whether the provider has ``mail`` already; None when it cannot tell."""
    check = getattr(mailer, "was_sent", None)
    if check is None:
        return None
    result: bool | None = check(mail)
    return result


def _record(*args: Any) -> ActionRecord:
    from agent.engine import ActionRecord

    return ActionRecord(*args)
