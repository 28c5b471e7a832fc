"""Reading a calendar's changes: a full ``calendar-query`` over a horizon, then RFC 6578
``sync-collection`` or, where the server lacks it, ``getctag`` and ETag listings.
"""

from __future__ import annotations

import base64
import json
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import quote
from xml.sax.saxutils import escape

from agent.connectors.caldav.client import CALDAV, CS, DAV, Refused, StoredObject, Transport
from agent.core.errors import CursorExpired, PermanentError
from agent.core.model import (
    Changes,
    Event,
    Interval,
    Person,
    Skipped,
    SyncToken,
)

#: a full sync expands events this far past the window's end, so that the window can
#: move with the clock for about a month before the next full sync
HORIZON_SLACK = timedelta(days=30)
CURSOR_VERSION = 1


@dataclass
class _Cursor:
    """What one calendar looked like at the last sync (opaque to the engine).

    ``ids`` maps each object's path to the event ids it produced within ``horizon``, so
    that a deleted object or a vanished instance can be reported as removed.
    """

    url: str
    mode: str  # "sync": RFC 6578 token; "etag": ctag + per-object ETags
    horizon: Interval
    token: str | None = None
    ctag: str | None = None
    etags: dict[str, str] = field(default_factory=dict)
    ids: dict[str, list[str]] = field(default_factory=dict)

    def encode(self) -> SyncToken:
        data = {
            "v": CURSOR_VERSION,
            "url": self.url,
            "mode": self.mode,
            "h": [self.horizon.start.isoformat(), self.horizon.end.isoformat()],
            "token": self.token,
            "ctag": self.ctag,
            "etags": self.etags,
            "ids": self.ids,
        }
        packed = zlib.compress(json.dumps(data, separators=(",", ":")).encode(), 9)
        return "caldav1:" + base64.urlsafe_b64encode(packed).decode()

    @classmethod
    def decode(cls, text: SyncToken) -> _Cursor:
        try:
            if not text.startswith("caldav1:"):
                raise ValueError("not a caldav cursor")
            data = json.loads(zlib.decompress(base64.urlsafe_b64decode(text[8:])))
            if data["v"] != CURSOR_VERSION:
                raise ValueError("old cursor version")
            return cls(
                url=data["url"],
                mode=data["mode"],
                horizon=Interval(
                    datetime.fromisoformat(data["h"][0]), datetime.fromisoformat(data["h"][1])
                ),
                token=data["token"],
                ctag=data["ctag"],
                etags=dict(data["etags"]),
                ids={k: list(v) for k, v in data["ids"].items()},
            )
        except (ValueError, KeyError, TypeError, zlib.error) as exc:
            raise CursorExpired(f"unreadable CalDAV cursor: {exc}") from exc


