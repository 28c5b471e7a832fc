"""Push channels kept open, and what they spare the tick.

After each tick of ``cadence serve`` the channels are brought in line with the people:
one opened for every calendar on a provider that can notify (``connectors.base.Watches``),
renewed once it ends within ``push.renew_before``, stopped for a person no longer in the
configuration. Before each tick, ``quiet`` names the calendars the tick may leave
unread: an active channel, and a read within ``push.poll``. Every other calendar (no
channel, a failed renewal, notifications reported missed) is read at every tick: polling
stays the safety net. Exchange pull subscriptions are kept here too (``pulls``).
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from agent.connectors.base import Pulls, Watches
from agent.core.errors import CadenceError
from agent.core.model import Channel, Person, WorkingHours
from agent.settings.config import Settings
from agent.store.push import ChannelRow, PushRows
from agent.store.sqlite import Store
from agent.tick import pulls
from agent.tick.host import Host

log = logging.getLogger("cadence.push")

#: a channel this close to its end is not trusted to carry the next change
MARGIN = timedelta(minutes=5)
#: providers whose subscriptions Cadence asks for changes, instead of being called
PULLED = ("exchange",)


def address(settings: Settings, provider: str) -> str:
    """The URL the provider posts to: the public URL and the provider's path."""
    assert settings.push is not None
    return f"{settings.push.public_url}/{provider}"


def current(settings: Settings, channel: Channel) -> bool:
    """Whether a channel notifies where it should (a pull subscription has no address)."""
    return channel.provider in PULLED or channel.address == address(settings, channel.provider)


def quiet(settings: Settings, store: Store, now: datetime) -> frozenset[str]:
    """The calendars a tick may leave unread: channel active, and read within ``poll``."""
    if settings.push is None:
        return frozenset()
    rows = PushRows(store)
    polled = rows.polled()
    poll = settings.push.poll
    return frozenset(
        owner
        for owner, row in rows.all().items()
        if row.state == "active"
        and row.channel.expires > now + MARGIN
        and current(settings, row.channel)
        and owner in polled
        and now - polled[owner] < poll
    )


@dataclass
class Upkeep:
    """What one pass over the channels did."""

    opened: list[str] = field(default_factory=list)
    renewed: list[str] = field(default_factory=list)
    stopped: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def maintain(
    engine: Host,
    now: datetime,
    read: frozenset[str] = frozenset(),
    renew: frozenset[str] = frozenset(),
) -> Upkeep:
    """Open, renew and stop channels so that every watchable calendar has one.

    ``read`` names the calendars the tick just read: a channel that missed
    notifications is active again once its calendar was read after the miss. ``renew``
    names channels to renew now (Graph asked for reauthorization).
    """
    settings = engine.settings
    out = Upkeep()
    if settings.push is None:
        return out
    rows = PushRows(engine.store)
    kept = rows.all()
    people = {p.email: p for p in _people(engine)}
    for owner, gone in kept.items():
        if owner in people:
            continue
        try:  # a person who left: their account may be gone too, and the row with it
            leaver = engine.settings.people.get(owner) or _leaver(owner)
            calendar, _ = engine.connection(leaver.account or row_account(engine, gone.channel))
            if isinstance(calendar, Watches):
                calendar.unwatch(leaver, gone.channel)
            elif isinstance(calendar, Pulls):
                pulls.stop(leaver, calendar, gone.channel.id)
        except (CadenceError, KeyError) as exc:
            out.errors.append(f"push: stopping the channel of {owner}: {exc}")
        rows.drop(owner)
        out.stopped.append(owner)
    renew_before = settings.push.renew_before
    #: (person, their calendar, their channel row, whether a new channel is opened)
    jobs: list[tuple[Person, Watches, ChannelRow | None, bool]] = []
    pulled: list[tuple[Person, Pulls, ChannelRow | None]] = []
    for email, person in people.items():
        row = kept.get(email)
        try:
            calendar, _ = engine.connection(person.account)
        except CadenceError as exc:
            out.errors.append(f"push: channel of {email}: {exc}")
            continue
        if row is not None and row.state == "missed" and email in read:
            rows.mark(email, "active", now)
        if isinstance(calendar, Pulls) and not isinstance(calendar, Watches):
            if pulls.due(row, now, settings.push.exchange == "stream"):
                pulled.append((person, calendar, row))
            continue
        if not isinstance(calendar, Watches):
            continue
        moved = row is not None and row.channel.address != address(
            settings, calendar.push_provider
        )  # push.public_url changed: a new channel at the new address, the old one stopped
        if row is None or moved or row.state in ("failed", "removed") or row.channel.expires <= now:
            jobs.append((person, calendar, row, True))
        elif row.channel.expires - now <= renew_before or email in renew:
            jobs.append((person, calendar, row, False))
    limits = engine.sync_limits()

    def upkeep(person: Person, watcher: Watches, row: ChannelRow | None, new: bool) -> Channel:
        """Open or renew one channel, paced like the sync step."""
        gate, bucket = limits[person.account]
        with gate:
            if bucket is not None:
                bucket.take()
            until = now + watcher.push_lifetime
            to = address(settings, watcher.push_provider)
            secret = secrets.token_urlsafe(32)
            if new or row is None:
                return watcher.watch(person, to, secret, until)
            return watcher.renew(person, row.channel, to, secret, until)

    # many at once (a first start opens one per calendar); the store is written here only
    pool = engine.sync_pool() if len(jobs) > 1 else None
    futures = [pool.submit(upkeep, *job) if pool else None for job in jobs]
    for job, future in zip(jobs, futures, strict=True):
        person, watcher, row, new = job
        try:
            channel = future.result() if future else upkeep(*job)
        except CadenceError as exc:
            out.errors.append(f"push: channel of {person.email}: {exc}")
            if row is not None:
                rows.mark(person.email, "failed", now, str(exc)[:500])
            continue
        rows.save(channel, now)
        (out.opened if new else out.renewed).append(person.email)
        if new and row is not None and row.state == "active" and row.channel.expires > now:
            try:  # the channel it replaces (at an old address) would notify until its end
                watcher.unwatch(person, row.channel)
            except CadenceError as exc:
                out.errors.append(f"push: stopping the old channel of {person.email}: {exc}")
    # many at once on a first start: in the sync step's threads
    opened, problems = pulls.keep(
        rows,
        pulled,
        now,
        engine.sync_pool() if len(pulled) > 1 else None,
        settings.push.exchange == "stream",
    )
    out.opened += opened
    out.errors += problems
    for problem in out.errors:
        log.warning("%s", problem)
    if out.opened or out.renewed or out.stopped:
        log.info(
            "push: %d opened, %d renewed, %d stopped",
            len(out.opened),
            len(out.renewed),
            len(out.stopped),
        )
    return out


def row_account(engine: Host, channel: Channel) -> str:
    """The account a leaver's channel was opened on: the one a pull subscription names,
    else the only one of its provider."""
    if channel.provider in PULLED and channel.address in engine.settings.accounts:
        return channel.address
    for name, account in engine.settings.accounts.items():
        if getattr(account, "provider", None) == channel.provider:
            return name
    raise KeyError(f"no {channel.provider} account left")


def _leaver(email: str) -> Person:
    """Someone no longer in the configuration, as much as stopping a channel needs."""
    return Person(email=email, name=email, timezone="UTC", working_hours=WorkingHours({}))


def _people(engine: Host) -> list[Person]:
    rels = engine.settings.relationships
    emails = {r.employee.email for r in rels} | {r.partner.email for r in rels}
    return [engine.settings.people[e] for e in sorted(emails)]
