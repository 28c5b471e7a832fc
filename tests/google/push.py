"""The fake Google's push channels: ``events.watch`` and ``channels.stop`` (checked against
the discovery document like every call), and notifications delivered over HTTP.

As Google documents it: a new channel gets a ``sync`` message first (message number 1);
each change of the calendar then gets an ``exists`` message with the next number. Every
message carries X-Goog-Channel-ID, X-Goog-Channel-Token, X-Goog-Channel-Expiration,
X-Goog-Resource-ID, X-Goog-Resource-URI, X-Goog-Resource-State and
X-Goog-Message-Number, and no body. A channel stops at its expiration; Google grants a
week at the most.
"""

from __future__ import annotations

import hashlib
import queue
import threading
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

MAX_LIFETIME = timedelta(days=7)


@dataclass
class Watch:
    id: str
    owner: str
    resource_id: str
    address: str
    token: str
    expires: datetime
    number: int = 0


class Channels:
    """The channels of one fake Google, and the thread that delivers their messages."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self.by_id: dict[str, Watch] = {}
        #: (channel id, resource state, HTTP status answered) per delivered message
        self.delivered: list[tuple[str, str, int]] = []
        self.paused = False  # a delivery lost on the way (a "missed" change)
        self._queue: queue.Queue[tuple[Watch, str] | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    # --- the API (called under the state's lock) ----------------------------------------

    def watch(self, grant: Any, calendar: Any, body: dict[str, Any]) -> dict[str, Any]:
        from tests.google.server import Failure, now

        if body.get("type") not in ("web_hook", "webhook"):
            raise Failure(400, "Invalid channel type.", "invalid")
        address = str(body.get("address", ""))
        if not address.startswith(("https://", "http://127.0.0.1", "http://localhost")):
            raise Failure(
                400, "WebHook callback must be HTTPS: " + address, "push.webhookUrlNotHttps"
            )
        if not body.get("id") or body["id"] in self.by_id:
            raise Failure(400, "Channel id not unique.", "channelIdNotUnique")
        longest = now() + MAX_LIFETIME
        asked = body.get("expiration")
        expires = min(longest, datetime.fromtimestamp(int(asked) / 1000, UTC)) if asked else longest
        resource = "res" + hashlib.sha1(calendar.owner.encode()).hexdigest()[:20]
        made = Watch(body["id"], calendar.owner, resource, address, body.get("token", ""), expires)
        self.by_id[made.id] = made
        self._send(made, "sync")
        return {
            "kind": "api#channel",
            "id": made.id,
            "resourceId": resource,
            "resourceUri": self._uri(made),
            "token": made.token,
            "expiration": str(int(expires.timestamp() * 1000)),
        }

    def stop(self, grant: Any, body: dict[str, Any]) -> None:
        from tests.google.server import Failure

        found = self.by_id.get(str(body.get("id")))
        if found is None or found.resource_id != body.get("resourceId"):
            raise Failure(404, f"Channel '{body.get('id')}' not found for project", "notFound")
        del self.by_id[found.id]

    def changed(self, owner: str) -> None:
        """A calendar changed: every open channel on it gets an ``exists`` message."""
        from tests.google.server import now

        for made in list(self.by_id.values()):
            if made.owner != owner:
                continue
            if made.expires <= now():
                del self.by_id[made.id]  # ended: Google sends nothing more
                continue
            self._send(made, "exists")

    # --- test controls -----------------------------------------------------------------

    def on(self, owner: str) -> list[Watch]:
        with self.state.lock:
            return [w for w in self.by_id.values() if w.owner == owner]

    def expire(self, owner: str) -> None:
        """End the calendar's channels now, as their expiration would."""
        from tests.google.server import now

        with self.state.lock:
            for made in self.by_id.values():
                if made.owner == owner:
                    made.expires = now() - timedelta(seconds=1)

    def forge(self, made: Watch, **headers: str) -> int:
        """Post a message to a channel's address with headers changed; return the status."""
        return _post(made.address, {**self._headers(made, "exists"), **headers})

    def drain(self) -> None:
        """Wait until every message queued so far is delivered."""
        self._queue.join()

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None

    # --- delivery ------------------------------------------------------------------------

    def _uri(self, made: Watch) -> str:
        return (
            f"https://www.googleapis.com/calendar/v3/calendars/{made.owner}/events"
            "?alt=json&singleEvents=true"
        )

    def _headers(self, made: Watch, state: str) -> dict[str, str]:
        return {
            "X-Goog-Channel-ID": made.id,
            "X-Goog-Channel-Token": made.token,
            "X-Goog-Channel-Expiration": format_datetime(made.expires, usegmt=True),
            "X-Goog-Resource-ID": made.resource_id,
            "X-Goog-Resource-URI": self._uri(made),
            "X-Goog-Resource-State": state,
            "X-Goog-Message-Number": str(made.number),
        }

    def _send(self, made: Watch, state: str) -> None:
        made.number += 1
        if self.paused and state == "exists":
            return
        if self._thread is None:
            self._thread = threading.Thread(target=self._deliver, name="fake-google-push")
            self._thread.start()
        self._queue.put((made, state))

    def _deliver(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                made, state = item
                with self.state.lock:
                    headers = self._headers(made, state)
                status = _post(made.address, headers)
                with self.state.lock:
                    self.delivered.append((made.id, state, status))
            finally:
                self._queue.task_done()


def _post(address: str, headers: dict[str, str]) -> int:
    request = urllib.request.Request(address, data=b"", headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0
