"""The mail step of a tick: invitations, agendas, recaps and pick-a-time requests.

Each mail has an outbox key (meeting id and kind). The outbox row is written as
pending before sending and as sent after; the Message-ID is derived from the key, and a
recap threads to its agenda.

Replies to recaps (opt-in per program: ``recap: {collect_replies: true}``) are read
from mailers that can read (``ReplyReader``), matched to the recap by In-Reply-To and
References, and their checklist lines recorded as actions in the store, once per
Message-ID. Each recorded reply sends the updated recap to the leader and the
employee, threaded under the reply, through the outbox like every other mail.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, date, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.connectors.base import IncomingMail, Mailer, ReplyReader
from agent.core import faults
from agent.core.errors import CadenceError, TransientError
from agent.core.model import EventDraft, Invitation, OutgoingMail, Person, Relationship
from agent.core.timestamps import from_store, to_store
from agent.formats import ical
from agent.rules import cadence, messages, replies
from agent.rules.classify import Meeting, Own, Status
from agent.settings import idp as idp
from agent.settings.config import Settings
from agent.store.sqlite import Store

if TYPE_CHECKING:
    from agent.tick.engine import ActionRecord, Engine


def message_id(key: str) -> str:
    """A valid RFC 5322 msg-id from an outbox key. Keys hold calendar UIDs, which may
    hold an "@" of their own; a second "@" would make mail libraries rewrite the header,
    and replies would then answer an id the outbox does not know. A long key (a UID
    of a hundred characters) is hashed, so the header never needs folding."""
    local = re.sub(r"[^A-Za-z0-9._-]", ".", key)
    if len(local) > 48:  # "In-Reply-To: <...@cadence>" stays within 78 characters
        kind = re.sub(r"[^A-Za-z0-9._-]", ".", key.rsplit(":", 1)[-1])[:16]
        local = f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.{kind}"
    return f"<{local}@cadence>"


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
            language=self.settings.file.language,
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
        try:
            self.collect_replies()
        except Exception as exc:  # reading replies must never stop agendas and recaps
            self.error("replies", exc)
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
            path = self._plan_path(person)
            if path:
                try:
                    plan = idp.load(path)
                except CadenceError as exc:
                    self.audit("plan-error", f"plan of {person.email} not used: {exc}")
            self._plans[person.email] = plan
        return self._plans[person.email]

    def _plan_path(self, person: Person) -> Path | None:
        """The person's ``plan:``, else ``plans/<email>.yaml`` when that file exists."""
        return plan_path(self.settings, person)

    def _actions(self, person: Person) -> replies.Actions:
        """The plan's action items with those recorded from replies laid over them."""
        return replies.merge(self._plan(person), recorded_actions(self.store, person.email))

    def _first(self, rel: Relationship, meeting: Meeting) -> bool:
        """Whether ``meeting`` is the first of its series for the relationship."""
        return not any(
            m.series == meeting.series and m.status is Status.HELD and m.start < meeting.start
            for m in self.meetings.get(rel.id, [])
        )

    def _previous(self, rel: Relationship, meeting: Meeting) -> datetime | None:
        """When the relationship's previous held meeting started, if any."""
        held = [
            m.start
            for m in self.meetings.get(rel.id, [])
            if m.status is Status.HELD and m.start < meeting.start
        ]
        return max(held, default=None)

    def _next_text(self, rel: Relationship, after: Meeting) -> str:
        upcoming = [
            m
            for m in self.meetings.get(rel.id, [])
            if m.status is Status.SCHEDULED and m.start > after.start
        ]
        if upcoming:
            nxt = upcoming[0]
            lines = messages.when_lines(nxt.start, nxt.end, (rel.employee, rel.partner))
            return f"{messages.what(rel, nxt.series, nxt.stage)}: {lines[0]}"
        dues = [s for s in self.states.get(rel.id, [])]
        if dues:
            soonest = min(dues, key=lambda s: s.due)
            due = soonest.due.astimezone(rel.employee.zone)
            return (
                f"{messages.what(rel, soonest.name, soonest.stage)} due "
                f"{due:%a} {due.day} {due:%b %Y}; Cadence will book it"
            )
        return ""

    def _send(self, rel: Relationship, meeting: Meeting, kind: str, hours: float) -> None:
        key = self._key(meeting, kind)
        reason = ""
        if kind == "invite":
            booking = self.store.booking(meeting.key or "")
            reason = (booking.reason if booking else None) or ""
        content = messages.render(
            "invitation" if kind == "invite" else kind,
            rel,
            meeting.series,
            meeting.stage,
            meeting.start,
            meeting.end,
            plan=self._plan(rel.employee),
            actions=self._actions(rel.employee),
            invested_hours=hours,
            next_meeting=self._next_text(rel, meeting) if kind == "recap" else "",
            reason=reason,
            templates=self.settings.templates,
            first=self._first(rel, meeting),
            language=self.settings.file.language,
            since=self._previous(rel, meeting),
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
            {
                "key": mail.key,
                "status": "sent",
                "location": sent.where,
                "sent_at": to_store(self.now),
            },
            self.now,
        )
        data["where"] = sent.where
        self.audit(kind, f"{kind} sent: {mail.subject}", rel.id, series, data)
        outcome = "already" if sent.already else "done"
        self.record(_record(kind, rel.id, series, mail.subject, outcome, data))

    # --- replies to recaps ----------------------------------------------------------------

    def _collecting(self, rel: Relationship) -> bool:
        program = self.settings.file.programs.get(rel.program.name)
        return bool(program and program.recap.collect_replies)

    def collect_replies(self) -> None:
        """Read replies to recaps, record their actions, send the updated recaps."""
        accounts = sorted(
            {r.employee.account for r in self.settings.relationships if self._collecting(r)}
        )
        for account in accounts:
            _, mailer = self.engine.connection(account)
            if not isinstance(mailer, ReplyReader):
                self._audit_quietly(
                    "replies",
                    f"account {account} cannot read replies to recaps yet; none collected",
                )
                continue
            seen = self.store.read_refs()
            for incoming in mailer.replies():
                if incoming.ref in seen:
                    continue  # read at an earlier tick; parsing it again would change nothing
                try:
                    self._take_reply(incoming)
                except Exception as exc:
                    self.error(f"reply {incoming.ref}", exc)
        for row in self.store.replies(status="recorded"):
            done = self.store.outbox(row["update_key"])
            if done and done["status"] in ("sent", "uncertain"):
                continue  # "uncertain": it may have gone out; never send it twice
            try:
                self._send_update(row)
            except Exception as exc:
                self.error(f"updated recap for {row['message_id']}", exc, row["relationship"])

    def _audit_quietly(self, kind: str, message: str) -> None:
        last = self.store.audit_rows(kind=kind, limit=1)
        if not last or last[0]["message"] != message:
            self.audit(kind, message)

    def _take_reply(self, incoming: IncomingMail) -> None:
        reply = replies.parse(incoming.raw)
        mid = reply.message_id or (
            "<" + hashlib.sha256(incoming.raw).hexdigest()[:32] + "@cadence.unidentified>"
        )
        if self.store.reply(mid):
            return  # read before: each reply counts once
        row: dict[str, Any] = {
            "message_id": mid,
            "ref": incoming.ref,
            "sender": reply.sender,
            "received_at": to_store(reply.date) if reply.date else to_store(self.now),
            "items": json.dumps([_item_json(i) for i in reply.items]),
            "notes": reply.notes,
        }
        recap = None
        for parent in reply.parents:
            found = self.store.outbox_by_message_id(parent)
            if found and found["kind"] in ("recap", "update"):
                recap = found
                break
        rel = next(
            (r for r in self.settings.relationships if recap and r.id == recap["relationship"]),
            None,
        )
        reason = ""
        if recap is None or rel is None:
            reason = "not a reply to a recap"
        elif not self._collecting(rel):
            reason = f"program {rel.program.name} does not collect replies"
        elif reply.sender not in (rel.employee.email, rel.partner.email):
            reason = f"{reply.sender or 'an unknown sender'} is not in {rel.id}"
        if reason or rel is None or recap is None:
            if not self.dry_run:
                self.store.save_reply({**row, "status": "ignored", "reason": reason}, [], self.now)
            if recap is not None:  # mail about our recaps deserves a word in the log
                self.audit("reply", f"reply {mid} ignored: {reason}", recap["relationship"])
            return
        plan = self._plan(rel.employee)
        known = {idp.normalize(a.title): a for a in self._actions(rel.employee).all}
        actions = []
        for item in reply.items:
            actions.append(
                {
                    "employee": rel.employee.email,
                    "norm": idp.normalize(item.title),
                    "title": item.title,
                    "goal": replies.goal_for(item, plan, known),
                    "due": item.due.isoformat() if item.due else None,
                    "status": "done" if item.done else "open",
                    "relationship": rel.id,
                    "meeting": recap["meeting"],
                    "source": mid,
                }
            )
        if not actions:
            actions_note = "no action lines"
        else:
            actions_note = ", ".join(
                f"{'done' if a['status'] == 'done' else 'open'}: {a['title']}" for a in actions
            )
        row.update(
            meeting=recap["meeting"],
            relationship=rel.id,
            employee=rel.employee.email,
            status="recorded",
            reason="; ".join(reply.problems) or None,
            update_key=f"{recap['meeting']}:update:{hashlib.sha256(mid.encode()).hexdigest()[:12]}",
        )
        data = {"message_id": mid, "from": reply.sender, "actions": len(actions)}
        if self.dry_run:
            self.record(_record("reply", rel.id, None, actions_note, "planned", data))
            return
        self.store.save_reply(row, actions, self.now)
        faults.point("reply:recorded")  # recorded, its updated recap not yet sent
        self.audit("reply", f"reply from {reply.sender}: {actions_note}", rel.id, None, data)
        for problem in reply.problems:
            self.audit("reply", f"reply {mid}: {problem}", rel.id)
        self.record(_record("reply", rel.id, None, actions_note, "done", data))

    def _send_update(self, row: dict[str, Any]) -> None:
        rel = next(r for r in self.settings.relationships if r.id == row["relationship"])
        meeting = next((m for m in self.meetings.get(rel.id, []) if m.id == row["meeting"]), None)
        if meeting is None:
            self._audit_quietly(
                "reply", f"meeting {row['meeting']} is no longer on the calendars: no update sent"
            )
            return
        items = tuple(
            replies.Item(i["title"], i["done"], date.fromisoformat(i["due"]) if i["due"] else None)
            for i in json.loads(row["items"] or "[]")
        )
        sender = self.settings.people.get(row["sender"])
        received = from_store(row["received_at"]).astimezone(rel.employee.zone)
        content = messages.render(
            "recap",
            rel,
            meeting.series,
            meeting.stage,
            meeting.start,
            meeting.end,
            plan=self._plan(rel.employee),
            actions=self._actions(rel.employee),
            invested_hours=self._hours().get(rel.employee.email, 0.0),
            next_meeting=self._next_text(rel, meeting),
            templates=self.settings.templates,
            first=self._first(rel, meeting),
            language=self.settings.file.language,
            update=messages.Update(
                sender=sender.name if sender else row["sender"],
                received=f"{received:%a} {received.day} {received:%b %Y, %H:%M}",
                items=items,
                notes=row["notes"] or "",
            ),
        )
        agenda = self.store.outbox(f"{meeting.id}:agenda")
        recap = self.store.outbox(f"{meeting.id}:recap")
        sent = [r["message_id"] for r in (agenda, recap) if r and r["status"] == "sent"]
        references = (*sent, row["message_id"])
        to = tuple(dict.fromkeys([*leaders_of(self.settings, rel), rel.employee.email]))
        mail = OutgoingMail(
            key=row["update_key"],
            sender=rel.employee.email,
            sender_name=rel.employee.name,
            to=to,
            subject=content.subject,
            text=content.text,
            html=content.html,
            message_id=message_id(row["update_key"]),
            in_reply_to=row["message_id"],
            references=references,
            headers={"Date": format_datetime(self.now.astimezone(UTC))},
        )
        self._deliver(rel, meeting.series, meeting.id, "update", mail)


