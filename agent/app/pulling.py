"""The puller of ``cadence serve``: every ``push.pull`` it asks each Exchange pull
subscription for the events after its watermark (``GetEvents``), and hands a calendar
that changed to the reactor, as a Google or Graph notification would: the same debounce,
the same focused tick.

It runs in a thread of its own with connections of its own, and makes no booking: it
only reads event queues and writes watermarks. A subscription the server no longer knows
is made again at once, before its calendar is read, so that no change falls between the
read and the new subscription; the calendar is then read as after a missed notification.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, Protocol

from agent import connectors
from agent.app.receiver import Reactor
from agent.connectors.base import Pulls
from agent.core.errors import CadenceError, CursorExpired
from agent.core.model import Person, WorkingHours
from agent.core.retry import RetryPolicy
from agent.settings.config import Settings
from agent.store.push import ChannelRow, PushRows
from agent.store.sqlite import Store
from agent.tick import metrics, pulls
from agent.tick.push import PULLED

log = logging.getLogger("cadence.push")


class Side(Protocol):
    """The push side of the service, as the puller sees it."""

    #: the service: its settings (read again at each poll) and metrics
    service: Any
    #: held while channels are written: the puller's writes wait for an upkeep
    lock: threading.Lock
    reactor: Reactor

    def gauge(self, rows: PushRows) -> None: ...


class Puller:
    """Asks the pull subscriptions for their events, every ``push.pull``."""

    def __init__(self, side: Side) -> None:
        self.side = side
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cadence-pull", daemon=True)
        #: per account: its calendar, kept from poll to poll (one session, one login)
        self._calendars: dict[str, Any] = {}
        self._pool: ThreadPoolExecutor | None = None
        #: the polling thread's store, open from its first poll until it ends (an SQLite
        #: connection serves the thread that opened it only)
        self._store: Store | None = None

    @property
    def interval(self) -> float:
        settings: Settings = self.side.service.settings
        assert settings.push is not None
        return settings.push.pull.total_seconds()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        for calendar in self._calendars.values():
            calendar.close()
        self._calendars.clear()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.interval):
                try:
                    self.poll()
                except Exception:  # the next poll, or the tick's safety net, covers it
                    log.exception("push: asking the Exchange subscriptions failed")
                    self._close_store()  # opened afresh: its connection may be what broke
        finally:
            self._close_store()

    def _close_store(self) -> None:
        store, self._store = self._store, None
        if store is not None:
            store.close()

    def _calendar(self, account: str) -> Any:
        if account not in self._calendars:
            settings = self.side.service.settings
            ctx = connectors.Context(
                name=account,
                account=settings.accounts[account],
                settings=settings,
                people=[p for p in settings.people.values() if p.account == account],
                retry=RetryPolicy.none(),  # a failed poll is simply the next one
                log=logging.getLogger(f"cadence.connector.{account}"),
            )
            calendar, mailer = metrics.instrument(connectors.connect(ctx), "exchange")
            mailer.close()
            self._calendars[account] = calendar
        return self._calendars[account]

    def poll(self) -> dict[str, str]:
        """Ask every active subscription once; return what each said (``quiet``,
        ``changed``, ``lost`` or ``failed``). The asking runs in ``sync.concurrency``
        threads; the store is written in this one, the polling thread, through the one
        store it keeps."""
        settings = self.side.service.settings
        if self._store is None:
            self._store = Store(settings.store_at)
        rows = PushRows(self._store)
        results: dict[str, str] = {}
        jobs: list[tuple[Person, ChannelRow, Pulls]] = []
        for owner, row in sorted(rows.all().items()):
            if row.channel.provider not in PULLED or row.state not in ("active", "missed"):
                continue
            if pulls.streamed(row):
                continue  # the streamer's
            # the row names the account: a person from the directory is not in the
            # configured settings, and the subscription is all that is asked
            account = row.channel.address
            if account not in settings.accounts:
                continue  # the account is gone: the next upkeep drops the row
            person = Person(owner, owner, "UTC", WorkingHours({}), account=account)
            try:
                calendar = self._calendar(account)
            except CadenceError as exc:
                log.info("push: the connection of %s: %s", owner, exc)
                results[owner] = "failed"
                continue
            if isinstance(calendar, Pulls):
                jobs.append((person, row, calendar))
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                settings.sync.concurrency, thread_name_prefix="cadence-pull"
            )
        asked = [self._pool.submit(_ask, calendar, person, row) for person, row, calendar in jobs]
        for (person, row, calendar), future in zip(jobs, asked, strict=True):
            results[person.email] = self._settle(rows, person, row, calendar, future.result())
        for result in results.values():
            self.side.service.metrics.push_pulls.labels(result).inc()
        if any(r in ("lost", "failed") for r in results.values()):
            self.side.gauge(rows)
        return results

    def _settle(
        self,
        rows: PushRows,
        person: Person,
        row: ChannelRow,
        calendar: Pulls,
        answer: tuple[int, str] | CadenceError,
    ) -> str:
        """Write what one subscription said; queue its calendar when it changed."""
        owner = person.email
        now = datetime.now(UTC)
        if isinstance(answer, CursorExpired):
            log.info("push: %s", answer)
            with self.side.lock:
                stream = self.side.service.settings.push.exchange == "stream"
                problem = pulls.subscribe(rows, person, calendar, row, now, stream)
            # read it now, whatever the subscription: it may have changed unseen
            self.side.reactor.put(owner, "missed" if problem is None else "changed")
            return "lost"
        if isinstance(answer, CadenceError):
            # the subscription lives on; asked in vain until it ends, the tick reads it
            log.info("push: asking the subscription of %s: %s", owner, answer)
            return "failed"
        changes, watermark = answer
        with self.side.lock:
            kept = rows.pulled(
                owner, row.channel.id, pulls.kept(row, watermark), now + pulls.LIFETIME, now
            )
        if changes and kept:
            self.side.reactor.put(owner)
            return "changed"
        return "quiet"


def _ask(calendar: Pulls, person: Person, row: ChannelRow) -> tuple[int, str] | CadenceError:
    """One GetEvents round, in a pool thread: the answer, or the error it gave."""
    try:
        return calendar.pull(person, row.channel.id, pulls.watermark(row))
    except CadenceError as exc:
        return exc
