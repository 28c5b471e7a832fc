"""One tick: sync → assess → plan → act → log.

The engine alone does I/O. Each side effect is bracketed by store writes: a booking or
outbox row is recorded as pending before the call and as done after it, and the
connectors are idempotent on the same key, so a crash anywhere followed by a restart
finishes the job without doing anything twice. One relationship's failure is logged
and never stops the others.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from agent import connectors, faults
from agent import plan as idp
from agent.config import Settings
from agent.connectors.base import (
    CadenceError,
    Calendar,
    CursorExpired,
    Mailer,
    RetryPolicy,
)
from agent.model import (
    EventDraft,
    Interval,
    Invitation,
    OutgoingMail,
    Person,
    Relationship,
)
from agent.rules import cadence, classify, messages, slots
from agent.rules.classify import Meeting, Own, Status
from agent.store import Store

log = logging.getLogger("cadence.engine")

HISTORY = timedelta(days=400)


@dataclass(frozen=True)
class ActionRecord:
    """One thing a tick did, planned, or decided not to do."""

    kind: str
    relationship: str | None
    series: str | None
    detail: str
    outcome: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class TickReport:
    tick: int
    now: datetime
    actions: list[ActionRecord] = field(default_factory=list)
    states: list[cadence.SeriesState] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def count(self, kind: str, outcome: str = "done") -> int:
        return sum(1 for a in self.actions if a.kind == kind and a.outcome == outcome)

    @property
    def ok(self) -> bool:
        return not self.errors


def day_floor(dt: datetime) -> datetime:
    return dt.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def message_id(key: str) -> str:
    return f"<{key.replace(':', '.')}@cadence>"


class Engine:
    """Runs ticks for one configuration against its store and accounts."""

    def __init__(
        self,
        settings: Settings,
        store: Store | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.store = store or Store(settings.store)
        self._own_store = store is None
        self.retry = retry or RetryPolicy()
        self._connections: dict[str, tuple[Calendar, Mailer]] = {}

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for calendar, mailer in self._connections.values():
            calendar.close()
            mailer.close()
        self._connections.clear()
        if self._own_store:
            self.store.close()

    def connection(self, account: str) -> tuple[Calendar, Mailer]:
        if account not in self._connections:
            people = [p for p in self.settings.people.values() if p.account == account]
            ctx = connectors.Context(
                name=account,
                account=self.settings.accounts[account],
                settings=self.settings,
                people=people,
                retry=self.retry,
                log=logging.getLogger(f"cadence.connector.{account}"),
            )
            self._connections[account] = connectors.connect(ctx)
        return self._connections[account]

    # --- the tick ------------------------------------------------------------------------

    def window(self, now: datetime) -> Interval:
        ahead = max(
            (
                max(s.every for s in p.series) + p.booking.horizon + p.booking.lead_time
                for p in self.settings.programs.values()
                if p.series
            ),
            default=timedelta(days=30),
        )
        return Interval(day_floor(now) - HISTORY, day_floor(now) + ahead + timedelta(days=1))

    def people(self) -> list[Person]:
        emails = sorted(
            {r.employee.email for r in self.settings.relationships}
            | {r.partner.email for r in self.settings.relationships}
        )
        return [self.settings.people[e] for e in emails]

    def tick(self, now: datetime, *, dry_run: bool = False) -> TickReport:
        """Run one reconciliation pass as of ``now``; with ``dry_run`` change nothing."""
        now = now.astimezone(UTC)
        tick_id = 0 if dry_run else self.store.begin_tick(now, datetime.now(UTC))
        run = _Tick(self, tick_id, now, dry_run)
        status = "failed"
        try:
            run.sync()
            run.assess()
            run.book()
            run.mail()
            status = "ok" if not run.report.errors else "partial"
        finally:
            if not dry_run:
                summary = {
                    "booked": run.report.count("book"),
                    "sent": sum(run.report.count(k) for k in ("agenda", "recap", "invite")),
                    "errors": len(run.report.errors),
                }
                self.store.end_tick(tick_id, status, summary, datetime.now(UTC))
        return run.report


class _Tick:
    """The state of one tick in progress."""

    def __init__(self, engine: Engine, tick_id: int, now: datetime, dry_run: bool) -> None:
        self.engine = engine
        self.settings = engine.settings
        self.store = engine.store
        self.tick_id = tick_id
        self.now = now
        self.dry_run = dry_run
        self.report = TickReport(tick_id, now)
        self.failed_people: set[str] = set()
        self.meetings: dict[str, list[Meeting]] = {}
        self.states: dict[str, list[cadence.SeriesState]] = {}
        self.own: dict[str, Own] = {}
        self.extra_busy: dict[str, list[Interval]] = {}
        self._plans: dict[str, idp.Plan | None] = {}

    # --- logging helpers -----------------------------------------------------------------

    def audit(
        self,
        kind: str,
        message: str,
        rel: str | None = None,
        series: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        log.info("%s%s: %s", kind, f" [{rel}]" if rel else "", message)
        if not self.dry_run:
            self.store.audit(self.tick_id, self.now, kind, message, rel, series, data)

    def record(self, action: ActionRecord) -> None:
        self.report.actions.append(action)

    def error(self, where: str, exc: BaseException, rel: str | None = None) -> None:
        message = f"{where}: {type(exc).__name__}: {exc}"
        self.report.errors.append(message)
        self.audit("error", message, rel)
        self.record(ActionRecord("error", rel, None, message, "failed"))

    # --- sync ----------------------------------------------------------------------------

    def sync(self) -> None:
        window = self.engine.window(self.now)
        for person in self.engine.people():
            try:
                calendar, _ = self.engine.connection(person.account)
                cursor = self.store.cursor(person.email)
                try:
                    changes = calendar.changes(person, cursor, window)
                except CursorExpired:
                    self.audit("sync", f"cursor of {person.email} expired: full resync")
                    changes = calendar.changes(person, None, window)
                faults.point("sync:after-fetch")
                self.store.apply(person.email, changes, window, self.now)
                for item in changes.skipped:
                    self.audit(
                        "skipped",
                        f"malformed event {item.ref} on {item.owner}'s calendar skipped: {item.reason}",
                        data={"owner": item.owner, "ref": item.ref},
                    )
            except CadenceError as exc:
                self.failed_people.add(person.email)
                self.error(f"sync {person.email}", exc)
            except Exception as exc:  # a connector bug must not stop the tick
                self.failed_people.add(person.email)
                self.error(f"sync {person.email}", exc)

    # --- assess --------------------------------------------------------------------------

    def assess(self) -> None:
        self._settle_pending()
        self.own = {
            b["key"]: Own(b["relationship"], b["series"], b["stage"]) for b in self.store.bookings()
        }
        for row in self.store.bookings():
            if row["status"] == "booked" and row["start"] and row["end"]:
                iv = Interval(_parse(row["start"]), _parse(row["end"]))
                for email in _people_of(row["relationship"]):
                    self.extra_busy.setdefault(email, []).append(iv)
        since = self.now - timedelta(days=400)
        for rel in self.settings.relationships:
            try:
                self._assess(rel, since)
            except Exception as exc:
                self.error(f"assess {rel.id}", exc, rel.id)

    def _settle_pending(self) -> None:
        """Mark bookings left pending by a crash as booked when their event exists."""
        for row in self.store.bookings():
            if row["status"] != "pending":
                continue
            event = self.store.event_by_key(row["key"])
            if event is None:
                continue  # never created: the plan step books it again under the same key
            if not self.dry_run:
                self.store.save_booking(
                    {
                        "key": row["key"],
                        "status": "booked",
                        "event_id": event.id,
                        "start": _ts(event.start),
                        "end": _ts(event.end),
                    },
                    self.now,
                )
            self.audit(
                "book",
                f"booking {row['key']} found on the calendar after an interruption: recorded",
                row["relationship"],
                row["series"],
            )

    def _assess(self, rel: Relationship, since: datetime, again: bool = False) -> None:
        events = self.store.events([rel.employee.email, rel.partner.email], since)
        found = classify.meetings(rel, events, self.own, self.now)
        states = cadence.assess(rel, found, self.now)
        self.meetings[rel.id] = found
        self.states[rel.id] = states
        if again:
            return
        self.report.states.extend(states)
        if not self.dry_run:
            self.store.save_meetings(
                rel.id,
                [
                    {
                        "id": m.id,
                        "relationship": rel.id,
                        "series": m.series,
                        "stage": m.stage,
                        "start": _ts(m.start),
                        "end": _ts(m.end),
                        "status": str(m.status),
                        "key": m.key,
                        "declined_by": m.declined_by,
                    }
                    for m in found
                ],
                self.tick_id,
            )
        for state in states:
            summary = self._summary(state)
            last = self.store.audit_rows(relationship=rel.id, kind="assess", limit=50)
            previous = next(
                (r["message"] for r in reversed(last) if r["series"] == state.name), None
            )
            if previous != summary:
                self.audit("assess", summary, rel.id, state.name, {"lapsed": state.lapsed})
            if state.lapsed:
                self.record(ActionRecord("lapse", rel.id, state.name, state.due_reason, "found"))

    def _summary(self, state: cadence.SeriesState) -> str:
        zone = state.relationship.employee.zone
        if state.next_scheduled:
            when = state.next_scheduled.start.astimezone(zone)
            return f"{state.name}: next scheduled {when:%Y-%m-%d %H:%M} ({state.relationship.employee.timezone})"
        if state.skip_reason:
            return state.skip_reason
        return state.due_reason if state.lapsed else f"{state.name}: {state.due_reason}"

    # --- book ----------------------------------------------------------------------------

    def book(self) -> None:
        needs: list[cadence.BookingNeed] = []
        for rel in self.settings.relationships:
            for state in self.states.get(rel.id, []):
                need = cadence.booking_need(state, self.now)
                if need is None:
                    if state.skip_reason:
                        self.record(
                            ActionRecord("skip", rel.id, state.name, state.skip_reason, "skipped")
                        )
                    continue
                if {rel.employee.email, rel.partner.email} & self.failed_people:
                    self.record(
                        ActionRecord(
                            "book", rel.id, state.name, "calendar could not be read", "deferred"
                        )
                    )
                    continue
                earlier = self.store.booking(state.key)
                if earlier and earlier["status"] == "booked":
                    # the agent's meeting for this due date was declined or cancelled
                    text = (
                        f"{state.name}: the booked meeting {earlier['start']} is no longer "
                        "on; not booking it again automatically"
                    )
                    self.audit("not-rebooked", text, rel.id, state.name)
                    self.record(ActionRecord("book", rel.id, state.name, text, "held-back"))
                    continue
                needs.append(need)
        needs.sort(key=lambda n: (n.state.due, n.state.relationship.id, n.state.name))
        if not needs:
            return
        busy = self._busy(needs)
        for need in needs:
            rel = need.state.relationship
            try:
                self._book(need, busy)
            except Exception as exc:
                self.error(f"book {rel.id} {need.state.name}", exc, rel.id)

    def _busy(self, needs: Sequence[cadence.BookingNeed]) -> dict[str, list[Interval]]:
        span = Interval(
            min(n.earliest for n in needs) - timedelta(days=1),
            max(n.latest for n in needs) + timedelta(days=2),
        )
        by_account: dict[str, dict[str, Person]] = {}
        for n in needs:
            for p in (n.state.relationship.employee, n.state.relationship.partner):
                by_account.setdefault(p.account, {})[p.email] = p
        busy: dict[str, list[Interval]] = {}
        for account, people in by_account.items():
            try:
                calendar, _ = self.engine.connection(account)
                found = calendar.busy(list(people.values()), span)
                faults.point("book:after-busy")
                for email, intervals in found.items():
                    busy.setdefault(email, []).extend(intervals)
            except CadenceError as exc:
                self.error(f"free/busy of account {account}", exc)
                for email in people:
                    self.failed_people.add(email)
        for email, extra in self.extra_busy.items():
            busy.setdefault(email, []).extend(extra)
        return busy

    def _book(self, need: cadence.BookingNeed, busy: dict[str, list[Interval]]) -> None:
        rel, series = need.state.relationship, need.state.series
        # an earlier booking in this tick may have changed the picture (skip_near)
        fresh = next(s for s in self.states[rel.id] if s.name == series.name)
        if fresh is not need.state:
            renewed = cadence.booking_need(fresh, self.now)
            if renewed is None:
                text = fresh.skip_reason or f"{series.name}: no longer needs a booking"
                self.audit("skip", text, rel.id, series.name)
                self.record(ActionRecord("skip", rel.id, series.name, text, "skipped"))
                return
            need = renewed
        state = need.state
        if {rel.employee.email, rel.partner.email} & self.failed_people:
            self.record(
                ActionRecord("book", rel.id, series.name, "free/busy unavailable", "deferred")
            )
            return
        booking = rel.program.booking
        request = slots.SlotRequest(
            employee=rel.employee,
            partner=rel.partner,
            duration=series.duration,
            earliest=need.earliest,
            latest=need.latest,
            window=booking.window,
            buffer=booking.buffer,
            granularity=booking.granularity,
            prefer=need.prefer,
        )
        result = slots.find_slot(
            request, busy.get(rel.employee.email, []), busy.get(rel.partner.email, [])
        )
        if result.slot is None:
            text = f"{series.name} not booked: {result.reason}"
            self.audit("not-booked", text, rel.id, series.name, {"reason": need.reason})
            self.record(ActionRecord("book", rel.id, series.name, text, "no-slot"))
            return
        slot = result.slot
        title = messages.render_title(series.title, rel, state.stage)
        draft = EventDraft(
            key=state.key,
            organizer=rel.organizer,
            attendees=(rel.attendee,),
            title=title,
            start=slot.start,
            end=slot.end,
            timezone=rel.organizer.timezone,
            description=f"{need.reason}\nBooked by Cadence ({result.reason}).",
            conference=booking.conference,
            relationship=rel.id,
            series=series.name,
            stage=state.stage,
        )
        data = {
            "key": draft.key,
            "start": _ts(slot.start),
            "end": _ts(slot.end),
            "stage": state.stage,
            "employee_local": f"{slot.start.astimezone(rel.employee.zone):%a %Y-%m-%d %H:%M} {rel.employee.timezone}",
            "partner_local": f"{slot.start.astimezone(rel.partner.zone):%a %Y-%m-%d %H:%M} {rel.partner.timezone}",
            "why": need.reason,
            "slot_reason": result.reason,
            "title": title,
        }
        if self.dry_run:
            self.record(ActionRecord("book", rel.id, series.name, title, "planned", data))
            return
        self.store.save_booking(
            {
                "key": draft.key,
                "relationship": rel.id,
                "series": series.name,
                "stage": state.stage,
                "due": _ts(state.due),
                "start": _ts(slot.start),
                "end": _ts(slot.end),
                "organizer": rel.organizer.email,
                "status": "pending",
                "reason": need.reason,
            },
            self.now,
        )
        faults.point("book:before-create")
        calendar, _ = self.engine.connection(rel.organizer.account)
        existing = calendar.find(rel.organizer, draft.key)
        event = existing or calendar.create(draft)
        faults.point("book:after-create")
        self.store.save_booking(
            {
                "key": draft.key,
                "status": "booked",
                "event_id": event.id,
                "start": _ts(event.start),
                "end": _ts(event.end),
            },
            self.now,
        )
        self.store.put_event(event)
        self.own[draft.key] = Own(rel.id, series.name, state.stage)
        for email in (rel.employee.email, rel.partner.email):
            busy.setdefault(email, []).append(event.interval)
        self.audit("book", f"{need.reason}; booked {result.reason}", rel.id, series.name, data)
        self.record(
            ActionRecord(
                "book", rel.id, series.name, title, "already" if existing else "done", data
            )
        )
        self._assess(
            rel, self.now - HISTORY, again=True
        )  # the new meeting takes part in the mail step

    # --- mail ----------------------------------------------------------------------------

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
            row = self.store.outbox(f"{meeting.id}:{kind}")
            if not row or row["status"] != "sent":
                out.append(kind)
        return out

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
        key = f"{meeting.id}:{kind}"
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
            from agent import ical

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
            headers={"Date": _rfc2822(self.now)},
        )
        data = {"subject": content.subject, "to": list(mail.to), "message_id": mail.message_id}
        if self.dry_run:
            self.record(
                ActionRecord(kind, rel.id, meeting.series, content.subject, "planned", data)
            )
            return
        self.store.save_outbox(
            {
                "key": key,
                "meeting": meeting.id,
                "kind": kind,
                "relationship": rel.id,
                "series": meeting.series,
                "status": "pending",
                "message_id": mail.message_id,
                "sender": mail.sender,
                "recipients": ", ".join(mail.to),
                "subject": mail.subject,
            },
            self.now,
        )
        faults.point(f"mail:{kind}:before-send")
        _, mailer = self.engine.connection(rel.employee.account)
        sent = mailer.send(mail)
        faults.point(f"mail:{kind}:after-send")
        self.store.save_outbox(
            {"key": key, "status": "sent", "location": sent.where, "sent_at": _ts(self.now)},
            self.now,
        )
        data["where"] = sent.where
        self.audit(kind, f"{kind} sent: {content.subject}", rel.id, meeting.series, data)
        self.record(
            ActionRecord(
                kind,
                rel.id,
                meeting.series,
                content.subject,
                "already" if sent.already else "done",
                data,
            )
        )


def _ts(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _rfc2822(dt: datetime) -> str:
    from email.utils import format_datetime

    return format_datetime(dt.astimezone(UTC))


def _people_of(relationship_id: str) -> Iterable[str]:
    return relationship_id.split("/")
