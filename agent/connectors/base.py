"""The interfaces every provider implements, and the optional capabilities some add.

``Calendar`` and ``Mailer`` are what every provider offers. What only some can do is
declared by a small protocol of its own, so that a caller asks
``isinstance(calendar, MailboxSettings)`` instead of probing for an attribute:

- ``MailboxSettings``: a calendar that knows people's time zones and working hours;
- ``ConcurrentWrites``: a calendar whose ``find`` and ``create`` may run in several threads;
- ``SendsInvitations``: a calendar whose provider mails the invitations itself;
- ``BusyFromSync``: a calendar whose busy time the tick takes from what it synced;
- ``ConfirmsSend``: a mailer that can tell whether a mail already went out;
- ``ReplyReader``: a mailer that can read replies;
- ``Watches``: a calendar whose provider calls Cadence back when it changes (push);
- ``Pulls``: a calendar whose server queues its changes for a subscription that Cadence
  asks for them (Exchange's pull notifications: nothing calls Cadence back);
- ``Streams``: a calendar whose server tells of changes over a connection Cadence holds
  open (Exchange's streaming notifications).

The errors they raise live in ``agent.core.errors`` and the retry policy they are handed
in ``agent.core.retry``, both leaf modules below every layer.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal, Protocol, runtime_checkable

from agent.core import model
from agent.core.errors import PermanentError


class Busy(dict[str, list[model.Interval]]):
    """Busy intervals per email, and the people whose free/busy could not be read.

    It is a mapping so that a caller that only wants the intervals reads it as one; a
    person in ``failed`` is never in the mapping, since unknown time is not free time.
    One person's error must not cost everyone else on the account their bookings.
    """

    def __init__(
        self,
        times: Mapping[str, list[model.Interval]] | None = None,
        failed: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(times or {})
        #: email -> why that person's free/busy could not be read
        self.failed: dict[str, str] = dict(failed or {})

    def fail(self, email: str, reason: str) -> None:
        """Record that ``email``'s free/busy could not be read, dropping any partial times."""
        self.pop(email, None)
        self.failed[email] = reason


@runtime_checkable
class Calendar(Protocol):
    """Read and write the calendars of the people on one account."""

    def changes(
        self, person: model.Person, since: model.SyncToken | None, window: model.Interval
    ) -> model.Changes:
        """Return what changed on the person's calendar since ``since`` (None: everything).

        Raise CursorExpired when ``since`` is no longer accepted.
        """
        ...

    def busy(self, people: Sequence[model.Person], window: model.Interval) -> Busy:
        """Return busy intervals per email for everyone in ``people``, batched.

        A person whose free/busy alone could not be read (a deleted mailbox, no
        permission) goes into ``Busy.failed`` with the reason; an error that concerns
        the whole query (the account, the network) is raised.
        """
        ...

    def create(self, draft: model.EventDraft) -> model.Event:
        """Put the meeting on the organizer's and attendees' calendars; idempotent on key."""
        ...

    def find(self, person: model.Person, key: str) -> model.Event | None:
        """Return the agent's event with booking ``key`` on the person's calendar."""
        ...

    def move(self, person: model.Person, event: model.Event, to: model.Interval) -> model.Event:
        """Move one of the agent's own events to ``to`` (same event, higher SEQUENCE)."""
        ...

    def cancel(self, person: model.Person, event: model.Event) -> None:
        """Cancel one of the agent's own events; raise PermanentError for any other."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class Mailer(Protocol):
    """Send mail as the people on one account."""

    def send(self, mail: model.OutgoingMail) -> model.SentMail:
        """Send ``mail``; idempotent on ``mail.key`` where the provider allows it."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class IncomingMail:
    """One received message, as raw RFC 5322 bytes, and where it was read from.

    A message larger than the reader's ``max_size`` is not fetched whole: ``raw`` then
    holds its header only, ``whole`` is False and ``size`` says how large it is.
    """

    ref: str
    raw: bytes
    size: int | None = None  # as the server counts it; None: len(raw)
    whole: bool = True

    @property
    def length(self) -> int:
        return self.size if self.size is not None else len(self.raw)


@runtime_checkable
class ReplyReader(Protocol):
    """A mailer that can also read replies (opt-in: it needs a read scope)."""

    def replies(self) -> Sequence[IncomingMail]:
        """Return the messages in the mailbox that may answer Cadence's mail; the
        caller matches them to its own Message-IDs and remembers which it has read."""
        ...

    def marks(self) -> dict[str, str]:
        """How far :meth:`replies` has read, per mailbox (an opaque text): the engine
        keeps them in the store so that a restart does not read every inbox again."""
        ...

    def resume(self, marks: Mapping[str, str], read: Iterable[str] = ()) -> None:
        """Go on from ``marks`` kept from an earlier run (ignored for a mailbox this
        reader has read already), not fetching again the messages whose refs are in
        ``read``."""
        ...


@runtime_checkable
class MailboxSettings(Protocol):
    """A calendar that knows each person's time zone, working hours and language
    (Microsoft 365's mailbox settings): the engine takes them where the config (and, for
    the language, the directory) leaves them out."""

    def mailbox_settings(self, person: model.Person) -> tuple[str, model.WorkingHours]:
        """Return the person's IANA time zone and working hours."""
        ...

    def mailbox_language(self, person: model.Person) -> str | None:
        """Return the locale the person set for their mailbox (``de-DE``), or None."""
        ...


