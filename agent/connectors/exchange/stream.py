"""EWS streaming notifications of a person's calendar: ``Subscribe`` with a
``StreamingSubscriptionRequest``, then ``GetStreamingEvents`` for a group of
subscriptions over one HTTP response that Exchange holds open, through exchangelib's own
services.

Why streaming beside pull: a pull subscription must be asked (``GetEvents``) to learn
that nothing happened, one request per calendar every ``push.pull``; one streaming
connection carries up to 200 subscriptions of a server and costs a request only when it
is opened again, every ``push.stream_timeout`` (30 minutes at most). A change arrives
within the second it happens instead of within ``push.pull``.

Exchange keeps a streaming subscription for about 30 minutes without a connection; after
that ``GetStreamingEvents`` answers ``ErrorSubscriptionNotFound`` and names the lost ids
(exchangelib puts them in the message text only: :class:`_Events` keeps them).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import Any

from exchangelib.folders import FolderCollection
from exchangelib.properties import StatusEvent
from exchangelib.services import GetStreamingEvents
from exchangelib.util import MNS, get_xml_attrs

from agent.connectors.base import OPEN
from agent.connectors.exchange.client import Ews, translate
from agent.connectors.exchange.notify import EVENT_TYPES, LOST
from agent.core.model import Person

#: the longest connection Exchange holds (``ConnectionTimeout``, minutes)
MAX_MINUTES = 30


def _shut(response: Any) -> None:
    """Shut the socket under a streaming response down: a socket closed in another
    thread does not wake a blocked read; shut down, it does (the reading thread then
    releases the session itself)."""
    connection = getattr(getattr(response, "raw", None), "_connection", None)
    sock = getattr(connection, "sock", None)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


class _Events(GetStreamingEvents):  # type: ignore[misc]
    """``GetStreamingEvents`` that keeps the subscription ids an error message names,
    notes the first ``OK`` (the server holds the connection: exchangelib keeps it to
    itself), and shuts its response down at once when the stream was closed before the
    response arrived (``close`` then found no socket to shut)."""

    def __init__(self, closed: threading.Event, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lost: list[str] = []
        self.closed = closed
        self.held = False

    def _get_response(self, payload: Any, api_version: Any) -> Any:
        response = super()._get_response(payload, api_version)
        if self.closed.is_set():  # set before close() could see this response
            _shut(response)
        return response

    def _get_element_container(self, message: Any, name: Any = None) -> Any:
        ids = message.find(f"{{{MNS}}}ErrorSubscriptionIds")
        if ids is not None:
            self.lost = [str(i) for i in get_xml_attrs(ids, f"{{{MNS}}}SubscriptionId")]
        found = super()._get_element_container(message, name)  # raises the message's error
        if self.connection_status == self.OK and not self.held:
            self.held = True
            if found == []:  # nothing else in it: yield a None, so that it is seen
                return True
        return found

    def _elem_to_obj(self, elem: Any) -> Any:
        return None if elem is True else super()._elem_to_obj(elem)


class EwsStream:
    """One ``GetStreamingEvents`` connection (the ``Stream`` of ``connectors.base``)."""

    def __init__(self, ews: Ews, anchor: Person, subscriptions: Sequence[str], minutes: int):
        self.ews = ews
        self.anchor = anchor
        self.subscriptions = list(subscriptions)
        self.minutes = minutes
        self._service: _Events | None = None
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[tuple[str, str]]:
        what = f"streaming events of {len(self.subscriptions)} calendar(s)"
        account = self.ews.folder(self.anchor.email).account
        self._service = service = _Events(self._closed, account=account)
        try:
            answers = service.call(
                subscription_ids=self.subscriptions, connection_timeout=self.minutes
            )
            told = False
            for notification in answers:
                if service.held and not told:
                    told = True
                    yield "", OPEN
                if notification is None:
                    continue
                if isinstance(notification, Exception):
                    raise notification
                if any(not isinstance(e, StatusEvent) for e in notification.events or ()):
                    yield str(notification.subscription_id), "changed"
        except LOST:
            # without ids named, none of them can be trusted
            for subscription in service.lost or self.subscriptions:
                yield subscription, "lost"
        except Exception as exc:
            if not self._closed.is_set():
                raise translate(what, exc) from exc
        finally:
            service.stop_streaming()

    def close(self) -> None:
        # set before looking: the reading thread looks after it stores the response, so
        # one of the two sees the other's step
        self._closed.set()
        _shut(getattr(self._service, "_streaming_response", None))


class StreamingSubscriptions:
    """The ``Streams`` capability of the Exchange calendar."""

    ews: Ews
    stream_provider = "exchange"

    def subscribe_stream(self, person: Person) -> str:
        folder = self.ews.folder(person.email)

        def ask() -> str:
            # a distinguished folder addressed by mailbox: no GetFolder first
            found = FolderCollection(
                account=folder.account, folders=[folder]
            ).subscribe_to_streaming(event_types=EVENT_TYPES)
            return str(found)

        return self.ews.call(f"streaming subscription to the calendar of {person.email}", ask)

    def stream(self, anchor: Person, subscriptions: Sequence[str], timeout: timedelta) -> EwsStream:
        minutes = max(1, min(MAX_MINUTES, int(timeout.total_seconds() // 60)))
        return EwsStream(self.ews, anchor, subscriptions, minutes)
