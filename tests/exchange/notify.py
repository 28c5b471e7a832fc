"""Pull notifications for the local EWS server: ``Subscribe`` (``PullSubscriptionRequest``
on a calendar folder), ``GetEvents`` and ``Unsubscribe``, as Exchange 2016 answers them.

Each mailbox keeps an event queue (:class:`Journaled`): every calendar item created,
changed (``Item.touch``) or deleted is an event with a watermark, one server-wide
sequence. A subscription hands out the events after the watermark it is asked from, at
most ``events_per_call`` at a time (``MoreEvents`` says there are more), or a
``StatusEvent`` when there are none. It ends when it is not asked for its ``Timeout``
minutes (on the server's clock, ``expire`` for tests) or is unsubscribed; asking it then
gives ``ErrorSubscriptionNotFound``. A watermark the server did not hand out gives
``ErrorInvalidWatermark``. With ``offers_subscriptions`` off, Subscribe is refused with
``ErrorInvalidSubscriptionRequest``. Subscribing to another person's calendar as a delegate gives
``ErrorSubscriptionDelegateAccessNotSupported``, as Exchange does: only the mailbox
itself, or an impersonating account, may subscribe.

Streaming notifications: ``Subscribe`` with a ``StreamingSubscriptionRequest`` answers a
``SubscriptionId`` (no watermark), and ``GetStreamingEvents`` for up to 200 of them holds
its answer open (chunked, one SOAP envelope per message, as Exchange 2016 sends them): a
first ``ConnectionStatus`` ``OK``, a ``Notifications`` message as events happen, an
``OK`` every ``heartbeat`` seconds, and ``Closed`` after ``ConnectionTimeout`` minutes
(``minute`` seconds each, shortened in tests). Events that happen while no connection
holds a subscription wait for the next one; a subscription no connection held for
``stream_idle`` seconds (30 minutes) ends. Unknown ids give ``ErrorSubscriptionNotFound``
with the ids under ``ErrorSubscriptionIds``. A subscription is held by one connection at a
time: a newer connection takes it. With ``offers_streaming`` off (Exchange 2007, or a
policy), a streaming Subscribe is refused with ``ErrorInvalidSubscriptionRequest``. With
``connection_limit`` set (``HangingConnectionLimit``: 3 on Exchange Server, 10 online), a
mailbox acted as that already holds that many connections is refused another with
``ErrorExceededConnectionCount``.
"""

from __future__ import annotations

import base64
import collections
import itertools
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.exchange.server import Item, Mailbox, Request

T = "http://schemas.microsoft.com/exchange/services/2006/types"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
#: the one server-wide event sequence watermarks point into
_SEQ = itertools.count(1)
#: the last event of that sequence (a held connection with nothing newer looks no further)
LAST = [0]


def t(name: str) -> str:
    return f"{{{T}}}{name}"


def m(name: str) -> str:
    return f"{{{M}}}{name}"


@dataclass(frozen=True)
class Change:
    """One event in a mailbox's queue."""

    seq: int
    kind: str  # CreatedEvent, ModifiedEvent, DeletedEvent
    item_id: str
    changekey: str
    at: datetime


def watermark(owner: str, seq: int) -> str:
    return base64.b64encode(f"{owner}|{seq}".encode()).decode()


