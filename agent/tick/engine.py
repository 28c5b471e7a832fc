"""One tick: sync → assess → plan → act → log.

The engine alone does I/O. Each side effect is bracketed by store writes: a booking or
outbox row is recorded as pending before the call and as done after it, and the
connectors are idempotent on the same key, so a crash anywhere followed by a restart
finishes the job without doing anything twice. One relationship's failure is logged
and never stops the others.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from agent import connectors
from agent.connectors.base import Calendar, Mailer
from agent.core import faults, logs
from agent.core.errors import CadenceError, CursorExpired
from agent.core.model import (
    Event,
    EventDraft,
    Interval,
    Person,
    Relationship,
)
from agent.core.ratelimit import TokenBucket
from agent.core.records import StoredBooking
from agent.core.retry import RetryPolicy
from agent.core.timestamps import to_store
from agent.rules import cadence, classify, messages, reschedule, slots
from agent.rules.classify import Meeting, Own, Status
from agent.rules.reschedule import OwnBooking, Review
from agent.settings import idp as idp
from agent.settings.config import Settings
from agent.store.kept import KeptCandidates
from agent.store.sqlite import Store
from agent.tick import metrics
from agent.tick.mailing import MailSteps

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
        self._adopted = False
        self._limits: dict[str, tuple[threading.BoundedSemaphore, TokenBucket | None]] = {}
        #: the sync step's threads, kept from tick to tick: each keeps its connections
        self._pool: ThreadPoolExecutor | None = None
        #: kept from tick to tick so a quiet tick reads and writes little: per
        #: relationship, the events that can be its meetings, the meetings last stored,
        #: and per (relationship, series) the last assessment written to the audit
        self.kept = KeptCandidates(self.store)
        self.saved_meetings: dict[str, list[dict[str, Any]]] = {}
        self.assessed: dict[tuple[str, str], str | None] = {}

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
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
            self._connections[account] = metrics.instrument(
                connectors.connect(ctx), str(getattr(ctx.account, "provider", account))
            )
        return self._connections[account]

    def sync_limits(self) -> dict[str, tuple[threading.BoundedSemaphore, TokenBucket | None]]:
        """Per account: how many calendars may be read at once, and the request pace
        (kept from tick to tick, so the bucket remembers what was spent)."""
        sync = self.settings.file.sync
        for account in self.settings.accounts:
            if account not in self._limits:
                bucket = TokenBucket(sync.rate, sync.burst) if sync.rate else None
                self._limits[account] = (threading.BoundedSemaphore(sync.concurrency), bucket)
        return self._limits

    def sync_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            workers = self.settings.file.sync.concurrency * max(1, len(self.settings.accounts))
            self._pool = ThreadPoolExecutor(workers, thread_name_prefix="cadence-sync")
        return self._pool

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
        with logs.tick_context(None if dry_run else tick_id):
            return self._tick(tick_id, now, dry_run)

    def adopt_mailbox_settings(self, run: _Tick) -> None:
        """Take the time zone and working hours the config leaves out from providers that
        know them (Microsoft 365's mailbox settings), once per engine."""
        if self._adopted:
            return
        self._adopted = True
        changed: dict[str, Person] = {}
        for person in self.people():
            if not person.provided:
                continue
            try:
                calendar, _ = self.connection(person.account)
                read = getattr(calendar, "mailbox_settings", None)
                if read is None:
                    continue
                zone, hours = read(person)
            except Exception as exc:  # the sync step reports an unusable account properly
                run.audit(
                    "settings",
                    f"{person.email}: mailbox settings not read ({type(exc).__name__}); "
                    "config defaults kept",
                )
                continue
            changed[person.email] = dataclasses.replace(
                person,
                timezone=zone if "timezone" in person.provided else person.timezone,
                working_hours=hours if "working_hours" in person.provided else person.working_hours,
                provided=frozenset(),  # known now: a later engine on these settings asks no more
            )
            run.audit(
                "settings",
                f"{person.email}: {', '.join(sorted(person.provided))} from the mailbox ({zone})",
            )
        if changed:
            people = {**self.settings.people, **changed}
            relationships = tuple(
                Relationship(people[r.employee.email], people[r.partner.email], r.role, r.program)
                for r in self.settings.relationships
            )
            self.settings = dataclasses.replace(
                self.settings, people=people, relationships=relationships
            )

    def keep_only(self, event: Event) -> None:
        """Store an event the agent wrote; what is kept of its calendars follows."""
        owners = self.store.keep_only(event)
        self.kept.wrote(event, owners, self.settings.relationships)

    def _tick(self, tick_id: int, now: datetime, dry_run: bool) -> TickReport:
        if self.store.notice_other_writers():
            # another process ticked on this store: what was kept may be out of date
            self.saved_meetings.clear()
            self.assessed.clear()
        run = _Tick(self, tick_id, now, dry_run)
        self.adopt_mailbox_settings(run)
        run.settings = self.settings
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


class _Tick(MailSteps):
    """The state of one tick in progress."""

    def __init__(self, engine: Engine, tick_id: int, now: datetime, dry_run: bool) -> None:
        self.engine = engine
        self.settings = engine.settings
        self.store = engine.store
        self.tick_id = tick_id
        self.now = now
        self.dry_run = dry_run
        #: read_only (config) and dry_run (``cadence plan``) book and send nothing
        self.acting = not (dry_run or engine.settings.file.read_only)
        self.report = TickReport(tick_id, now)
        self.failed_people: set[str] = set()
        self.meetings: dict[str, list[Meeting]] = {}
        self.states: dict[str, list[cadence.SeriesState]] = {}
        self.own: dict[str, Own] = {}
        self.extra_busy: dict[str, list[Interval]] = {}
        self.load: dict[str, Counter[Any]] = {}
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
        log.info("%s%s: %s", kind, f" [{rel}]" if rel else "", message, extra={"relationship": rel})
        if not self.dry_run:
            self.store.audit(self.tick_id, self.now, kind, message, rel, series, data)

    def record(self, action: ActionRecord) -> None:
        self.report.actions.append(action)

    def held(self, kind: str, rel: str, series: str, detail: str, data: dict[str, Any]) -> None:
        """An action not taken because the tick only plans, or the config is read-only."""
        self.record(ActionRecord(kind, rel, series, detail, "planned", data))
        if not self.dry_run:
            self._audit_once("read-only", f"read-only, not done: {kind} {detail}", rel, series)

    def error(self, where: str, exc: BaseException, rel: str | None = None) -> None:
        message = f"{where}: {type(exc).__name__}: {exc}"
        self.report.errors.append(message)
        self.audit("error", message, rel)
        self.record(ActionRecord("error", rel, None, message, "failed"))

    # --- sync ----------------------------------------------------------------------------

    def sync(self) -> None:
        """Read every calendar's changes: fetched by worker threads (at most
        ``sync.concurrency`` calendars of one account at once, one request at a time per
        calendar, paced by the account's token bucket), stored by this thread alone."""
        window = self.engine.window(self.now)
        cursors = self.store.cursors()
        jobs: list[tuple[Person, Calendar, str | None]] = []
        for person in _interleaved(self.engine.people()):
            try:
                calendar, _ = self.engine.connection(person.account)
            except Exception as exc:
                self.failed_people.add(person.email)
                self.error(f"sync {person.email}", exc)
                continue
            jobs.append((person, calendar, cursors.get(person.email)))
        if not jobs:
            return
        limits = self.engine.sync_limits()
        workers = min(len(jobs), self.settings.file.sync.concurrency * len(limits))

        def fetch(person: Person, calendar: Calendar, cursor: str | None) -> tuple[Any, bool]:
            gate, bucket = limits[person.account]
            with gate:
                if bucket is not None:
                    bucket.take()
                try:
                    return calendar.changes(person, cursor, window), False
                except CursorExpired:
                    if bucket is not None:
                        bucket.take()
                    return calendar.changes(person, None, window), True

        if workers <= 1:
            for person, calendar, cursor in jobs:
                self._stored(person, window, functools.partial(fetch, person, calendar, cursor))
            return
        pool = self.engine.sync_pool()
        # a bounded number in flight: finished results are stored as they come, so a full
        # sync never holds every calendar's events at once
        queue = iter(jobs)
        running: dict[Future[tuple[Any, bool]], Person] = {}
        try:
            for person, calendar, cursor in itertools.islice(queue, 2 * workers):
                running[pool.submit(fetch, person, calendar, cursor)] = person
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    person = running.pop(future)
                    self._stored(person, window, future.result)
                    for nxt, calendar, cursor in itertools.islice(queue, 1):
                        running[pool.submit(fetch, nxt, calendar, cursor)] = nxt
        except BaseException:
            for future in running:
                future.cancel()
            wait(running)
            raise

    def _stored(
        self, person: Person, window: Interval, result: Callable[[], tuple[Any, bool]]
    ) -> None:
        """Store one calendar's fetched changes, or record why they could not be read."""
        try:
            changes, expired = result()
            if expired:
                self.audit("sync", f"cursor of {person.email} expired: full resync")
            faults.point("sync:after-fetch")
            self.store.apply(person.email, changes, window, self.now)
            if changes.full or changes.events or changes.removed:
                self.engine.kept.synced(person.email, changes, self.settings.relationships)
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
        self.own = {b.key: Own(b.relationship, b.series, b.stage) for b in self.store.bookings()}
        for row in self.store.bookings():
            if row.status == "booked" and row.start and row.end:
                iv = Interval(row.start, row.end)
                for email in _people_of(row.relationship):
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
            if row.status not in ("pending", "moving"):
                continue
            event = self.store.event_by_key(row.key)
            if event is None:
                continue  # never created: the plan step books it again under the same key
            if row.status == "moving" and event.start != row.start:
                continue  # the move did not happen: the review step makes it
            if not self.dry_run:
                self.store.save_booking(
                    {
                        "key": row.key,
                        "status": "booked",
                        "event_id": event.id,
                        "start": to_store(event.start),
                        "end": to_store(event.end),
                    },
                    self.now,
                )
            self.audit(
                "book",
                f"booking {row.key} found on the calendar after an interruption: recorded",
                row.relationship,
                row.series,
            )

    def _assess(self, rel: Relationship, since: datetime, again: bool = False) -> None:
        events = self.engine.kept.get(rel, since)
        found = classify.meetings(rel, events, self.own, self.now)
        states = cadence.assess(rel, found, self.now)
        self.meetings[rel.id] = found
        self.states[rel.id] = states
        if again:
            return
        self.report.states.extend(states)
        rows = [
            {
                "id": m.id,
                "relationship": rel.id,
                "series": m.series,
                "stage": m.stage,
                "start": to_store(m.start),
                "end": to_store(m.end),
                "status": str(m.status),
                "key": m.key,
                "declined_by": m.declined_by,
            }
            for m in found
        ]
        if not self.dry_run and self.engine.saved_meetings.get(rel.id) != rows:
            self.store.save_meetings(rel.id, rows, self.tick_id)
            self.engine.saved_meetings[rel.id] = rows
        for state in states:
            summary = self._summary(state)
            if summary != self._last_assessed(rel, state.name):
                self.audit("assess", summary, rel.id, state.name, {"lapsed": state.lapsed})
                if not self.dry_run:
                    self.engine.assessed[(rel.id, state.name)] = summary
            if state.lapsed:
                self.record(ActionRecord("lapse", rel.id, state.name, state.due_reason, "found"))

    def _last_assessed(self, rel: Relationship, series: str) -> str | None:
        """The assessment last written to the audit, read from the store once."""
        kept = self.engine.assessed
        if (rel.id, series) not in kept:
            last = self.store.audit_rows(relationship=rel.id, kind="assess", limit=50)
            for name in {series, *(s.name for s in rel.program.series)}:
                kept[(rel.id, name)] = next(
                    (r["message"] for r in reversed(last) if r["series"] == name), None
                )
        return kept[(rel.id, series)]

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
        """Review the agent's own bookings, then book what is due, most overdue first."""
        reviews: list[tuple[cadence.SeriesState, StoredBooking, Meeting | None, Review]] = []
        needs: list[cadence.BookingNeed] = []
        for rel in self.settings.relationships:
            unreadable = bool({rel.employee.email, rel.partner.email} & self.failed_people)
            for state in self.states.get(rel.id, []):
                row = self.store.booking(state.key)
                if row and row.status in ("booked", "moving"):
                    meeting = next(
                        (m for m in self.meetings.get(rel.id, []) if m.key == state.key), None
                    )
                    if row.status == "moving":
                        decision = Review("move", "finishing a move that was interrupted")
                    else:
                        conflicts = self._conflicts(rel, meeting)
                        decision = reschedule.review(
                            state, _own_booking(row), meeting, conflicts, self.now
                        )
                    if decision.action != "keep" and not unreadable:
                        reviews.append((state, row, meeting, decision))
                    continue
                need = cadence.booking_need(state, self.now)
                if need is None:
                    if state.skip_reason:
                        self.record(
                            ActionRecord("skip", rel.id, state.name, state.skip_reason, "skipped")
                        )
                    continue
                if unreadable:
                    text = "calendar could not be read"
                    self.record(ActionRecord("book", rel.id, state.name, text, "deferred"))
                    continue
                needs.append(need)
        needs.sort(key=lambda n: (n.state.due, n.state.relationship.id, n.state.name))
        searching = [
            cadence.search_range(st, self.now)
            for st, _, _, r in reviews
            if r.action in ("move", "rebook", "ask")
        ]
        searching += [(n.earliest, n.latest) for n in needs]
        people = {
            p.email: p
            for st, _, _, _ in reviews
            for p in (st.relationship.employee, st.relationship.partner)
        }
        people |= {
            p.email: p
            for n in needs
            for p in (n.state.relationship.employee, n.state.relationship.partner)
        }
        busy = self._busy(searching, list(people.values())) if searching else {}
        self.load = self._load()
        for state, row, meeting, decision in reviews:
            try:
                self._review(state, row, meeting, decision, busy)
            except Exception as exc:
                self.error(
                    f"review {state.relationship.id} {state.name}", exc, state.relationship.id
                )
        failed: set[str] = set()
        # in waves of one need per relationship: a relationship's second series waits
        # for its first (skip_near looks at it), while other relationships' go together
        while needs:
            wave: list[cadence.BookingNeed] = []
            later: list[cadence.BookingNeed] = []
            seen: set[str] = set()
            for need in needs:
                rid = need.state.relationship.id
                (later if rid in seen else wave).append(need)
                seen.add(rid)
            self._book_wave(wave, busy, failed)
            needs = later

    def _book_wave(
        self, wave: list[cadence.BookingNeed], busy: dict[str, list[Interval]], failed: set[str]
    ) -> None:
        """Choose every slot here, most overdue first; create the events at once where
        the provider allows it (at most ``sync.concurrency`` per account), one by one
        elsewhere; record each here, in the order chosen."""
        planned: list[_Planned] = []
        for need in wave:
            rel = need.state.relationship
            if rel.id in failed:
                # its other series wait too, so a failure never changes what gets booked
                text = "an earlier booking of this relationship failed; next tick"
                self.record(ActionRecord("book", rel.id, need.state.name, text, "deferred"))
                continue
            try:
                chosen = self._prepare(need, busy)
            except Exception as exc:
                failed.add(rel.id)
                self.error(f"book {rel.id} {need.state.name}", exc, rel.id)
                continue
            if chosen is not None:
                planned.append(chosen)
        results: list[Callable[[], tuple[Event, bool]]] = []
        together = [p for p in planned if getattr(p.calendar, "concurrent_writes", False)]
        if len(together) > 1:
            limits = self.engine.sync_limits()
            pool = self.engine.sync_pool()

            def create(chosen: _Planned) -> tuple[Event, bool]:
                gate, bucket = limits[chosen.account]
                with gate:
                    if bucket is not None:
                        bucket.take()
                    return chosen.create()

            futures = {id(p): pool.submit(create, p) for p in together}
            results = [futures[id(p)].result if id(p) in futures else p.create for p in planned]
        else:
            results = [p.create for p in planned]
        for chosen, result in zip(planned, results, strict=True):
            rel = chosen.need.state.relationship
            try:
                event, existed = result()
                self._booked(chosen, event, existed, busy)
            except Exception as exc:
                failed.add(rel.id)
                self.error(f"book {rel.id} {chosen.need.state.name}", exc, rel.id)

    def _busy(
        self, ranges: Sequence[tuple[datetime, datetime]], people: Sequence[Person]
    ) -> dict[str, list[Interval]]:
        span = Interval(
            min(a for a, _ in ranges) - timedelta(days=1),
            max(b for _, b in ranges) + timedelta(days=2),
        )
        by_account: dict[str, list[Person]] = {}
        for p in people:
            by_account.setdefault(p.account, []).append(p)
        busy: dict[str, list[Interval]] = {}
        for account, members in by_account.items():
            try:
                calendar, _ = self.engine.connection(account)
                found = calendar.busy(members, span)
                faults.point("book:after-busy")
                for email, intervals in found.items():
                    busy.setdefault(email, []).extend(intervals)
            except CadenceError as exc:
                self.error(f"free/busy of account {account}", exc)
                self.failed_people.update(p.email for p in members)
        for email, extra in self.extra_busy.items():
            busy.setdefault(email, []).extend(extra)
        return busy

    def _load(self) -> dict[str, Counter[Any]]:
        """Development meetings per partner per local day and ISO week (leader load)."""
        load: dict[str, Counter[Any]] = {}
        for rel in self.settings.relationships:
            for m in self.meetings.get(rel.id, []):
                if m.active and m.start >= self.now - timedelta(days=8):
                    self._count(rel, m.start, +1, load)
        return load

    def _count(
        self,
        rel: Relationship,
        start: datetime,
        step: int,
        load: dict[str, Counter[Any]] | None = None,
    ) -> None:
        load = self.load if load is None else load
        day = start.astimezone(rel.partner.zone).date()
        counter = load.setdefault(rel.partner.email, Counter())
        counter[day] += step
        counter[day.isocalendar()[:2]] += step

    def _request(
        self,
        state: cadence.SeriesState,
        earliest: datetime,
        latest: datetime,
        prefer: tuple[int, int, int] | None,
    ) -> slots.SlotRequest:
        rel, booking = state.relationship, state.relationship.program.booking
        counter = self.load.get(rel.partner.email, Counter())
        return slots.SlotRequest(
            employee=rel.employee,
            partner=rel.partner,
            duration=state.series.duration,
            earliest=earliest,
            latest=latest,
            window=booking.window,
            buffer=booking.buffer,
            granularity=booking.granularity,
            prefer=prefer,
            full_days=frozenset(
                k for k, n in counter.items() if isinstance(k, date) and n >= booking.max_per_day
            ),
            full_weeks=frozenset(
                k for k, n in counter.items() if isinstance(k, tuple) and n >= booking.max_per_week
            ),
        )

    def _conflicts(self, rel: Relationship, meeting: Meeting | None) -> list[str]:
        """What now stands in the way of a scheduled meeting: busy time or a day off."""
        if meeting is None or meeting.status is not Status.SCHEDULED:
            return []
        own_uid = meeting.event.uid if meeting.event else None
        found = []
        during = Interval(meeting.start, meeting.end)
        for event in self.store.events_during([rel.employee.email, rel.partner.email], during):
            if event.key == meeting.key or (own_uid and event.uid == own_uid):
                continue
            if event.blocks_time and event.interval.overlaps(Interval(meeting.start, meeting.end)):
                who = self.settings.people.get(event.owner)
                name = who.first_name if who else event.owner
                what = (
                    "out of office"
                    if event.kind == "outOfOffice"
                    else ("all day" if event.all_day else "busy")
                )
                found.append(f"{name} {what} ({event.title[:60]!r})")
        for person in (rel.employee, rel.partner):
            off = slots.day_off(person, meeting.start.astimezone(person.zone).date())
            if off:
                found.append(f"{person.first_name}: {off}")
        return sorted(set(found))

    def _review(
        self,
        state: cadence.SeriesState,
        row: StoredBooking,
        meeting: Meeting | None,
        decision: Review,
        busy: dict[str, list[Interval]],
    ) -> None:
        rel, name = state.relationship, state.name
        if decision.action == "accept":
            if self.acting and meeting is not None:
                self.store.save_booking(
                    {
                        "key": state.key,
                        "start": to_store(meeting.start),
                        "end": to_store(meeting.end),
                        "moves": max(row.moves, rel.program.max_moves),
                    },
                    self.now,
                )
            self.audit("accept", f"{name}: {decision.reason}", rel.id, name)
            self.record(ActionRecord("accept", rel.id, name, decision.reason, "done"))
            return
        if decision.action == "hold":
            self._audit_once("hold", f"{name}: {decision.reason}", rel.id, name)
            self.record(ActionRecord("move", rel.id, name, decision.reason, "held-back"))
            return
        earliest, latest = cadence.search_range(state, self.now)
        # the meeting's own time stays busy: it was declined, cancelled or lost
        mine = [Interval(meeting.start, meeting.end)] if meeting else []
        busy_e = [*busy.get(rel.employee.email, []), *mine]
        busy_p = [*busy.get(rel.partner.email, []), *mine]
        prefer = cadence.preferred_time(state)
        if meeting is not None and meeting.active:
            self._count(rel, meeting.start, -1)
        request = self._request(state, earliest, latest, prefer)
        if decision.action == "ask":
            proposals = slots.find_slots(request, busy_e, busy_p, 3)
            self._ask(state, row, decision.reason, proposals)
            return
        if row.status == "moving" and row.start and row.end:
            slot = Interval(row.start, row.end)
            why = "the slot chosen before the interruption"
        else:
            result = slots.find_slot(request, busy_e, busy_p)
            if result.slot is None:
                text = f"{name}: {decision.reason}; no new slot: {result.reason}"
                self._audit_once("not-moved", text, rel.id, name)
                self.record(ActionRecord("move", rel.id, name, text, "no-slot"))
                return
            slot, why = result.slot, result.reason
        if decision.action == "rebook":
            need = cadence.BookingNeed(state, earliest, latest, prefer, decision.reason)
            self._book(need, busy, slot=(slot, why), moves=row.moves + 1)
            return
        assert meeting is not None and meeting.event is not None
        data = {
            "from": to_store(meeting.start),
            "to": to_store(slot.start),
            "why": decision.reason,
            "slot_reason": why,
        }
        if not self.acting:
            self.held("move", rel.id, name, f"{decision.reason}; {why}", data)
            return
        self.store.save_booking(
            {
                "key": state.key,
                "status": "moving",
                "start": to_store(slot.start),
                "end": to_store(slot.end),
                "moves": row.moves + (0 if row.status == "moving" else 1),
            },
            self.now,
        )
        faults.point("move:before")
        calendar, _ = self.engine.connection(rel.organizer.account)
        moved = calendar.move(rel.organizer, meeting.event, slot)
        faults.point("move:after")
        self.store.save_booking(
            {"key": state.key, "status": "booked", "event_id": moved.id}, self.now
        )
        self.engine.keep_only(moved)
        self._count(rel, slot.start, +1)
        for email in (rel.employee.email, rel.partner.email):
            busy.setdefault(email, []).append(moved.interval)
        self.audit("move", f"{name}: {decision.reason}; moved to {why}", rel.id, name, data)
        self.record(
            ActionRecord("move", rel.id, name, f"{decision.reason}; moved to {why}", "done", data)
        )
        self._assess(rel, self.now - HISTORY, again=True)

    def _audit_once(self, kind: str, message: str, rel: str, series: str) -> None:
        last = self.store.audit_rows(relationship=rel, kind=kind, limit=20)
        if not any(r["series"] == series and r["message"] == message for r in last):
            self.audit(kind, message, rel, series)

    def _ask(
        self,
        state: cadence.SeriesState,
        row: StoredBooking,
        reason: str,
        proposals: list[Interval],
    ) -> None:
        rel = state.relationship
        key = f"{state.key}:ask{row.moves}"
        existing = self.store.outbox(key)
        if existing and existing["status"] == "sent":
            return
        lines = [
            messages.when_lines(p.start, p.end, (rel.employee, rel.partner))[0] for p in proposals
        ]
        self.send_ask(rel, state, key, reason, lines)

    def _book(
        self,
        need: cadence.BookingNeed,
        busy: dict[str, list[Interval]],
        slot: tuple[Interval, str] | None = None,
        moves: int = 0,
    ) -> None:
        """Book one need now, start to finish."""
        chosen = self._prepare(need, busy, slot, moves)
        if chosen is not None:
            event, existed = chosen.create()
            self._booked(chosen, event, existed, busy)

    def _prepare(
        self,
        need: cadence.BookingNeed,
        busy: dict[str, list[Interval]],
        slot: tuple[Interval, str] | None = None,
        moves: int = 0,
    ) -> _Planned | None:
        """Choose the slot and record the booking as pending; the slot counts as busy
        from here on, so the next choice of this tick avoids it."""
        rel, series = need.state.relationship, need.state.series
        # an earlier booking in this tick may have changed the picture (skip_near)
        fresh = next(s for s in self.states[rel.id] if s.name == series.name)
        if fresh is not need.state and slot is None:
            renewed = cadence.booking_need(fresh, self.now)
            if renewed is None:
                text = fresh.skip_reason or f"{series.name}: no longer needs a booking"
                self.audit("skip", text, rel.id, series.name)
                self.record(ActionRecord("skip", rel.id, series.name, text, "skipped"))
                return None
            need = renewed
        state = need.state
        if {rel.employee.email, rel.partner.email} & self.failed_people:
            self.record(
                ActionRecord("book", rel.id, series.name, "free/busy unavailable", "deferred")
            )
            return None
        booking = rel.program.booking
        if slot is None:
            request = self._request(state, need.earliest, need.latest, need.prefer)
            result = slots.find_slot(
                request, busy.get(rel.employee.email, []), busy.get(rel.partner.email, [])
            )
            if result.slot is None:
                text = f"{series.name} not booked: {result.reason}"
                self._audit_once("not-booked", text, rel.id, series.name)
                self.record(ActionRecord("book", rel.id, series.name, text, "no-slot"))
                return None
            chosen, slot_reason = result.slot, result.reason
        else:
            chosen, slot_reason = slot
        title = messages.render_title(series.title, rel, state.stage)
        draft = EventDraft(
            key=state.key,
            organizer=rel.organizer,
            attendees=(rel.attendee,),
            title=title,
            start=chosen.start,
            end=chosen.end,
            timezone=rel.organizer.timezone,
            description=f"{need.reason}\nBooked by Cadence ({slot_reason}).",
            conference=booking.conference,
            relationship=rel.id,
            series=series.name,
            stage=state.stage,
        )
        data = {
            "key": draft.key,
            "start": to_store(chosen.start),
            "end": to_store(chosen.end),
            "stage": state.stage,
            "employee_local": f"{chosen.start.astimezone(rel.employee.zone):%a %Y-%m-%d %H:%M} {rel.employee.timezone}",
            "partner_local": f"{chosen.start.astimezone(rel.partner.zone):%a %Y-%m-%d %H:%M} {rel.partner.timezone}",
            "why": need.reason,
            "slot_reason": slot_reason,
            "title": title,
        }
        if not self.acting:
            self.held("book", rel.id, series.name, title, data)
            return None
        self.store.save_booking(
            {
                "key": draft.key,
                "relationship": rel.id,
                "series": series.name,
                "stage": state.stage,
                "due": to_store(state.due),
                "start": to_store(chosen.start),
                "end": to_store(chosen.end),
                "organizer": rel.organizer.email,
                "status": "pending",
                "reason": need.reason,
                "moves": moves,
            },
            self.now,
        )
        self._count(rel, chosen.start, +1)
        for email in (rel.employee.email, rel.partner.email):
            busy.setdefault(email, []).append(chosen)
        calendar, _ = self.engine.connection(rel.organizer.account)
        return _Planned(need, draft, data, slot_reason, calendar)

    def _booked(
        self, chosen: _Planned, event: Event, existing: bool, busy: dict[str, list[Interval]]
    ) -> None:
        """Record a booking whose event now exists."""
        need, draft, data, slot_reason = chosen.need, chosen.draft, chosen.data, chosen.slot_reason
        state, rel, series = need.state, need.state.relationship, need.state.series
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
            self._count(rel, event.start, +1)
            for email in (rel.employee.email, rel.partner.email):
                busy.setdefault(email, []).append(event.interval)
        self.own[draft.key] = Own(rel.id, series.name, state.stage)
        self.audit("book", f"{need.reason}; booked {slot_reason}", rel.id, series.name, data)
        self.record(
            ActionRecord(
                "book", rel.id, series.name, draft.title, "already" if existing else "done", data
            )
        )
        self._assess(
            rel, self.now - HISTORY, again=True
        )  # the new meeting takes part in the mail step


@dataclass
class _Planned:
    """A booking whose slot is chosen and recorded as pending, its event not yet made."""

    need: cadence.BookingNeed
    draft: EventDraft
    data: dict[str, Any]
    slot_reason: str
    calendar: Calendar

    @property
    def account(self) -> str:
        return self.need.state.relationship.organizer.account

    def create(self) -> tuple[Event, bool]:
        """Make the event, or find the one an interrupted tick made; thread-safe where
        the connector says ``concurrent_writes``."""
        faults.point("book:before-create")
        organizer = self.need.state.relationship.organizer
        existing = self.calendar.find(organizer, self.draft.key)
        event = existing or self.calendar.create(self.draft)
        faults.point("book:after-create")
        return event, existing is not None


def _interleaved(people: Sequence[Person]) -> list[Person]:
    """The people in turn by account, so that every account's threads have work."""
    by_account: dict[str, list[Person]] = {}
    for p in people:
        by_account.setdefault(p.account, []).append(p)
    rounds = itertools.zip_longest(*by_account.values())
    return [p for group in rounds for p in group if p is not None]


def _people_of(relationship_id: str) -> Iterable[str]:
    return relationship_id.split("/")


def _own_booking(row: StoredBooking) -> OwnBooking:
    if row.start is None or row.end is None:
        raise ValueError(f"booking {row.key} is {row.status} without a slot")
    return OwnBooking(row.key, row.start, row.end, row.moves)
