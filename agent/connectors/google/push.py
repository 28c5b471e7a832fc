"""Calendar v3 push: one ``events.watch`` channel per calendar, stopped with
``channels.stop``.

Google cannot extend a channel: renewing opens a new one (a new id, the same calendar)
and then stops the old one. Channels end at their ``expiration``; Google may end them
sooner, and says so in the answer.
"""

from __future__ import annotations

import contextlib
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.connectors.google.client import Client, GoogleFailure
from agent.core.errors import PermanentError
from agent.core.model import Channel, Person

#: the lifetime asked for: Google ends an events channel after a week at the most and
#: answers with the expiration it grants
LIFETIME = timedelta(days=7)


def watch(client: Client, person: Person, address: str, secret: str, until: datetime) -> Channel:
    """Open a web_hook channel on ``person``'s events that posts to ``address``."""
    body = {
        "id": uuid.uuid4().hex,
        "type": "web_hook",
        "address": address,
        "token": secret,
        "expiration": str(int(until.timestamp() * 1000)),
    }
    request = client.calendar.events().watch(calendarId=person.email, body=body)
    answer: dict[str, Any] = client.execute(request, person.email)
    if not answer.get("resourceId") or answer.get("id") != body["id"]:
        raise PermanentError(f"Google answered events.watch for {person.email} without the channel")
    expires = answer.get("expiration")
    return Channel(
        owner=person.email,
        provider="google",
        id=body["id"],
        resource_id=str(answer["resourceId"]),
        secret=secret,
        expires=datetime.fromtimestamp(int(expires) / 1000, UTC) if expires else until,
        address=address,
    )


def unwatch(client: Client, person: Person, channel: Channel) -> None:
    """Stop a channel; one Google no longer knows (expired, stopped) is stopped."""
    request = client.calendar.channels().stop(
        body={"id": channel.id, "resourceId": channel.resource_id}
    )
    try:
        client.execute(request, person.email)
    except GoogleFailure as exc:
        if exc.status != 404:
            raise


def renew(
    client: Client, person: Person, channel: Channel, address: str, secret: str, until: datetime
) -> Channel:
    """A new channel first, then the old one stopped: no gap without notifications."""
    fresh = watch(client, person, address, secret, until)
    # the old channel ends at its expiration anyway; its notifications are refused
    with contextlib.suppress(PermanentError):
        unwatch(client, person, channel)
    return fresh
