"""Exchange pull subscriptions kept open, beside the Google and Graph channels.

After each tick of ``cadence serve`` every calendar on a server that queues changes
(``connectors.base.Pulls``) gets a pull subscription, kept in ``push_channels`` with the
watermark its events were read up to. There is nothing to renew: each ``GetEvents`` of
the service's puller (``agent.app.pulling``) keeps a subscription alive for another
``LIFETIME``. One that ended (the service was stopped for longer, the server restarted)
is made again, and its calendar is read once, since it may have changed unseen.

A server that refuses subscriptions (Exchange refuses them to a delegate, a policy may
forbid them) leaves the calendar ``refused``: it is read at every tick, as without push,
said once in the log and shown by ``cadence status``, and asked again a day later.
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor
from datetime import datetime, timedelta

from agent.connectors.base import Pulls
from agent.core.errors import CadenceError, PermanentError
from agent.core.model import Channel, Person
from agent.store.push import ChannelRow, PushRows

log = logging.getLogger("cadence.push")

#: how long a subscription lives without a GetEvents: a restart within it goes on from
#: the kept watermark; after it the subscription is made again and the calendar read
LIFETIME = timedelta(hours=1)
#: what the error of a calendar whose server refused a subscription starts with
REFUSED = "the server offers no notifications"
#: how long a calendar whose server refused a subscription waits before asking again
RETRY_REFUSED = timedelta(days=1)


def due(row: ChannelRow | None, now: datetime) -> bool:
    """Whether a calendar needs a new subscription."""
    if row is None:
        return True
    if row.state == "refused":
        return row.channel.expires <= now
    return row.state in ("failed", "removed") or row.channel.expires <= now


def ask(calendar: Pulls, person: Person) -> tuple[str, str] | CadenceError:
    """One Subscribe (in a pool thread, it writes nothing): (id, watermark) or the error."""
    try:
        return calendar.subscribe(person, LIFETIME)
    except CadenceError as exc:
        return exc


def record(
    rows: PushRows,
    person: Person,
    calendar: Pulls,
    row: ChannelRow | None,
    now: datetime,
    answer: tuple[str, str] | CadenceError,
) -> str | None:
    """Keep what Subscribe answered for ``person``; return the error, or None.

    A refusal is written as ``refused``; another failure marks an existing row
    ``failed`` (the next upkeep tries again). The row's ``address`` names the account
    the subscription is asked through (the puller needs no more of the person)."""
    if isinstance(answer, PermanentError):
        reason = f"{REFUSED}: {answer}"[:500]
        refused = Channel(
            owner=person.email,
            provider=calendar.pull_provider,
            id=f"refused:{person.email}",
            resource_id="",
            secret="",
            expires=now + RETRY_REFUSED,
            address=person.account,
        )
        rows.save(refused, now, state="refused", error=reason)
        return reason
    if isinstance(answer, CadenceError):
        if row is not None:
            rows.mark(person.email, "failed", now, str(answer)[:500])
        return str(answer)
    subscription, watermark = answer
    channel = Channel(
        owner=person.email,
        provider=calendar.pull_provider,
        id=subscription,
        resource_id=watermark,
        secret="",
        expires=now + LIFETIME,
        address=person.account,
    )
    rows.save(channel, now)
    return None


def subscribe(
    rows: PushRows, person: Person, calendar: Pulls, row: ChannelRow | None, now: datetime
) -> str | None:
    """Make a subscription for ``person`` and keep it; return the error, or None."""
    return record(rows, person, calendar, row, now, ask(calendar, person))


def keep(
    rows: PushRows,
    jobs: list[tuple[Person, Pulls, ChannelRow | None]],
    now: datetime,
    pool: Executor | None = None,
) -> tuple[list[str], list[str]]:
    """Subscribe where ``due``, in ``pool`` when given (the store is written here only);
    return the people subscribed and the errors (a refusal is not an error: polling is
    what that server offers)."""
    opened: list[str] = []
    errors: list[str] = []
    refused: dict[str, str] = {}  # newly refused calendars, and why
    futures = [pool.submit(ask, calendar, person) if pool else None for person, calendar, _ in jobs]
    for (person, calendar, row), future in zip(jobs, futures, strict=True):
        answer = future.result() if future else ask(calendar, person)
        problem = record(rows, person, calendar, row, now, answer)
        if problem is None:
            opened.append(person.email)
        elif not problem.startswith(REFUSED):
            errors.append(f"push: subscription of {person.email}: {problem}")
        elif row is None or row.state != "refused":  # said once: the row remembers
            refused[person.email] = problem
    if refused:
        first = next(iter(refused.values()))
        log.warning(
            "push: %d Exchange calendar(s) stay polled at every tick (%s): %s",
            len(refused),
            ", ".join(sorted(refused)[:5]) + (", ..." if len(refused) > 5 else ""),
            first,
        )
    return opened, errors


def stop(person: Person, calendar: Pulls, subscription: str) -> None:
    """End a subscription no longer wanted; a failure only leaves it to expire."""
    if subscription.startswith("refused:"):
        return
    try:
        calendar.unsubscribe(person, subscription)
    except CadenceError as exc:
        log.info("push: ending the subscription of %s: %s (it expires alone)", person.email, exc)
