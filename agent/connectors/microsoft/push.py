"""Graph change notifications: one subscription per person's events (created, updated,
deleted), with lifecycle notifications to the same address.

Graph checks the notification URL when a subscription is made (the ``validationToken``
handshake, which the receiver answers), lets an Outlook event subscription live 10,080
minutes (under seven days) at the most, and extends one with a PATCH of its
``expirationDateTime``. A subscription Graph no longer knows is made again.
"""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from datetime import UTC, datetime, timedelta
from typing import Any

from agent.connectors.microsoft.events import user_path
from agent.connectors.microsoft.graph import Graph
from agent.core.errors import PermanentError
from agent.core.model import Channel, Person

#: the lifetime asked for: under Graph's 10,080 minutes for Outlook events, with a margin
#: for the clocks
LIFETIME = timedelta(minutes=10_080 - 10)
CHANGES = "created,updated,deleted"


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


def _expires(answer: dict[str, Any], until: datetime) -> datetime:
    """When Graph says the subscription ends (to the second; Graph writes seven
    fractional digits, which Python does not read)."""
    found = re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", str(answer.get("expirationDateTime", "")))
    if not found:
        return until
    return datetime.fromisoformat(found.group(0)).replace(tzinfo=UTC)


def watch(graph: Graph, person: Person, address: str, secret: str, until: datetime) -> Channel:
    """Subscribe to ``person``'s events; Graph validates ``address`` before it answers."""
    resource = f"{user_path(person)}/events"
    body = {
        "changeType": CHANGES,
        "notificationUrl": address,
        "lifecycleNotificationUrl": address,
        "resource": resource,
        "expirationDateTime": _iso(until),
        "clientState": secret,
    }
    answer = graph.send("POST", "/subscriptions", json_body=body, idempotent=False).json()
    if not answer.get("id"):
        raise PermanentError(f"Graph answered a subscription for {person.email} without an id")
    return Channel(
        owner=person.email,
        provider="microsoft",
        id=str(answer["id"]),
        resource_id=resource,
        secret=secret,
        expires=_expires(answer, until),
        address=address,
    )


def renew(
    graph: Graph, person: Person, channel: Channel, address: str, secret: str, until: datetime
) -> Channel:
    """Extend the subscription (its clientState stays); one that is gone is made again."""
    path = f"/subscriptions/{urllib.parse.quote(channel.id, safe='')}"
    try:
        answer = graph.send("PATCH", path, json_body={"expirationDateTime": _iso(until)}).json()
    except PermanentError as exc:
        if "404" not in str(exc) and "ResourceNotFound" not in str(exc):
            raise
        return watch(graph, person, address, secret, until)
    return dataclasses.replace(channel, expires=_expires(answer, until))


def unwatch(graph: Graph, person: Person, channel: Channel) -> None:
    """Delete a subscription; one Graph no longer knows is deleted."""
    path = f"/subscriptions/{urllib.parse.quote(channel.id, safe='')}"
    try:
        graph.send("DELETE", path)
    except PermanentError as exc:
        if "404" not in str(exc) and "ResourceNotFound" not in str(exc):
            raise