@runtime_checkable
class ConcurrentWrites(Protocol):
    """A calendar whose ``find`` and ``create`` may be called from several threads at once;
    the book step then makes a sweep's events concurrently, else one by one."""

    @property
    def concurrent_writes(self) -> Literal[True]: ...


@runtime_checkable
class SendsInvitations(Protocol):
    """A calendar whose provider mails the attendees their invitations, updates and
    cancellations itself, so Cadence sends no iTIP mail of its own."""

    @property
    def sends_invitations(self) -> Literal[True]: ...


@runtime_checkable
class BusyFromSync(Protocol):
    """A calendar whose busy time is exactly the blocking events of the calendar that
    ``changes`` reads (CalDAV: one collection per person). The tick then takes busy time
    from what it synced, so that slot search and the review of booked meetings read the
    same events: a server whose free-busy disagrees with its own events (a mis-stored
    time zone) cannot make reruns with nothing changed book, move and ask by turns."""

    @property
    def busy_from_sync(self) -> Literal[True]: ...


@runtime_checkable
class ConfirmsSend(Protocol):
    """A mailer that can look at what it sent: the engine asks it after an interrupted
    send instead of sending again."""

    def was_sent(self, mail: model.OutgoingMail) -> bool | None:
        """Return whether ``mail`` already went out; None when the provider cannot tell."""
        ...


@runtime_checkable
class Watches(Protocol):
    """A calendar whose provider notifies ``address`` when a person's calendar changes."""

    @property
    def push_provider(self) -> str:
        """The receiver path's provider name: ``google`` or ``microsoft``."""
        ...

    @property
    def push_lifetime(self) -> timedelta:
        """The longest a channel may be asked to last."""
        ...

    def watch(
        self, person: model.Person, address: str, secret: str, until: datetime
    ) -> model.Channel:
        """Open a channel that notifies ``address`` until about ``until`` (the provider
        may end it sooner: the returned channel says when)."""
        ...

    def renew(
        self,
        person: model.Person,
        channel: model.Channel,
        address: str,
        secret: str,
        until: datetime,
    ) -> model.Channel:
        """Extend ``channel`` to ``until``, or replace it by a new one; return what stands."""
        ...

    def unwatch(self, person: model.Person, channel: model.Channel) -> None:
        """Stop the channel; one the provider no longer knows is already stopped."""
        ...


@runtime_checkable
class Pulls(Protocol):
    """A calendar whose server keeps the changes of a person's calendar for a
    subscription until Cadence asks for them (EWS pull notifications). The server cannot
    call Cadence (Exchange on premises rarely reaches out of its network), so the asking
    is cheap instead: one request per calendar that answers "nothing" most of the time."""

    @property
    def pull_provider(self) -> str:
        """The provider name the subscriptions are kept under: ``exchange``."""
        ...

    def subscribe(self, person: model.Person, lifetime: timedelta) -> tuple[str, str]:
        """Subscribe to the changes of the person's calendar; return the subscription id
        and the watermark its events start after. The subscription ends when it has not
        been asked for ``lifetime``. Raise PermanentError when the server refuses."""
        ...

    def pull(self, person: model.Person, subscription: str, watermark: str) -> tuple[int, str]:
        """Return how many changes happened after ``watermark`` and the watermark to
        ask from next time. Raise CursorExpired when the server no longer knows the
        subscription or the watermark (the calendar may have changed unseen)."""
        ...

    def unsubscribe(self, person: model.Person, subscription: str) -> None:
        """End the subscription; one the server no longer knows is already ended."""
        ...


#: what a ``Stream`` yields, with no subscription, once the server holds the connection
OPEN = "open"


class Stream(Protocol):
    """One connection held open for a group of streaming subscriptions."""

    def __iter__(self) -> Iterator[tuple[str, str]]:
        """Yield ``("", "open")`` once the server holds the connection for all its
        subscriptions, ``(subscription, "changed")`` as a change arrives, and
        ``(subscription, "lost")`` for each subscription the server no longer knows (the
        connection ends then); end when the server closes the connection at its timeout.
        Raise TransientError or PermanentError when the connection fails."""
        ...

    def close(self) -> None:
        """End the connection now, from any thread."""
        ...


@runtime_checkable
class Streams(Protocol):
    """A calendar whose server tells of changes over a connection Cadence holds open
    (EWS streaming notifications): a change is told at once, and the only requests are
    one connection per group of calendars, opened again at its timeout."""

    @property
    def stream_provider(self) -> str:
        """The provider name the subscriptions are kept under: ``exchange``."""
        ...

    def subscribe_stream(self, person: model.Person) -> str:
        """Subscribe to the changes of the person's calendar; return the subscription id.
        Raise PermanentError when the server refuses streaming subscriptions."""
        ...

    def stream(
        self, anchor: model.Person, subscriptions: Sequence[str], timeout: timedelta
    ) -> Stream:
        """A connection for ``subscriptions`` (of one server), made on behalf of
        ``anchor``, that the server closes after ``timeout``; nothing is sent until it
        is iterated."""
        ...


#: the optional capabilities a connector may declare beside Calendar and Mailer
CAPABILITIES: tuple[type, ...] = (
    MailboxSettings,
    ConcurrentWrites,
    SendsInvitations,
    BusyFromSync,
    ConfirmsSend,
    ReplyReader,
    Watches,
    Pulls,
    Streams,
)


def ensure_own(event: model.Event) -> None:
    """Raise PermanentError unless the agent created ``event`` (it carries a key)."""
    if not event.key:
        raise PermanentError(
            f"refusing to change event {event.id!r} on {event.owner}: the agent did not create it"
        )
