"""The fake Graph's subscriptions: ``POST /subscriptions`` (with the validation handshake
on the notification and lifecycle URLs), ``PATCH`` and ``DELETE /subscriptions/{id}``,
change notifications delivered over HTTP when a mailbox's events change, and lifecycle
notifications (``reauthorizationRequired``, ``subscriptionRemoved``, ``missed``).

As Graph documents it: the validation request is a POST with ``validationToken`` in the
query, answered within 10 seconds with 200 and the token as text/plain; an Outlook event
subscription lives at most 10,080 minutes; ``clientState`` is at most 128 characters;
a notification is a JSON ``{"value": [...]}`` whose items carry ``subscriptionId``,
``clientState``, ``changeType``, ``resource``, ``resourceData`` and ``tenantId``.
"""

from __future__ import annotations

import json
import queue
import re
import secrets
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

MAX_LIFETIME = timedelta(minutes=10_080)
CHANGE_TYPES = {"created", "updated", "deleted"}


@dataclass
class Subscription:
    id: str
    owner: str
    resource: str
    change_types: set[str]
    url: str
    lifecycle_url: str | None
    client_state: str
    expires: datetime


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


class Subscriptions:
    def __init__(self, graph: Any) -> None:
        self.graph = graph
        self.by_id: dict[str, Subscription] = {}
        #: (subscription id, kind, HTTP status answered) per delivered notification
        self.delivered: list[tuple[str, str, int]] = []
        self.paused = False
        self._queue: queue.Queue[tuple[str, dict[str, Any], str, str] | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    # --- the API (under the server's lock) ---------------------------------------------

    def dispatch(self, route: str, path: str, body: bytes) -> tuple[int, Any, dict[str, str]]:
        from tests.microsoft.server import GraphError

        payload = json.loads(body) if body.strip() else {}
        if route == "subscriptions.create":
            return 201, self.create(payload), {}
        found = self.by_id.get(path.rsplit("/", 1)[-1])
        if found is None or found.expires <= datetime.now(UTC):
            raise GraphError(404, "ResourceNotFound", "The object was not found.")
        if route == "subscriptions.patch":
            unknown = set(payload) - {"expirationDateTime", "notificationUrl"}
            if unknown:
                raise GraphError(400, "BadRequest", f"Cannot update {sorted(unknown)}")
            found.expires = self._lifetime(payload.get("expirationDateTime"))
            return 200, self._render(found), {}
        del self.by_id[found.id]
        return 204, None, {}

    def create(self, p: dict[str, Any]) -> dict[str, Any]:
        from tests.microsoft.server import GraphError

        known = {
            "changeType",
            "notificationUrl",
            "lifecycleNotificationUrl",
            "resource",
            "expirationDateTime",
            "clientState",
            "latestSupportedTlsVersion",
        }
        if set(p) - known:
            raise GraphError(400, "BadRequest", f"Unknown properties {sorted(set(p) - known)}")
        types = set(str(p.get("changeType", "")).split(","))
        if not types or not types <= CHANGE_TYPES:
            raise GraphError(400, "ExtensionError", f"Invalid changeType {p.get('changeType')}")
        m = re.fullmatch(r"/?users/([^/]+)/events", str(p.get("resource", "")), re.IGNORECASE)
        if not m:
            raise GraphError(400, "ExtensionError", "Unsupported resource")
        owner = urllib.parse.unquote(m.group(1)).lower()
        self.graph._mailbox(owner)
        state = p.get("clientState")
        if state is not None and (not isinstance(state, str) or len(state) > 128):
            raise GraphError(400, "ExtensionError", "clientState is longer than 128 characters")
        expires = self._lifetime(p.get("expirationDateTime"))
        for url in {p.get("notificationUrl"), p.get("lifecycleNotificationUrl")} - {None}:
            self._validate(str(url))
        made = Subscription(
            id=secrets.token_hex(16),
            owner=owner,
            resource=str(p["resource"]),
            change_types=types,
            url=str(p["notificationUrl"]),
            lifecycle_url=p.get("lifecycleNotificationUrl"),
            client_state=state or "",
            expires=expires,
        )
        self.by_id[made.id] = made
        return self._render(made)

    def _lifetime(self, text: Any) -> datetime:
        from tests.microsoft.server import GraphError

        try:
            when = datetime.fromisoformat(str(text).replace("Z", "+00:00")[:19]).replace(tzinfo=UTC)
        except ValueError:
            raise GraphError(400, "BadRequest", f"Invalid expirationDateTime {text!r}") from None
        now = datetime.now(UTC)
        if when <= now or when > now + MAX_LIFETIME:
            raise GraphError(
                400,
                "ExtensionError",
                "Subscription expiration can only be 10070 minutes in the future.",
            )
        return when

    def _validate(self, url: str) -> None:
        from tests.microsoft.server import GraphError

        if not url.startswith(("https://", "http://127.0.0.1")):
            raise GraphError(400, "ValidationError", "The notification URL must be HTTPS")
        token = "Validation: Testing client application reachability " + secrets.token_hex(8)
        target = (
            url + ("&" if "?" in url else "?") + urllib.parse.urlencode({"validationToken": token})
        )
        request = urllib.request.Request(
            target, data=b"", method="POST", headers={"Content-Type": "text/plain"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                ok = (
                    answer.status == 200
                    and answer.headers.get_content_type() == "text/plain"
                    and answer.read().decode() == token
                )
        except OSError:
            ok = False
        if not ok:
            raise GraphError(400, "ValidationError", "Subscription validation request failed.")

    def _render(self, s: Subscription) -> dict[str, Any]:
        return {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscriptions/$entity",
            "id": s.id,
            "resource": s.resource,
            "changeType": ",".join(sorted(s.change_types)),
            "clientState": s.client_state or None,
            "notificationUrl": s.url,
            "lifecycleNotificationUrl": s.lifecycle_url,
            "expirationDateTime": _iso(s.expires),
        }

    # --- notifications -------------------------------------------------------------------

    def changed(self, owner: str, event_id: str, change: str) -> None:
        now = datetime.now(UTC)
        for s in list(self.by_id.values()):
            if s.owner != owner.lower() or change not in s.change_types:
                continue
            if s.expires <= now:
                del self.by_id[s.id]
                continue
            if self.paused:
                continue
            item = {
                "subscriptionId": s.id,
                "subscriptionExpirationDateTime": _iso(s.expires),
                "changeType": change,
                "resource": f"Users/{owner}/Events/{event_id}",
                "resourceData": {
                    "@odata.type": "#Microsoft.Graph.Event",
                    "@odata.id": f"Users/{owner}/Events/{event_id}",
                    "id": event_id,
                },
                "clientState": s.client_state,
                "tenantId": self.graph.tenant,
            }
            self._send(s.url, {"value": [item]}, s.id, change)

    def lifecycle(self, owner: str, event: str) -> None:
        """Send a lifecycle notification for the owner's subscription."""
        with self.graph.lock:
            (s,) = [x for x in self.by_id.values() if x.owner == owner.lower()]
            item = {
                "subscriptionId": s.id,
                "subscriptionExpirationDateTime": _iso(s.expires),
                "tenantId": self.graph.tenant,
                "clientState": s.client_state,
                "lifecycleEvent": event,
            }
            if event == "subscriptionRemoved":
                del self.by_id[s.id]
            self._send(s.lifecycle_url or s.url, {"value": [item]}, s.id, event)

    def on(self, owner: str) -> list[Subscription]:
        with self.graph.lock:
            return [s for s in self.by_id.values() if s.owner == owner.lower()]

    def post(self, url: str, payload: dict[str, Any]) -> int:
        """Post any payload to the receiver (a forger's)."""
        return _post(url, payload)

    def drain(self) -> None:
        self._queue.join()

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    def _send(self, url: str, payload: dict[str, Any], sid: str, kind: str) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._deliver, name="fake-graph-push")
            self._thread.start()
        self._queue.put((url, payload, sid, kind))

    def _deliver(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                url, payload, sid, kind = item
                status = _post(url, payload)
                with self.graph.lock:
                    self.delivered.append((sid, kind, status))
            finally:
                self._queue.task_done()


def _post(url: str, payload: dict[str, Any]) -> int:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0
