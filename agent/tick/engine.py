"""One tick: sync → assess → snapshot → plan → act → log.

The engine reads the calendars into the store (``tick.sync``), assesses every
relationship, builds a snapshot, asks the pure planner (``rules.planning``) for the
actions, and hands them to the executor (``tick.executor``), which brackets each side
effect with store writes. ``cadence plan`` stops before the executor and prints the same
actions. One relationship's failure is logged and never stops the others.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from agent import connectors
from agent.connectors.base import Calendar, Mailer, SendsInvitations
from agent.core import logs
from agent.core.model import Event, Interval, Person, Relationship
from agent.core.ratelimit import TokenBucket
from agent.core.retry import RetryPolicy
from agent.core.timestamps import to_store
from agent.rules import guard, mailplan, planning
from agent.rules.actions import Action, Send
from agent.rules.classify import Status
from agent.settings.config import Settings
from agent.settings.directory import merge
from agent.store import assessed, rounds
from agent.store.directory import DirectoryRows
from agent.store.kept import KeptCandidates
from agent.store.plans import PlanRows
from agent.store.sqlite import Store
from agent.tick import endings, mailbox, metrics, picks, replies, sync, updates
from agent.tick.executor import ActionRecord, Executor, Journal
from agent.tick.plans import Plans, plan_warning, recorded_by_employee
from agent.tick.reporting import TickReport, _summary

log = logging.getLogger("cadence.engine")

HISTORY = assessed.HISTORY


def day_floor(dt: datetime) -> datetime:
    return dt.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


class Engine:
    """Runs ticks for one configuration against its store and accounts."""

    def __init__(
        self,
        settings: Settings,
        store: Store | None = None,
        retry: RetryPolicy | None = None,
        adopted: dict[str, tuple[str, Any]] | None = None,
    ) -> None:
        #: the settings as configured; ``settings`` adds the directory's people each tick
        self.configured = settings
        self.settings = settings
        self.store = store or Store(settings.store_at)
        self._own_store = store is None
        self.retry = retry or RetryPolicy()
        self._connections: dict[str, tuple[Calendar, Mailer]] = {}
        #: time zone and working hours read from mailboxes, per person, once per engine
        #: (a service hands them from one engine to the next)
        self._adopted: dict[str, tuple[str, Any]] = {} if adopted is None else adopted
        self._asked: set[str] = set()
        #: why the last directory read was not applied, for the tick's warnings
        self.directory_warning: str | None = None
        self._limits: dict[str, tuple[threading.BoundedSemaphore, TokenBucket | None]] = {}
        #: the sync step's threads, kept from tick to tick: each keeps its connections
        self._pool: ThreadPoolExecutor | None = None
        #: kept from tick to tick so a quiet tick reads and writes little: per
        #: relationship, the events that can be its meetings, the meetings last stored,
        #: and per (relationship, series) the last assessment written to the audit
        self.kept = KeptCandidates(self.store)
        self.saved_meetings: dict[str, list[dict[str, Any]]] = {}
        #: development plans, read again when their files change
        self.plans = Plans()
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
        sync = self.settings.sync
        for account in self.settings.accounts:
            if account not in self._limits:
                bucket = TokenBucket(sync.rate, sync.burst) if sync.rate else None
                self._limits[account] = (threading.BoundedSemaphore(sync.concurrency), bucket)
        return self._limits

    def sync_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            workers = self.settings.sync.concurrency * max(1, len(self.settings.accounts))
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

    def tick(
        self,
        now: datetime,
        *,
        dry_run: bool = False,
        confirm: bool = False,
        focus: frozenset[str] | None = None,
        skip: frozenset[str] = frozenset(),
        units: frozenset[str] | None = None,
        chores: bool | None = None,
        round_id: str | None = None,
    ) -> TickReport:
        """Run one reconciliation pass as of ``now``; with ``dry_run`` change nothing.

        A plan past the ``guard:`` limits is held (nothing booked or sent) unless
        ``confirm`` says a person has looked at it. With ``focus`` (the calendars a push
        notification named) only those calendars are read, and only the scheduling units
        they touch are planned; ``skip`` names calendars this tick leaves unread (their
        push channel is healthy and they were read lately).

        A real tick's caller holds the store's tick lock (``agent.app.lock``): that is
        what lets it close the rows of ticks a killed process left running.

        ``units`` (partners' emails) is the task queue's plan-and-act: only those
        scheduling units, their people's calendars read. Other workers run other units
        at the same time, so such a tick takes no store-wide lock and leaves the rows of
        other ticks alone; the worker holds the units' leases (``agent.queue.leases``).
        ``chores`` (replies, ended reporting lines) defaults to a full tick's. Such a
        tick counts against the guard across its round (``round_id``, the scheduler's;
        None: the tick interval it falls in), in the store (``agent.store.rounds``).
        """
        now = now.astimezone(UTC)
        tick_id = 0 if dry_run else self._begin(now, alone=units is None)
        with logs.tick_context(None if dry_run else tick_id):
            if self.store.notice_other_writers():
                # another process ticked on this store: what was kept may be out of date
                self.saved_meetings.clear()
                self.assessed.clear()
            self.lay_directory()
            run = _Tick(self, tick_id, now, dry_run, focus, skip)
            run.units_only, run.round_id = units, round_id
            run.chores = (focus is None and units is None) if chores is None else chores
            return self._run(run, confirm)

    def _begin(self, now: datetime, alone: bool = True) -> int:
        left = self.store.interrupt_running() if alone else []
        tick_id = self.store.begin_tick(now, datetime.now(UTC))
        for row in left:
            message = (
                f"tick {row['id']} (started {row['started_at']}) was interrupted: it never "
                "finished; this tick takes up its work"
            )
            log.warning("%s", message)
            self.store.audit(tick_id, now, "interrupted", message, data={"tick": row["id"]})
        return tick_id

    def lay_directory(self) -> None:
        """Lay the stored directory over the configured settings (each tick: a directory
        sync may have added people and lines since the last one)."""
        if self.configured.directory is None:
            return
        rows = DirectoryRows(self.store)
        last = rows.last_read()
        self.directory_warning = None
        if last is not None and last["status"] in ("held", "failed"):
            self.directory_warning = (
                f"directory read {last['status']} ({last['at']}): {last['reason']}"
            )
            if last["status"] == "held":
                self.directory_warning += (
                    "; look at `cadence directory diff`, then `cadence directory sync --confirm`"
                )
        before = self._accounts_people()
        self.settings = merge(
            self.configured, rows.entries(left=True), rows.lines(), left=rows.left()
        )
        after = self._accounts_people()
        for account in [a for a in self._connections if before.get(a) != after.get(a)]:
            # a connector knows its account's people: a joiner needs a new connection
            calendar, mailer = self._connections.pop(account)
            calendar.close()
            mailer.close()

    def _accounts_people(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for person in self.settings.people.values():
            out.setdefault(person.account, set()).add(person.email)
        return out

    def adopt_mailbox_settings(self, run: Journal, only: frozenset[str] | None = None) -> None:
        """Take the time zone and working hours the config leaves out from providers that
        know them (Microsoft 365's mailbox settings), once per person and engine; and the
        language neither the config nor the directory names, kept in the store. ``only``:
        these people alone (a worker's unit)."""
        mailbox.adopt(self, run, only)
        mailbox.adopt_zones(self, run, only)

    def keep_only(self, event: Event) -> None:
        """Store an event the agent wrote; what is kept of its calendars follows."""
        owners = self.store.keep_only(event)
        self.kept.wrote(event, owners, self.settings.relationships)

    def _run(self, run: _Tick, confirm: bool) -> TickReport:
        only = None
        if run.units_only is not None:
            units = planning.units(self.settings.relationships)
            only = frozenset(p for u in units if u.partner in run.units_only for p in u.people)
        self.adopt_mailbox_settings(run.journal, only)
        status = "failed"
        try:
            run.sync()
            run.assess()
            run.plan()
            run.act(confirm)
            if run.units_only is None and not run.dry_run and (confirm or not run.report.held):
                run.release_round_hold()
            status = "ok" if not run.report.errors else "partial"
            if run.report.held and not confirm:
                status = "held"
        finally:
            if not run.dry_run:
                summary = {
                    "booked": run.report.count("book"),
                    "sent": sum(run.report.count(k) for k in ("agenda", "recap", "invite")),
                    "errors": len(run.report.errors),
                }
                self.store.end_tick(run.report.tick, status, summary, datetime.now(UTC))
        return run.report


class _Tick:
    """One tick in progress: its journal, what it read, and what it planned."""

    def __init__(
        self,
        engine: Engine,
        tick_id: int,
        now: datetime,
        dry_run: bool,
        focus: frozenset[str] | None = None,
        skip: frozenset[str] = frozenset(),
    ) -> None:
        self.engine = engine
        self.focus, self.skip = focus, skip
        #: the task queue's scheduling units (partners), or None: per ``focus``
        self.units_only: frozenset[str] | None = None
        #: whether replies are read and ended lines planned (a full tick's chores)
        self.chores = focus is None
        #: the scheduling units this tick plans (a focused tick: those its calendars
        #: touch) and their relationships; set when the tick reads, after the settings
        #: took in the mailboxes' zones and hours
        self.units: list[planning.Unit] = []
        self.relationships: list[Relationship] = []
        self.store = engine.store
        self.now = now
        self.dry_run = dry_run
        self.journal = Journal(engine.store, tick_id, now, dry_run)
        self.report = TickReport(tick_id, now, self.journal.actions, [], self.journal.errors)
        if engine.directory_warning:
            self.report.warnings.append(engine.directory_warning)
        self.failed_people: set[str] = set()
        self.snapshot: planning.Snapshot | None = None
        self.mine: list[str] | None = None
        self.round_id: str | None = None
        self.employees: list[str] | None = None

    # --- read ---------------------------------------------------------------------------------

    def sync(self) -> None:
        self.units = planning.units(self.engine.settings.relationships)
        only = self.focus
        if self.units_only is not None:
            self.units = [u for u in self.units if u.partner in self.units_only]
            only = frozenset(p for u in self.units for p in u.people)
        elif self.focus is not None:
            self.units = planning.touched(self.units, self.focus)
        rels = self.engine.settings.relationships
        if only is not None:
            touched = {r.id for u in self.units for r in u.relationships}
            rels = tuple(r for r in rels if r.id in touched)
        self.relationships = list(rels)
        # a worker's unit reads the rows of its own relationships, not every unit's
        self.mine = [r.id for r in rels] if self.units_only is not None else None
        self.employees = sorted({r.employee.email for r in rels}) if self.mine is not None else None
        self.failed_people = (
            sync.sync(self.engine, self.journal, self.now, only=only, skip=self.skip)
            if only is None or only
            else set()
        )
        self.report.unread = frozenset(self.failed_people)

    def assess(self) -> None:
        """Settle interrupted bookings, then assess every relationship into a snapshot."""
        self._settle_pending()
        mine = self.mine is not None
        ids: list[str | None] = [*self.mine] if self.mine is not None else [None]
        rows = [b for i in ids for b in self.store.bookings(i)]
        bookings = {b.key: b for b in rows}
        own = assessed.own_map(rows)
        snap = planning.Snapshot(
            now=self.now,
            meetings={},
            states={},
            candidates={},
            own=own,
            bookings=bookings,
            unreadable=frozenset(self.failed_people),
            people=self.engine.settings.people,
            watched=self._watched(),
            picks=picks.recorded(self.store, [b.key for b in rows] if mine else None),
            paused=PlanRows(self.store).pauses(self.employees),
        )
        since = self.now - HISTORY
        if not self.dry_run and mine:
            for rel in [r for r in self.relationships if r.id not in self.engine.saved_meetings]:
                found = self.store.meetings(rel.id)
                self.engine.saved_meetings[rel.id] = [
                    {k: m[k] for k in assessed.MEETING_COLUMNS} for m in found
                ]
        elif not self.dry_run and not self.engine.saved_meetings:
            # a new engine (run --once) writes what differs from the store, as a kept one
            self.engine.saved_meetings.update(self.store.meeting_rows())
        self.engine.kept.prepare(self.relationships, since)
        for rel in self.relationships:
            try:
                self._assess(snap, rel, since)
            except Exception as exc:
                self.journal.error(f"assess {rel.id}", exc, rel.id)
        during: dict[str, list[Event]] = {}
        for rel in self.relationships:
            for m in snap.meetings.get(rel.id, []):
                row = bookings.get(m.key or "")
                if row is not None and row.status == "booked" and m.status is Status.SCHEDULED:
                    during[m.key or ""] = self.store.events_during(
                        [rel.employee.email, rel.partner.email], Interval(m.start, m.end)
                    )
        snap.during = during
        self.snapshot = snap

    def _watched(self) -> dict[str, datetime]:
        """When Cadence began watching each relationship; one seen for the first time
        starts its watch now (recorded, unless this is a dry run that records nothing)."""
        # a worker's unit watches its own: the other units are other workers'
        mine = self.units_only is None
        ids = [r.id for r in (self.engine.settings.relationships if mine else self.relationships)]
        if self.dry_run:
            return {**dict.fromkeys(ids, self.now), **self.store.watched(self.mine)}
        return self.store.watch(ids, self.now, only=not mine)

    def _settle_pending(self) -> None:
        """Mark bookings left pending by a crash as booked when their event exists."""
        # a worker's unit's alone: another unit's may be booking right now in another worker
        for row in self.store.unsettled(self.mine):
            event = self.store.event_by_key(row.key)
            if event is None:
                continue  # never created: the planner books it again under the same key
            if row.status == "moving" and event.start != row.start:
                continue  # the move did not happen: the planner makes it
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
            self.journal.audit(
                "book",
                f"booking {row.key} found on the calendar after an interruption: recorded",
                row.relationship,
                row.series,
            )

    def _assess(self, snap: planning.Snapshot, rel: Relationship, since: datetime) -> None:
        engine = self.engine
        events = engine.kept.get(rel, since)
        assessment = assessed.assess_relationship(rel, events, snap.own, self.now)
        found, states = assessment.meetings, assessment.states
        snap.candidates[rel.id] = events  # type: ignore[index]
        snap.meetings[rel.id] = found
        snap.states[rel.id] = states
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
        if not self.dry_run and engine.saved_meetings.get(rel.id) != rows:
            self.store.save_meetings(rel.id, rows, self.journal.tick_id)
            engine.saved_meetings[rel.id] = rows
        for state in states:
            summary = _summary(state)
            if summary != self._last_assessed(rel, state.name):
                self.journal.audit("assess", summary, rel.id, state.name, {"lapsed": state.lapsed})
                if not self.dry_run:
                    engine.assessed[(rel.id, state.name)] = summary
            if state.lapsed:
                self.journal.record(
                    ActionRecord("lapse", rel.id, state.name, state.due_reason, "found")
                )

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

    # --- plan ---------------------------------------------------------------------------------

    def plan(self) -> None:
        """Read replies, free/busy and plans as the planner needs them; then plan."""
        snap = self.snapshot
        assert snap is not None
        engine, settings = self.engine, self.engine.settings
        try:
            if self.chores:  # replies and endings wait for the full tick
                replies.collect(engine, self.journal, self.now)
        except Exception as exc:  # reading replies must never stop agendas and recaps
            self.journal.error("replies", exc)
        units = self.units
        wanted = planning.busy_wanted(units, snap)
        busy: dict[str, list[Interval]] = {}
        if wanted is not None:
            busy, failed = sync.busy(engine, self.journal, *wanted, self.now)
            snap.no_busy = frozenset(failed)
        mail_of, people = self._mail_of()
        employees = {p.email: p for p in people}
        few = mail_of is not None
        plans, problems = engine.plans.load(settings, employees.values(), self.store, few=few)
        invites: dict[str, bool] = {}
        for account in {r.organizer.account for r in settings.relationships}:
            try:
                calendar, _ = engine.connection(account)
                invites[account] = not isinstance(calendar, SendsInvitations)
            except Exception:
                invites[account] = False  # the sync step reported the account
        snap.mail = mailplan.MailContext(
            now=self.now,
            relationships=settings.relationships,
            secret=self.store.mail_secret,
            outbox={
                r["key"]: mailplan.Outboxed(r["status"], r["message_id"])
                for r in self.store.outbox_rows(relationships=mail_of)
            },
            invites=invites,
            plans=plans,
            recorded=recorded_by_employee(self.store, sorted(employees) if few else None),
            hours=mailplan.hours(settings.relationships, snap.meetings, self.now),
            templates=settings.templates,
            language=settings.language,
            reasons={k: b.reason or "" for k, b in snap.bookings.items()},
            watched=snap.watched,
            pick_link=picks.linker(settings, self.now),
        )
        actions = planning.plan(snap, busy, units)
        if self.chores:
            actions = self._endings(snap) + actions
        if self.chores or self.units_only is not None:
            found = updates.plan(engine, self.journal, snap, self.relationships, self.mine)
            actions = found + actions
        self.report.planned = actions
        self.report.scale = guard.count(actions, len(settings.relationships))
        self.report.held = guard.exceeded(self.report.scale, settings.guard)
        if self.units_only is not None and not self.dry_run and guard.guarded(settings.guard):
            # a worker's unit: the limits count across its round, in the store
            round_id = self.round_id or rounds.window(self.now, settings.tick)
            scale = self.report.scale
            self.report.held = rounds.unit(self.store, round_id, scale, settings.guard)
        mailed = {
            r.employee.email
            for r in settings.relationships
            for a in actions
            if isinstance(a, Send) and a.relationship == r.id
        }
        for email in sorted(mailed & problems.keys()):
            self.journal.audit("plan-error", f"plan of {email} not used: {problems[email]}")
        # every tick says so, mail or not: the plan stays unused until someone fixes it
        self.report.warnings.extend(plan_warning(e, problems[e]) for e in sorted(problems))

    def release_round_hold(self) -> None:
        """A full tick within the limits, or confirmed: the queue's guard holds no more."""
        if rounds.hold(self.store) is not None:
            rounds.release(self.store)
            self.journal.audit("guard", "the task queue's guard hold released by a full tick")

    def _mail_of(self) -> tuple[list[str] | None, list[Person]]:
        """The relationships whose mails (None: all), and the employees whose plans and
        actions, the plan reads: a unit's own, and in the task queue's chores those of
        the lines that ended lately (their notes and hand-overs)."""
        settings = self.engine.settings
        if self.mine is None:
            return None, [r.employee for r in settings.relationships]
        ids, people = list(self.mine), [r.employee for r in self.relationships]
        for line in endings.ended(self.engine, self.now) if self.chores else []:
            ids.append(line.id)
            people += [settings.people[line.employee]] if line.employee in settings.people else []
        return ids, people

    def _endings(self, snap: planning.Snapshot) -> list[Action]:
        """What the reporting lines that ended lately still need (``rules.handover``)."""
        assert snap.mail is not None
        return endings.plan(self.engine, snap, snap.mail, self.now)

    # --- act ----------------------------------------------------------------------------------

    def act(self, confirm: bool = False) -> None:
        acting = not (self.dry_run or self.engine.settings.read_only)
        report = self.report
        if report.held and not confirm:
            message = (
                f"held back by the guard: {report.held}; nothing booked or sent. "
                "Check `cadence plan`, then run `cadence run --once --confirm` or raise the limit"
            )
            report.warnings.append(message)
            if acting:
                self.journal.audit("guard", message, data={"actions": report.scale.actions})
                self.journal.holding = "guard"
            acting = False
        elif report.held:
            self.journal.audit("guard", f"confirmed past the guard: {report.held}")
        mails = [a for a in report.planned if isinstance(a, Send)]
        rest = [a for a in report.planned if not isinstance(a, Send)]
        executor = Executor(self.engine, self.journal, acting=acting)
        # calendars first, then mail: a mail's meeting must exist before it is announced
        executor.run(rest)
        executor.run(mails)
