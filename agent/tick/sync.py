"""The sync step: every calendar's changes since its cursor, into the store.

Worker threads fetch (at most ``sync.concurrency`` calendars of one account at once, one
request at a time per calendar, paced by the account's token bucket); this thread alone
stores. A calendar that cannot be read is reported and its people's relationships wait;
it never stops the others.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from datetime import datetime
from typing import TYPE_CHECKING, Any

from agent.connectors.base import Busy, BusyFromSync, Calendar
from agent.core import faults
from agent.core.errors import CadenceError, CursorExpired, PermanentError
from agent.core.model import Interval, Person, merge
from agent.store import assessed

if TYPE_CHECKING:
    from agent.tick.executor import Journal
    from agent.tick.host import Host


def sync(
    engine: Host,
    journal: Journal,
    now: datetime,
    *,
    only: frozenset[str] | None = None,
    skip: frozenset[str] = frozenset(),
) -> set[str]:
    """Read every calendar's changes (or ``only`` these, or all but ``skip``); return the
    emails whose calendar could not be read."""
    failed: set[str] = set()
    window = engine.window(now)
    jobs: list[tuple[Person, Calendar, str | None]] = []
    people = [
        p for p in engine.people() if (only is None or p.email in only) and p.email not in skip
    ]
    cursors = engine.store.cursors(None if only is None else [p.email for p in people])
    for person in interleaved(people):
        try:
            calendar, _ = engine.connection(person.account)
        except Exception as exc:
            failed.add(person.email)
            journal.error(f"sync {person.email}", exc)
            continue
        jobs.append((person, calendar, cursors.get(person.email)))
    if not jobs:
        return failed
    limits = engine.sync_limits()
    workers = min(len(jobs), engine.settings.sync.concurrency * len(limits))

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

    def stored(person: Person, result: Callable[[], tuple[Any, bool]]) -> None:
        """Store one calendar's fetched changes, or record why they could not be read."""
        try:
            changes, expired = result()
            if expired:
                journal.audit("sync", f"cursor of {person.email} expired: full resync")
            faults.point("sync:after-fetch")
            engine.store.apply(person.email, changes, window, now)
            if changes.full or changes.events or changes.removed:
                engine.kept.synced(person.email, changes, engine.settings.relationships)
            for item in changes.skipped:
                what = (
                    f"event {item.ref} on {item.owner}'s calendar read in part: {item.reason}"
                    if item.partial
                    else f"malformed event {item.ref} on {item.owner}'s calendar skipped: "
                    f"{item.reason}"
                )
                journal.audit("skipped", what, data={"owner": item.owner, "ref": item.ref})
        except Exception as exc:  # a connector bug must not stop the tick either
            failed.add(person.email)
            journal.error(f"sync {person.email}", exc)

    if workers <= 1:
        for person, calendar, cursor in jobs:
            stored(person, functools.partial(fetch, person, calendar, cursor))
        return failed
    pool = engine.sync_pool()
    # a bounded number in flight: finished results are stored as they come, so a full
    # sync never holds every calendar's events at once
    queue = iter(jobs)
    running: dict[Future[tuple[Any, bool]], Person] = {}
    # while the answers are awaited, this thread reads what the assess step will need
    # (a calendar at a time); what the sync then changes is read again
    reading: Iterator[None] | None = engine.kept.reading(
        engine.settings.relationships, now - assessed.HISTORY
    )
    try:
        for person, calendar, cursor in itertools.islice(queue, 2 * workers):
            running[pool.submit(fetch, person, calendar, cursor)] = person
        while running:
            done, _ = wait(running, 0 if reading else None, FIRST_COMPLETED)
            if not done and reading is not None:
                reading = None if next(reading, StopIteration) is StopIteration else reading
                continue
            for future in done:
                person = running.pop(future)
                stored(person, future.result)
                for nxt, calendar, cursor in itertools.islice(queue, 1):
                    running[pool.submit(fetch, nxt, calendar, cursor)] = nxt
    except BaseException:
        for future in running:
            future.cancel()
        wait(running)
        raise
    return failed


def busy(
    engine: Host, journal: Journal, people: Sequence[Person], span: Interval, now: datetime
) -> tuple[dict[str, list[Interval]], set[str]]:
    """Everyone's busy time over ``span``, one batched query per account; also the
    emails whose free/busy could not be read."""
    by_account: dict[str, list[Person]] = {}
    for p in people:
        by_account.setdefault(p.account, []).append(p)
    found: dict[str, list[Interval]] = {}
    failed: set[str] = set()
    synced = engine.window(now)
    for account, members in by_account.items():
        try:
            calendar, _ = engine.connection(account)
            if isinstance(calendar, BusyFromSync) and synced.contains(span):
                # the events this tick synced and the review of booked meetings reads:
                # one source of busy time (the people whose sync failed wait anyway)
                answer = Busy(
                    {
                        p.email: merge(
                            Interval(max(e.start, span.start), min(e.end, span.end))
                            for e in engine.store.events_during([p.email], span)
                            if e.blocks_time and e.end > e.start
                        )
                        for p in members
                    }
                )
            else:
                answer = calendar.busy(members, span)
            faults.point("book:after-busy")
            for email, intervals in answer.items():
                found.setdefault(email, []).extend(intervals)
            for email, reason in answer.failed.items():
                # this person's relationships wait; the rest of the account books
                journal.error("free/busy", PermanentError(reason))
                failed.add(email)
        except CadenceError as exc:
            journal.error(f"free/busy of account {account}", exc)
            failed.update(p.email for p in members)
    return found, failed


def interleaved(people: Sequence[Person]) -> list[Person]:
    """The people in turn by account, so that every account's threads have work."""
    by_account: dict[str, list[Person]] = {}
    for p in people:
        by_account.setdefault(p.account, []).append(p)
    rounds = itertools.zip_longest(*by_account.values())
    return [p for group in rounds for p in group if p is not None]