class Journaled(dict[str, "Item"]):
    """A mailbox's items that queue an event for every calendar item added, replaced or
    removed; ``Item.touch`` queues the changes made in place."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[Change] = []

    def note(self, kind: str, item: Item) -> None:
        self.log.append(Change(next(_SEQ), kind, item.id, item.changekey, datetime.now(UTC)))
        LAST[0] = self.log[-1].seq

    def __setitem__(self, key: str, item: Item) -> None:
        new = key not in self
        super().__setitem__(key, item)
        if item.kind == "CalendarItem":
            item.journal = self
            self.note("CreatedEvent" if new else "ModifiedEvent", item)

    def __delitem__(self, key: str) -> None:
        item = self[key]
        super().__delitem__(key)
        if item.kind == "CalendarItem":
            item.journal = None
            self.note("DeletedEvent", item)

    def pop(self, key: str, default: Any = None) -> Any:
        if key not in self:
            return default
        item = self[key]
        del self[key]
        return item


@dataclass(frozen=True)
class Held:
    """A GetStreamingEvents answer being written: its subscriptions, until when."""

    holder: object
    ids: list[str]
    until: float
    acting: str = ""


@dataclass
class Subscription:
    id: str
    owner: str
    acting: str
    types: set[str]
    timeout: int  # minutes
    handed: set[int] = field(default_factory=set)  # the watermarks handed out
    asked: float = field(default_factory=time.monotonic)
    #: a streaming subscription: the user who made it, the last event told, the
    #: connection holding it (None: none does, since ``asked``)
    streaming: bool = False
    user: str = ""
    told: int = 0
    holder: object | None = None


class Subscriptions:
    """The notification operations of the EWS server (mixed into ``EwsServer``)."""

    mailboxes: dict[str, Mailbox]
    subscriptions: dict[str, Subscription]
    #: whether Subscribe is answered at all (False: as a server whose policy forbids it)
    offers_subscriptions: bool = True
    #: whether streaming subscriptions are offered (False: pull only, as Exchange 2007)
    offers_streaming: bool = True
    events_per_call = 50
    #: seconds in a ``ConnectionTimeout`` minute; between two ``OK`` of a held connection;
    #: that a streaming subscription lives without a connection
    minute = 60.0
    heartbeat = 30.0
    stream_idle = 30 * 60.0
    #: set when the server closes: held connections end
    closing = False
    #: GetStreamingEvents answers being held now, and by the mailbox acted as
    held = 0
    holding: collections.Counter[str]
    #: held connections a mailbox acted as may have at once (None: no limit)
    connection_limit: int | None = None

    # --- test controls -----------------------------------------------------------------

    def subscriptions_of(self, owner: str) -> list[Subscription]:
        return [
            s for s in self.subscriptions.values() if s.owner == owner.lower() and self._alive(s)
        ]

    def expire(self, owner: str | None = None) -> None:
        """End subscriptions now, as the server does when they are not asked in time."""
        for sid, sub in list(self.subscriptions.items()):
            if owner is None or sub.owner == owner.lower():
                del self.subscriptions[sid]

    def _alive(self, sub: Subscription) -> bool:
        if sub.streaming:
            return sub.holder is not None or time.monotonic() - sub.asked <= self.stream_idle
        return time.monotonic() - sub.asked <= sub.timeout * 60

    def streams_of(self, owner: str) -> list[Subscription]:
        return [s for s in self.subscriptions_of(owner) if s.streaming]

    # --- operations --------------------------------------------------------------------

    def _op_Subscribe(self, req: Request) -> ET.Element:
        from tests.exchange.server import EwsFault, ItemError

        response, msgs = self._messages("Subscribe")  # type: ignore[attr-defined]
        pull = req.body.find(m("PullSubscriptionRequest"))
        streaming = req.body.find(m("StreamingSubscriptionRequest"))
        if pull is None and streaming is None:
            raise EwsFault("ErrorInvalidSubscriptionRequest", "no push subscriptions here")
        if pull is None:
            return self._subscribe_streaming(req, response, msgs, streaming)
        try:
            if not self.offers_subscriptions:
                raise ItemError(
                    "ErrorInvalidSubscriptionRequest", "Subscriptions are disabled on this server."
                )
            owner, acting = self._subscribed_calendar(req, pull)
            types = {e.text or "" for e in pull.iter(t("EventType"))}
            timeout = int(pull.findtext(t("Timeout")) or "0")
            if not 1 <= timeout <= 1440:
                raise ItemError("ErrorInvalidSubscriptionRequest", "Timeout is 1 to 1440")
        except ItemError as exc:
            self._message(msgs, "Subscribe", exc)  # type: ignore[attr-defined]
            return response
        journal = self.mailboxes[owner].items
        assert isinstance(journal, Journaled)
        sub = Subscription(str(uuid.uuid4()), owner, acting, types, timeout)
        start = journal.log[-1].seq if journal.log else 0
        sub.handed.add(start)
        self.subscriptions[sub.id] = sub
        msg = self._message(msgs, "Subscribe")  # type: ignore[attr-defined]
        ET.SubElement(msg, m("SubscriptionId")).text = sub.id
        ET.SubElement(msg, m("Watermark")).text = watermark(owner, start)
        return response

    def _subscribed_calendar(self, req: Request, request: ET.Element) -> tuple[str, str]:
        """The mailbox whose calendar a Subscribe names, and who asks: its own owner only
        (Exchange refuses subscriptions through delegate access)."""
        from tests.exchange.server import EwsFault, ItemError

        folders = request.find(t("FolderIds"))
        if folders is None or len(folders) != 1:
            raise EwsFault("ErrorSchemaValidation", "one folder is subscribed to here")
        owner, name = self._folder_target(req, folders)  # type: ignore[attr-defined]
        self._box(owner)  # type: ignore[attr-defined]
        acting: str = self._acting(req)  # type: ignore[attr-defined]
        if owner != acting:
            self._may_access(req, owner)  # type: ignore[attr-defined]
            raise ItemError(
                "ErrorSubscriptionDelegateAccessNotSupported",
                "Subscriptions are not supported for delegate user access.",
            )
        if name != "calendar":
            raise ItemError("ErrorInvalidSubscriptionRequest", f"no events for {name}")
        return owner, acting

    def _subscribe_streaming(
        self, req: Request, response: ET.Element, msgs: ET.Element, request: ET.Element
    ) -> ET.Element:
        from tests.exchange.server import ItemError

        try:
            if not (self.offers_subscriptions and self.offers_streaming):
                raise ItemError(
                    "ErrorInvalidSubscriptionRequest",
                    "Streaming subscriptions are not supported on this server.",
                )
            owner, acting = self._subscribed_calendar(req, request)
        except ItemError as exc:
            self._message(msgs, "Subscribe", exc)  # type: ignore[attr-defined]
            return response
        journal = self.mailboxes[owner].items
        assert isinstance(journal, Journaled)
        types = {e.text or "" for e in request.iter(t("EventType"))}
        sub = Subscription(str(uuid.uuid4()), owner, acting, types, 30, streaming=True)
        sub.user, sub.told = req.user, journal.log[-1].seq if journal.log else 0
        self.subscriptions[sub.id] = sub
        msg = self._message(msgs, "Subscribe")  # type: ignore[attr-defined]
        ET.SubElement(msg, m("SubscriptionId")).text = sub.id
        return response

    def _op_GetStreamingEvents(self, req: Request) -> ET.Element:
        from tests.exchange.server import EwsFault

        response, msgs = self._messages("GetStreamingEvents")  # type: ignore[attr-defined]
        ids = [e.text or "" for e in req.body.iter(t("SubscriptionId"))]
        if not 1 <= len(ids) <= 200:
            raise EwsFault("ErrorInvalidArgument", "1 to 200 subscription ids")
        minutes = int(req.body.findtext(m("ConnectionTimeout")) or "0")
        if not 1 <= minutes <= 30:
            raise EwsFault("ErrorInvalidArgument", "ConnectionTimeout is 1 to 30 minutes")
        unknown = []
        for sid in ids:
            sub = self.subscriptions.get(sid)
            if sub is None or not sub.streaming or not self._alive(sub) or sub.user != req.user:
                if sub is not None and sub.streaming and not self._alive(sub):
                    del self.subscriptions[sid]
                unknown.append(sid)
        if unknown:
            msg = ET.SubElement(msgs, m("GetStreamingEventsResponseMessage"), ResponseClass="Error")
            ET.SubElement(msg, m("MessageText")).text = "The specified subscription was not found."
            ET.SubElement(msg, m("ResponseCode")).text = "ErrorSubscriptionNotFound"
            ET.SubElement(msg, m("DescriptiveLinkKey")).text = "0"
            listed = ET.SubElement(msg, m("ErrorSubscriptionIds"))
            for sid in unknown:
                ET.SubElement(listed, m("SubscriptionId")).text = sid
            return response
        acting: str = self._acting(req)  # type: ignore[attr-defined]
        if self.connection_limit is not None and self.holding[acting] >= self.connection_limit:
            msg = ET.SubElement(msgs, m("GetStreamingEventsResponseMessage"), ResponseClass="Error")
            ET.SubElement(
                msg, m("MessageText")
            ).text = "You have exceeded the available concurrent connections for your account."
            ET.SubElement(msg, m("ResponseCode")).text = "ErrorExceededConnectionCount"
            ET.SubElement(msg, m("DescriptiveLinkKey")).text = "0"
            return response
        holder = object()
        for sid in ids:
            self.subscriptions[sid].holder = holder
        self.held += 1
        self.holding[acting] += 1
        until = time.monotonic() + minutes * self.minute
        req.held = Held(holder, ids, until, acting)  # type: ignore[attr-defined]
        return self._status(msgs, response, "OK")

    def _status(self, msgs: ET.Element, response: ET.Element, status: str) -> ET.Element:
        msg = self._message(msgs, "GetStreamingEvents")  # type: ignore[attr-defined]
        ET.SubElement(msg, m("ConnectionStatus")).text = status
        return response

    def hold_open(self, held: Held, send: Callable[[bytes], None]) -> None:
        """Write a held GetStreamingEvents answer until its timeout (or the client leaves)."""
        beat, seen = time.monotonic(), -1
        try:
            while not self.closing and time.monotonic() < held.until:
                envelope = None
                if LAST[0] != seen:
                    with self._lock:  # type: ignore[attr-defined]
                        seen = LAST[0]
                        envelope = self._notifications(held)
                if envelope is None and time.monotonic() - beat >= self.heartbeat:
                    response, msgs = self._messages("GetStreamingEvents")  # type: ignore[attr-defined]
                    envelope = self._envelope(self._status(msgs, response, "OK"))  # type: ignore[attr-defined]
                if envelope is not None:
                    send(envelope)
                    beat = time.monotonic()
                time.sleep(0.02)
            response, msgs = self._messages("GetStreamingEvents")  # type: ignore[attr-defined]
            send(self._envelope(self._status(msgs, response, "Closed")))  # type: ignore[attr-defined]
        finally:
            with self._lock:  # type: ignore[attr-defined]
                self.held -= 1
                self.holding[held.acting] -= 1
                for sid in held.ids:
                    sub = self.subscriptions.get(sid)
                    if sub is not None and sub.holder is held.holder:
                        sub.holder, sub.asked = None, time.monotonic()

    def _notifications(self, held: Held) -> bytes | None:
        """The envelope of what happened to the held subscriptions since last told."""
        response, msgs = self._messages("GetStreamingEvents")  # type: ignore[attr-defined]
        msg = self._message(msgs, "GetStreamingEvents")  # type: ignore[attr-defined]
        notes = ET.SubElement(msg, m("Notifications"))
        for sid in held.ids:
            sub = self.subscriptions.get(sid)
            if sub is None or sub.holder is not held.holder:
                continue
            journal = self.mailboxes[sub.owner].items
            assert isinstance(journal, Journaled)
            if not journal.log or journal.log[-1].seq <= sub.told:
                continue
            after = [c for c in journal.log if c.seq > sub.told]
            sub.told = after[-1].seq
            told = [c for c in after if c.kind in sub.types]
            if not told:
                continue
            note = ET.SubElement(notes, m("Notification"))
            ET.SubElement(note, t("SubscriptionId")).text = sub.id
            folder = base64.b64encode(f"{sub.owner}|calendar".encode()).decode()
            for change in told:
                event = ET.SubElement(note, t(change.kind))
                ET.SubElement(event, t("Watermark")).text = watermark(sub.owner, change.seq)
                ET.SubElement(event, t("TimeStamp")).text = change.at.strftime("%Y-%m-%dT%H:%M:%SZ")
                ET.SubElement(event, t("ItemId"), Id=change.item_id, ChangeKey=change.changekey)
                ET.SubElement(event, t("ParentFolderId"), Id=folder, ChangeKey="AQAAAA==")
        if len(notes) == 0:
            return None
        return self._envelope(response)  # type: ignore[attr-defined,no-any-return]

    def _subscription(self, req: Request) -> Subscription:
        from tests.exchange.server import ItemError

        sid = req.body.findtext(m("SubscriptionId")) or ""
        sub = self.subscriptions.get(sid)
        if sub is None or not self._alive(sub):
            self.subscriptions.pop(sid, None)
            raise ItemError(
                "ErrorSubscriptionNotFound", "The specified subscription was not found."
            )
        if sub.acting != self._acting(req):  # type: ignore[attr-defined]
            raise ItemError("ErrorSubscriptionAccessDenied", "Not the subscription's owner.")
        return sub

    def _op_GetEvents(self, req: Request) -> ET.Element:
        from tests.exchange.server import ItemError

        response, msgs = self._messages("GetEvents")  # type: ignore[attr-defined]
        try:
            sub = self._subscription(req)
            given = req.body.findtext(m("Watermark")) or ""
            try:
                owner, _, seq_text = base64.b64decode(given).decode().partition("|")
                seq = int(seq_text)
            except ValueError:
                owner, seq = "", -1
            if owner != sub.owner or seq not in sub.handed:
                raise ItemError("ErrorInvalidWatermark", "The watermark is invalid.")
        except ItemError as exc:
            self._message(msgs, "GetEvents", exc)  # type: ignore[attr-defined]
            return response
        sub.asked = time.monotonic()
        journal = self.mailboxes[sub.owner].items
        assert isinstance(journal, Journaled)
        after = [c for c in journal.log if c.seq > seq and c.kind in sub.types]
        batch, more = after[: self.events_per_call], len(after) > self.events_per_call
        msg = self._message(msgs, "GetEvents")  # type: ignore[attr-defined]
        note = ET.SubElement(msg, m("Notification"))
        ET.SubElement(note, t("SubscriptionId")).text = sub.id
        ET.SubElement(note, t("PreviousWatermark")).text = watermark(sub.owner, seq)
        ET.SubElement(note, t("MoreEvents")).text = "true" if more else "false"
        folder = base64.b64encode(f"{sub.owner}|calendar".encode()).decode()
        if not batch:
            status = ET.SubElement(note, t("StatusEvent"))
            ET.SubElement(status, t("Watermark")).text = watermark(sub.owner, seq)
        for change in batch:
            sub.handed.add(change.seq)
            event = ET.SubElement(note, t(change.kind))
            ET.SubElement(event, t("Watermark")).text = watermark(sub.owner, change.seq)
            ET.SubElement(event, t("TimeStamp")).text = change.at.strftime("%Y-%m-%dT%H:%M:%SZ")
            ET.SubElement(event, t("ItemId"), Id=change.item_id, ChangeKey=change.changekey)
            ET.SubElement(event, t("ParentFolderId"), Id=folder, ChangeKey="AQAAAA==")
        return response

    def _op_Unsubscribe(self, req: Request) -> ET.Element:
        from tests.exchange.server import ItemError

        response, msgs = self._messages("Unsubscribe")  # type: ignore[attr-defined]
        try:
            sub = self._subscription(req)
        except ItemError as exc:
            self._message(msgs, "Unsubscribe", exc)  # type: ignore[attr-defined]
            return response
        del self.subscriptions[sub.id]
        self._message(msgs, "Unsubscribe")  # type: ignore[attr-defined]
        return response
