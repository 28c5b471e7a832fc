"""EWS pull notifications of a person's calendar: ``Subscribe`` with a
``PullSubscriptionRequest``, ``GetEvents`` from a watermark, ``Unsubscribe``, through
exchangelib's own services.

Pull, not streaming: a streaming subscription needs a ``GetStreamingEvents`` connection
held open (a socket and a thread) and reopened every 30 minutes at most, and what
arrives while it is closed is lost. A pull subscription is asked with one short request
that Exchange answers from its event queue, and it outlives the process that made it:
the subscription id and the last watermark, kept in the store, let a restarted service
go on where it stopped. Push subscriptions (Exchange calling an URL) are not used: an
Exchange server on premises rarely may reach out of its network.
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from exchangelib import errors as ews_errors
from exchangelib.folders import FolderCollection
from exchangelib.properties import StatusEvent
from exchangelib.services import GetEvents

from agent.connectors.exchange.client import Ews
from agent.core.errors import CursorExpired
from agent.core.model import Person

#: what changes a calendar: items made, changed, removed, moved or copied into it
EVENT_TYPES = ("CreatedEvent", "DeletedEvent", "ModifiedEvent", "MovedEvent", "CopiedEvent")
#: answers that say the subscription or its watermark is gone: the calendar may have
#: changed unseen since the last watermark
LOST = (
    ews_errors.ErrorSubscriptionNotFound,
    ews_errors.ErrorExpiredSubscription,
    ews_errors.ErrorInvalidSubscription,
    ews_errors.ErrorInvalidWatermark,
    ews_errors.ErrorSubscriptionUnsubsribed,
)
#: GetEvents asked at most this often in one pull (each answer holds tens of events)
MAX_ROUNDS = 100
#: the longest and shortest idle time Exchange accepts for a pull subscription, minutes
MAX_TIMEOUT, MIN_TIMEOUT = 1440, 1


class PullSubscriptions:
    """The ``Pulls`` capability of the Exchange calendar."""

    ews: Ews
    pull_provider = "exchange"

    def subscribe(self, person: Person, lifetime: timedelta) -> tuple[str, str]:
        folder = self.ews.folder(person.email)
        minutes = max(MIN_TIMEOUT, min(MAX_TIMEOUT, int(lifetime.total_seconds() // 60)))

        def ask() -> tuple[str, str]:
            # a distinguished folder addressed by mailbox: no GetFolder first
            found = FolderCollection(account=folder.account, folders=[folder]).subscribe_to_pull(
                event_types=EVENT_TYPES, timeout=minutes
            )
            subscription, watermark = found
            return str(subscription), str(watermark)

        return self.ews.call(f"subscription to the calendar of {person.email}", ask)

    def pull(self, person: Person, subscription: str, watermark: str) -> tuple[int, str]:
        folder = self.ews.folder(person.email)

        def ask() -> tuple[int, str]:
            changes, last = 0, watermark
            service = GetEvents(account=folder.account)
            try:
                # asked again from the last event's watermark while the server says
                # MoreEvents (Folder.get_events asks from the first one each time)
                for _ in range(MAX_ROUNDS):
                    notification = service.get(subscription_id=subscription, watermark=last)
                    for event in notification.events or ():
                        if event.watermark:
                            last = str(event.watermark)
                        if not isinstance(event, StatusEvent):
                            changes += 1
                    if not notification.more_events:
                        break
            except LOST as exc:
                raise CursorExpired(
                    f"the subscription to the calendar of {person.email} is gone: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            return changes, last

        return self.ews.call(f"events of the calendar of {person.email}", ask)

    def unsubscribe(self, person: Person, subscription: str) -> None:
        folder = self.ews.folder(person.email)

        def ask() -> None:
            with contextlib.suppress(*LOST):  # already ended
                folder.unsubscribe(subscription)

        self.ews.call(f"end of the subscription of {person.email}", ask)
