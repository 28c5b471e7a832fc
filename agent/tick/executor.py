"""The executor: carries out the planner's actions, each bracketed by store writes.

A booking or outbox row is recorded as pending before the provider is called and as
done after it, and the connectors are idempotent on the same key, so a crash anywhere
followed by a restart finishes the job without doing anything twice. The executor
decides nothing the planner has not: when an action fails, it only holds back the
actions that depend on it (the mails of a meeting that was not made, a relationship's
next booking), and the next tick plans them again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from agent.connectors.base import Calendar, ConcurrentWrites, ConfirmsSend, Mailer
from agent.core import faults
from agent.core.errors import TransientError
from agent.core.model import Event, Interval, OutgoingMail
from agent.core.timestamps import to_store
from agent.rules.actions import Accept, Action, Book, Cancel, Move, Note, Send
from agent.store.broken import database_errors
from agent.store.claims import Claimed

if TYPE_CHECKING:
    from agent.store.sqlite import Store
    from agent.tick.host import Host

log = logging.getLogger("cadence.engine")


@dataclass(frozen=True)
class ActionRecord:
    """One thing a tick did, planned, or decided not to do."""

    kind: str
    relationship: str | None
    series: str | None
    detail: str
    outcome: str
    data: dict[str, Any] = field(default_factory=dict)


class Journal:
    """The tick's report and its audit rows: what was done, held back or failed."""

    def __init__(self, store: Store, tick_id: int, now: datetime, dry_run: bool) -> None:
        self.store = store
        self.tick_id = tick_id
        self.now = now
        self.dry_run = dry_run
        self.actions: list[ActionRecord] = []
        self.errors: list[str] = []
        #: why actions are held rather than done: the config is read-only, or the guard
        self.holding = "read-only"

    def audit(
        self,
        kind: str,
        message: str,
        rel: str | None = None,
        series: str | None = None,
        data: dict[str, Any] | None = None,
    ) -> None:
        log.info("%s%s: %s", kind, f" [{rel}]" if rel else "", message, extra={"relationship": rel})
        if not self.dry_run:
            self.store.audit(self.tick_id, self.now, kind, message, rel, series, data)

    def audit_once(self, kind: str, message: str, rel: str, series: str | None) -> None:
        """Audit unless the same message is among the relationship's latest of its kind."""
        last = self.store.audit_rows(relationship=rel, kind=kind, limit=20)
        if not any(r["series"] == series and r["message"] == message for r in last):
            self.audit(kind, message, rel, series)

    def audit_quietly(self, kind: str, message: str) -> None:
        """Audit unless it is the very last message of its kind (no repeats each tick)."""
        last = self.store.audit_rows(kind=kind, limit=1)
        if not last or last[0]["message"] != message:
            self.audit(kind, message)

    def record(self, action: ActionRecord) -> None:
        self.actions.append(action)

    def held(
        self, kind: str, rel: str, series: str | None, detail: str, data: dict[str, Any]
    ) -> None:
        """An action not taken because the tick only plans, the config is read-only, or
        the guard holds the plan."""
        self.record(ActionRecord(kind, rel, series, detail, "planned", data))
        if not self.dry_run:
            why = self.holding
            self.audit_once(why, f"{why}, not done: {kind} {detail}", rel, series)

    def error(self, where: str, exc: BaseException, rel: str | None = None) -> None:
        if isinstance(exc, database_errors()):
            # a store that cannot be written or read is nobody's failure in particular:
            # it ends the tick, and the command says what to do in one line
            raise exc
        message = f"{where}: {type(exc).__name__}: {exc}"
        self.errors.append(message)
        self.audit("error", message, rel)
        self.record(ActionRecord("error", rel, None, message, "failed"))