def leaders_of(settings: Settings, rel: Relationship) -> list[str]:
    """Who gets the paper trail: the employee's leaders, else the relationship's partner."""
    leaders = [
        r.partner.email
        for r in settings.relationships
        if r.employee.email == rel.employee.email and r.role == "leader"
    ]
    return leaders or [rel.partner.email]


def plan_path(settings: Settings, person: Person) -> Path | None:
    """The person's ``plan:``, else ``plans/<email>.yaml`` next to the config if it exists."""
    if person.plan:
        return Path(person.plan)
    default = settings.resolve(idp.default_path(person.email))
    return default if default.exists() else None


def recorded_actions(store: Store, employee: str) -> list[replies.Action]:
    return [
        replies.Action(
            title=r["title"],
            goal=r["goal"],
            due=date.fromisoformat(r["due"]) if r["due"] else None,
            status=r["status"],
            source="reply",
            changed=r["updated_at"],
        )
        for r in store.actions(employee)
    ]


def _item_json(item: replies.Item) -> dict[str, Any]:
    return {
        "title": item.title,
        "done": item.done,
        "due": item.due.isoformat() if item.due else None,
        "goal": item.goal,
    }


def _was_sent(mailer: Mailer, mail: OutgoingMail) -> bool | None:
    """Whether the provider has ``mail`` already; None when it cannot tell."""
    check = getattr(mailer, "was_sent", None)
    if check is None:
        return None
    result: bool | None = check(mail)
    return result


def _record(*args: Any) -> ActionRecord:
    from agent.tick.engine import ActionRecord

    return ActionRecord(*args)