class Sync(Transport):
    """The ``changes`` of the Calendar protocol."""

    def changes(self, person: Person, since: SyncToken | None, window: Interval) -> Changes:
        """Return the person's events in ``window``, or what changed since ``since``."""
        url = self.calendar_url(person)
        if since is None:
            return self._full(person, url, window)
        cursor = _Cursor.decode(since)
        if cursor.url != url:
            raise CursorExpired(f"the calendar of {person.email} is now {url}")
        if not cursor.horizon.contains(window):
            return self._full(person, url, window)
        if cursor.mode == "sync" and (url, "sync-collection") not in self._refused:
            return self._incremental_sync(person, url, cursor)
        if cursor.mode == "sync":
            return self._full(person, url, window)
        return self._incremental_etag(person, url, cursor)

    def _collection_state(self, url: str) -> tuple[str | None, str | None]:
        found = self._propfind(url, "<D:sync-token/><CS:getctag/>", 0)
        props = found[0].properties if found else {}
        token = props.get(f"{{{DAV}}}sync-token")
        ctag = props.get(f"{{{CS}}}getctag")
        return (token if isinstance(token, str) else None, ctag if isinstance(ctag, str) else None)

    def _full(self, person: Person, url: str, window: Interval) -> Changes:
        horizon = Interval(window.start, window.end + HORIZON_SLACK)
        token, ctag = self._collection_state(url)
        if (url, "sync-collection") in self._refused:
            token = None
        cursor = _Cursor(url=url, mode="sync" if token else "etag", horizon=horizon)
        cursor.token, cursor.ctag = token, ctag
        if cursor.mode == "etag":
            cursor.etags = self._etags(url)
        objects = self._query(url, horizon)
        events: list[Event] = []
        skipped: list[Skipped] = []
        for obj in objects:
            found, skip = self._expand(person, obj, horizon)
            skipped.extend(skip)
            if found:
                cursor.ids[obj.path] = [e.id for e in found]
                events.extend(found)
        return Changes(
            cursor=cursor.encode(), events=tuple(events), full=True, skipped=tuple(skipped)
        )

    def _incremental_sync(self, person: Person, url: str, cursor: _Cursor) -> Changes:
        body = (
            f'<D:sync-collection xmlns:D="{DAV}" xmlns:C="{CALDAV}">'
            f"<D:sync-token>{escape(cursor.token or '')}</D:sync-token>"
            "<D:sync-level>1</D:sync-level>"
            "<D:prop><D:getetag/><C:calendar-data/></D:prop></D:sync-collection>"
        )
        try:
            response = self._report(url, body, 0, accept=(400, 403, 404, 405, 409, 412, 501))
            status, conditions = response.status, []
        except Refused as refused:
            status, conditions = refused.status, refused.preconditions
        if status >= 400:
            if f"{{{DAV}}}valid-sync-token" in conditions or status in (409, 412):
                raise CursorExpired(f"the server no longer accepts the sync token of {url}")
            if status == 404:
                raise PermanentError(f"calendar {url} of {person.email} not found (404)")
            self.log.info("%s refuses sync-collection (%s): using ctag/ETags", url, status)
            self._refused.add((url, "sync-collection"))
            window = Interval(cursor.horizon.start, cursor.horizon.end - HORIZON_SLACK)
            return self._full(person, url, window)
        result = response.parse_sync_collection()
        pages = 1
        while result.truncated and result.sync_token and pages < 100:
            # RFC 6578 section 3.6: a truncated reply continues from its own token
            more_body = body.replace(
                f"<D:sync-token>{escape(cursor.token or '')}</D:sync-token>",
                f"<D:sync-token>{escape(result.sync_token)}</D:sync-token>",
            )
            more = self._report(url, more_body, 0).parse_sync_collection()
            more.changed = result.changed + more.changed
            more.deleted = result.deleted + more.deleted
            result, pages = more, pages + 1
        changed: dict[str, StoredObject] = {}
        missing: list[str] = []
        for item in result.changed:
            path = self._path(url, item.href)
            if path == self._path(url, url):
                continue
            if item.calendar_data:
                changed[path] = StoredObject(path, item.etag, item.calendar_data)
            else:
                missing.append(item.href)
        gone = {self._path(url, href) for href in result.deleted}
        for obj in self._multiget(url, missing):
            changed[obj.path] = obj
        gone |= {self._path(url, h) for h in missing} - set(changed)
        cursor.token = result.sync_token or cursor.token
        return self._apply(person, cursor, changed.values(), gone)

    def _incremental_etag(self, person: Person, url: str, cursor: _Cursor) -> Changes:
        ctag = None
        if cursor.ctag is not None:  # a server without getctag: straight to the ETags
            _, ctag = self._collection_state(url)
            if ctag == cursor.ctag:
                return Changes(cursor=cursor.encode())
        etags = self._etags(url)
        changed_paths = [p for p, tag in etags.items() if cursor.etags.get(p) != tag]
        gone = set(cursor.etags) - set(etags)
        objects = self._multiget(url, [quote(p) for p in changed_paths])
        cursor.ctag, cursor.etags = ctag, etags
        return self._apply(person, cursor, objects, gone)

    def _apply(
        self, person: Person, cursor: _Cursor, changed: Iterable[StoredObject], gone: set[str]
    ) -> Changes:
        events: list[Event] = []
        removed: list[str] = []
        skipped: list[Skipped] = []
        for obj in changed:
            found, skip = self._expand(person, obj, cursor.horizon)
            skipped.extend(skip)
            new_ids = [e.id for e in found]
            removed.extend(i for i in cursor.ids.pop(obj.path, []) if i not in new_ids)
            if new_ids:
                cursor.ids[obj.path] = new_ids
            events.extend(found)
        for path in gone:
            removed.extend(cursor.ids.pop(path, []))
        # an object renamed by a client is gone under one name and new under another
        current = {e.id for e in events}
        return Changes(
            cursor=cursor.encode(),
            events=tuple(events),
            removed=tuple(dict.fromkeys(i for i in removed if i not in current)),
            skipped=tuple(skipped),
        )

    def _etags(self, url: str) -> dict[str, str]:
        etags: dict[str, str] = {}
        collection = self._path(url, url)
        for item in self._propfind(url, "<D:getetag/><D:resourcetype/>", 1):
            path = self._path(url, item.href)
            etag = item.properties.get(f"{{{DAV}}}getetag")
            if path != collection and isinstance(etag, str):
                etags[path] = etag
        return etags

    def _multiget(self, url: str, hrefs: Sequence[str]) -> list[StoredObject]:
        if not hrefs:
            return []
        refs = "".join(f"<D:href>{escape(h)}</D:href>" for h in hrefs)
        body = (
            f'<C:calendar-multiget xmlns:D="{DAV}" xmlns:C="{CALDAV}">'
            f"<D:prop><D:getetag/><C:calendar-data/></D:prop>{refs}</C:calendar-multiget>"
        )
        return self._objects(url, self._report(url, body, 1))