class Executor:
    """Runs a plan's actions in order against the engine's connectors and store."""

    def __init__(self, engine: Host, journal: Journal, *, acting: bool) -> None:
        self.engine = engine
        self.store = engine.store
        self.journal = journal
        self.now = journal.now
        #: read_only (config) and dry runs book and send nothing
        self.acting = acting
        #: keys whose booking or move failed, or came out other than planned: their mails wait
        self.unsettled: set[str] = set()
        #: relationships whose booking failed: their later bookings wait for the next tick
        self.failed: set[str] = set()

    def run(self, actions: Sequence[Action]) -> None:
        """Carry out ``actions`` in order; a wave's bookings go out together (the notes
        planned beside them never depend on them)."""
        wave: list[Book] = []
        for action in actions:
            if isinstance(action, Book) and action.wave >= 0:
                if wave and action.wave != wave[0].wave:
                    self._wave(wave)
                    wave = []
                wave.append(action)
            elif isinstance(action, Note) and wave:
                self._one(action)
            else:
                if wave:
                    self._wave(wave)
                    wave = []
                self._one(action)
        if wave:
            self._wave(wave)

    def _one(self, action: Action) -> None:
        try:
            if isinstance(action, Note):
                self._note(action)
            elif isinstance(action, Accept):
                self._accept(action)
            elif isinstance(action, Cancel):
                self._cancel(action)
            elif isinstance(action, Move):
                self._move(action)
            elif isinstance(action, Book):
                self._wave([action])
            elif isinstance(action, Send):
                self._send(action)
        except Exception as exc:
            self.unsettled.add(action.key)
            self.journal.error(_where(action), exc, action.relationship)

    # --- notes and reviews -------------------------------------------------------------------

    def _note(self, note: Note) -> None:
        self.journal.record(
            ActionRecord(note.kind, note.relationship, note.series, note.reason, note.outcome)
        )
        if note.audit:
            message = note.message or note.reason
            if note.once:
                self.journal.audit_once(note.audit, message, note.relationship, note.series)
            else:
                self.journal.audit(note.audit, message, note.relationship, note.series)

    def _accept(self, action: Accept) -> None:
        if self.acting:
            self.store.save_booking(
                {
                    "key": action.key,
                    "start": to_store(action.slot.start),
                    "end": to_store(action.slot.end),
                    "moves": action.moves,
                },
                self.now,
            )
        message = f"{action.series}: {action.reason}"
        self.journal.audit("accept", message, action.relationship, action.series)
        self.journal.record(
            ActionRecord("accept", action.relationship, action.series, action.reason, "done")
        )

    def _cancel(self, action: Cancel) -> None:
        """Cancel one of the agent's events, its booking marked before and after."""
        rel, name = action.relationship, action.series
        if not self.acting:
            self.journal.held("cancel", rel, name, action.reason, {"key": action.key})
            return
        try:
            self.store.save_booking({"key": action.key, "status": "cancelling"}, self.now)
            event = action.event
            if event is not None and not event.cancelled:
                calendar, _ = self.engine.connection(action.organizer.account)
                faults.point("cancel:before")
                calendar.cancel(action.organizer, event)
                faults.point("cancel:after")
            self.store.save_booking({"key": action.key, "status": "cancelled"}, self.now)
        except Exception:
            self.unsettled.add(action.line)
            raise
        self.journal.audit("cancel", f"{name}: {action.reason}", rel, name, {"key": action.key})
        self.journal.record(ActionRecord("cancel", rel, name, action.reason, "done"))

    def _move(self, action: Move) -> None:
        rel, name, data = action.relationship, action.series, action.data
        if not self.acting:
            self.journal.held("move", rel, name, f"{data['why']}; {data['slot_reason']}", data)
            return
        self.store.save_booking(
            {
                "key": action.key,
                "status": "moving",
                "start": to_store(action.slot.start),
                "end": to_store(action.slot.end),
                "moves": action.moves,
            },
            self.now,
        )
        faults.point("move:before")
        calendar, _ = self.engine.connection(action.organizer.account)
        moved = calendar.move(action.organizer, action.event, action.slot)
        faults.point("move:after")
        self.store.save_booking(
            {"key": action.key, "status": "booked", "event_id": moved.id}, self.now
        )
        self.engine.keep_only(moved)
        if moved.interval != action.slot or moved.sequence != action.event.sequence + 1:
            self.unsettled.add(action.key)  # its mails follow the calendar, next tick
        self.journal.audit("move", f"{name}: {action.reason}", rel, name, data)
        self.journal.record(ActionRecord("move", rel, name, action.reason, "done", data))

    # --- bookings ----------------------------------------------------------------------------

    def _wave(self, wave: list[Book]) -> None:
        """Record every booking of the wave as pending, in order; make the events at once
        where the provider allows it (at most ``sync.concurrency`` per account), one by
        one elsewhere; record each as booked, in order."""
        ready: list[tuple[Book, Calendar]] = []
        for book in wave:
            if book.relationship in self.failed:
                # its other series wait too, so a failure never changes what gets booked
                text = "an earlier booking of this relationship failed; next tick"
                self.journal.record(
                    ActionRecord("book", book.relationship, book.series, text, "deferred")
                )
                self.unsettled.add(book.key)
                continue
            if not self.acting:
                self.journal.held(
                    "book", book.relationship, book.series, book.draft.title, book.data
                )
                continue
            try:
                ready.append((book, self._pending(book)))
            except Claimed as exc:
                self._deferred(book.key, "book", book.relationship, book.series, str(exc))
            except Exception as exc:
                self._failed(book, exc)
        results: list[Callable[[], tuple[Event, bool]]]
        together = [(b, c) for b, c in ready if isinstance(c, ConcurrentWrites)]
        if len(together) > 1:
            limits = self.engine.sync_limits()
            pool = self.engine.sync_pool()

            def create(book: Book, calendar: Calendar) -> tuple[Event, bool]:
                gate, bucket = limits[book.draft.organizer.account]
                with gate:
                    if bucket is not None:
                        bucket.take()
                    return _create(book, calendar)

            futures = {id(b): pool.submit(create, b, c) for b, c in together}
            results = [futures[id(b)].result if id(b) in futures else _bind(b, c) for b, c in ready]
        else:
            results = [_bind(b, c) for b, c in ready]
        for (book, _), result in zip(ready, results, strict=True):
            try:
                event, existed = result()
                self._booked(book, event, existed)
            except Exception as exc:
                self._failed(book, exc)

    def _deferred(self, key: str, kind: str, rel: str, series: str | None, why: str) -> None:
        """Another process holds the key (``Store.claim_booking``): leave it to them."""
        self.unsettled.add(key)
        self.journal.record(ActionRecord(kind, rel, series, why, "deferred"))

    def _pending(self, book: Book) -> Calendar:
        """Record the booking as pending, claiming its key (``Claimed``: another
        process is making this very event)."""
        draft = book.draft
        self.store.claim_booking(
            {
                "key": draft.key,
                "relationship": book.relationship,
                "series": book.series,
                "stage": draft.stage,
                "due": to_store(book.due),
                "start": to_store(draft.start),
                "end": to_store(draft.end),
                "organizer": draft.organizer.email,
                "status": "pending",
                "reason": book.reason,
                "moves": book.moves,
            },
            self.now,
        )
        calendar, _ = self.engine.connection(draft.organizer.account)
        return calendar

    def _booked(self, book: Book, event: Event, existing: bool) -> None:
        """Record a booking whose event now exists."""
        draft = book.draft
        self.store.save_booking(
            {
                "key": draft.key,
                "status": "booked",
                "event_id": event.id,
                "start": to_store(event.start),
                "end": to_store(event.end),
            },
            self.now,
        )
        self.engine.keep_only(event)
        if event.interval != Interval(draft.start, draft.end):  # found, booked earlier
            self.unsettled.add(draft.key)
        text = f"{book.reason}; booked {book.data['slot_reason']}"
        self.journal.audit(
            "book",
            f"{text}; {event.note}" if event.note else text,
            book.relationship,
            book.series,
            {**book.data, "note": event.note} if event.note else book.data,
        )
        self.journal.record(
            ActionRecord(
                "book",
                book.relationship,
                book.series,
                draft.title,
                "already" if existing else "done",
                book.data,
            )
        )

    def _failed(self, book: Book, exc: BaseException) -> None:
        self.failed.add(book.relationship)
        self.unsettled.add(book.key)
        self.journal.error(f"book {book.relationship} {book.series}", exc, book.relationship)

    # --- mail --------------------------------------------------------------------------------

    def _send(self, action: Send) -> None:
        """Send one mail with its outbox row written before and completed after."""
        if action.meeting in self.unsettled:
            return  # its meeting was not made as planned: the next tick sees the calendar
        mail, kind, rel, series = action.mail, action.kind, action.relationship, action.series
        data: dict[str, Any] = {
            "subject": mail.subject,
            "to": list(mail.to),
            "message_id": mail.message_id,
        }
        if not self.acting:
            self.journal.held(kind, rel, series, mail.subject, data)
            return
        _, mailer = self.engine.connection(action.account)
        row = {
            "key": mail.key,
            "meeting": action.meeting,
            "kind": kind,
            "relationship": rel,
            "series": series,
            "status": "pending",
            "message_id": mail.message_id,
            "sender": mail.sender,
            "recipients": ", ".join(mail.to),
            "subject": mail.subject,
        }
        try:
            self.store.claim_outbox(row, self.now)
        except Claimed as exc:
            self._deferred(mail.key, kind, rel, series, str(exc))
            return
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
                self.journal.audit(kind, text, rel, series, data)
                outcome = "already" if went else "uncertain"
                self.journal.record(ActionRecord(kind, rel, series, mail.subject, outcome, data))
                return
        self.store.save_outbox(row, self.now)
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
        self.journal.audit(kind, f"{kind} sent: {mail.subject}", rel, series, data)
        outcome = "already" if sent.already else "done"
        self.journal.record(ActionRecord(kind, rel, series, mail.subject, outcome, data))


def _create(book: Book, calendar: Calendar) -> tuple[Event, bool]:
    """Make the event, or find the one an interrupted tick made; thread-safe where the
    connector declares ConcurrentWrites."""
    faults.point("book:before-create")
    existing = calendar.find(book.draft.organizer, book.draft.key)
    event = existing or calendar.create(book.draft)
    faults.point("book:after-create")
    return event, existing is not None


def _bind(book: Book, calendar: Calendar) -> Callable[[], tuple[Event, bool]]:
    return lambda: _create(book, calendar)


def _where(action: Action) -> str:
    if isinstance(action, Send):
        if action.kind == "update":
            return f"updated recap for {action.mail.in_reply_to}"
        return f"{action.kind} for {action.meeting}"
    if isinstance(action, Book):
        return f"book {action.relationship} {action.series}"
    if isinstance(action, Cancel):
        return f"cancel {action.key}"
    return f"review {action.relationship} {action.series}"


def _was_sent(mailer: Mailer, mail: OutgoingMail) -> bool | None:
    """Whether the provider has ``mail`` already; None when it cannot tell."""
    if not isinstance(mailer, ConfirmsSend):
        return None
    return mailer.was_sent(mail)
