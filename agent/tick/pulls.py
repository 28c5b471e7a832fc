"""Exchange pull subscriptions kept open, beside the Google and Graph channels.

After each tick of ``cadence serve`` every calendar on a server that queues changes
(``connectors.base.Pulls``) gets a pull subscription, kept in ``push_channels`` with the
watermark its events were read up to. There is nothing to renew: each ``GetEvents`` of
the service's puller (``agent.app.pulling``) keeps a subscription alive for another
``LIFETIME``. One that ended (the service was stopped for longer, the server restarted)
is made again, and its calendar is read once, since it may have changed unseen.

With ``push.exchange: stream`` (the default) the subscription is a streaming one where
the server offers it (``connectors.base.Streams``): its row's ``resource_id`` is
``STREAM`` instead of a watermark, and the service's streamer (``agent.app.streaming``)
holds the connections that keep it alive. A server that refuses streaming gets a pull
subscription instead, its row noting why (``NO_STREAMING``) and its ``resource_id``
marked ``NOT_STREAMED``, so that it is not asked to stream again at each upkeep. A row
of the other kind than ``push.exchange`` asks is replaced at the next upkeep.

A server that refuses subscriptions (Exchange refuses them to a delegate, a policy may
forbid them) leaves the calendar ``refused``: it is read at every tick, as without push,
said once in the log and shown by ``cadence status``, and asked again a day later.
"""

from __future__ import annotations

import logging
from concurrent.futures import Executor
from datetime import datetime, timedelta

from agent.connectors.base import Pulls, Streams
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
#: the ``resource_id`` of a streaming subscription's row (a pull row's is its watermark)
STREAM = "stream"
#: what the note of a pull subscription made because streaming was refused starts with
NO_STREAMING = "streaming refused"
#: what the ``resource_id`` of such a row starts with, before its watermark (the note
#: in ``error`` is cleared when the row is marked; this stays)
NOT_STREAMED = "pull:"


def streamed(row: ChannelRow) -> bool:
    """Whether the row holds a streaming subscription."""
    return row.channel.resource_id == STREAM


def watermark(row: ChannelRow) -> str:
    """The watermark a pull subscription's events are asked from."""
    return row.channel.resource_id.removeprefix(NOT_STREAMED)


def kept(row: ChannelRow, mark: str) -> str:
    """The ``resource_id`` that keeps ``mark`` as the row's watermark."""
    return NOT_STREAMED + mark if row.channel.resource_id.startswith(NOT_STREAMED) else mark


def due(row: ChannelRow | None, now: datetime, stream: bool = False) -> bool:
    """Whether a calendar needs a new subscription (``stream``: a streaming one is wanted)."""
    if row is None:
        return True
    if row.state == "refused":
        return row.channel.expires <= now
    if row.state in ("failed", "removed") or row.channel.expires <= now:
        return True
    if streamed(row):
        return not stream
    return stream and not row.channel.resource_id.startswith(NOT_STREAMED)


def ask(
    calendar: Pulls, person: Person, stream: bool = False, note: str | None = None
) -> tuple[str, str, str | None] | CadenceError:
    """One Subscribe (in a pool thread, it writes nothing): (id, watermark or ``STREAM``,
    why streaming was not had: ``note``, or the refusal) or the error. A refused
    streaming subscription falls back to a pull one."""
    if stream and isinstance(calendar, Streams):
        try:
            return calendar.subscribe_stream(person), STREAM, None
        except PermanentError as exc:
            note = f"{NO_STREAMING}: {exc}"[:500]
        except CadenceError as exc:
            return exc
    try:
        return (*calendar.subscribe(person, LIFETIME), note)
    except CadenceError as exc:
        return exc


def record(
    rows: PushRows,
    person: Person,
    calendar: Pulls,
    row: ChannelRow | None,
    now: datetime,
    answer: tuple[str, str, str | None] | CadenceError,
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
    subscription, watermark, note = answer
    channel = Channel(
        owner=person.email,
        provider=calendar.pull_provider,
        id=subscription,
        resource_id=watermark if note is None or watermark == STREAM else NOT_STREAMED + watermark,
        secret="",
        expires=now + LIFETIME,
        address=person.account,
    )
    rows.save(channel, now, error=note)
    return None


def subscribe(
    rows: PushRows,
    person: Person,
    calendar: Pulls,
    row: ChannelRow | None,
    now: datetime,
    stream: bool = False,
    note: str | None = None,
) -> str | None:
    """Make a subscription for ``person`` and keep it; return the error, or None. A
    pull subscription made with ``note`` (why not streaming) keeps it."""
    return record(rows, person, calendar, row, now, ask(calendar, person, stream, note))


def keep(
    rows: PushRows,
    jobs: list[tuple[Person, Pulls, ChannelRow | None]],
    now: datetime,
    pool: Executor | None = None,
    stream: bool = False,
) -> tuple[list[str], list[str]]:
    """Subscribe where ``due``, in ``pool`` when given (the store is written here only);
    return the people subscribed and the errors (a refusal is not an error: polling is
    what that server offers)."""
    opened: list[str] = []
    errors: list[str] = []
    refused: dict[str, str] = {}  # newly refused calendars, and why
    futures = [
        pool.submit(ask, calendar, person, stream) if pool else None for person, calendar, _ in jobs
    ]
    for (person, calendar, row), future in zip(jobs, futures, strict=True):
        answer = future.result() if future else ask(calendar, person, stream)
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
