"""Microsoft Entra ID through Microsoft Graph: users, their managers, and who is in.

The first read is full: a delta link for "from now on" (``users/delta`` with
``$deltatoken=latest``, asked first so that nothing changed during the read is lost),
then every user with ``$expand=manager`` (Graph pages these by 100 at most). Later
reads replay the stored delta link: only the users changed since, those deleted or
disabled as removed, until Graph answers that the link has expired (410, or
``syncStateNotFound``/``resyncRequired``), when the read is full again.

A delta names a manager (``manager@delta``) only when it changed; an unchanged manager
is taken from the last read (``DirectoryContext.known``). Who is in is a group's
transitive members (ids only, 999 a page), read at every sync since Graph's delta does
not follow nested membership; a person whose membership flipped is returned as changed.

Application permissions, no more: ``User.Read.All`` and, with a group,
``GroupMember.Read.All``. The sign-in is the configured microsoft account's app
(client credentials), through the same Graph client as its calendars and mail.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

from agent.connectors.directory import DirectoryContext, Read
from agent.connectors.microsoft.graph import Graph
from agent.core.directory import Entry
from agent.core.errors import CursorExpired, PermanentError

SELECT = (
    "id,mail,userPrincipalName,displayName,usageLocation,country,preferredLanguage,accountEnabled"
)
#: the most users a page may hold (with $expand Graph gives 100 whatever is asked)
PAGE = 999
PERMISSIONS = "User.Read.All and GroupMember.Read.All (application)"
_ADDRESS = re.compile(r"^[^@\s/\\]+@[^@\s/\\]+$")
_COUNTRY = re.compile(r"^[A-Za-z]{2}$")


class _Reader:
    """The Graph calls of one read, counted."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.requests = 0

    def get(self, path: str, params: Mapping[str, str] | None = None) -> dict[str, Any]:
        self.requests += 1
        try:
            body = self.graph.send("GET", path, params=params).json()
        except CursorExpired:
            raise
        except PermanentError as exc:
            if " 403 " in str(exc):
                raise PermanentError(f"{exc}; the app needs {PERMISSIONS}") from exc
            raise
        except ValueError as exc:
            raise PermanentError(f"Graph GET {_short(path)}: not JSON") from exc
        if not isinstance(body, dict) or not isinstance(body.get("value", []), list):
            raise PermanentError(f"Graph GET {_short(path)}: not a collection")
        return body

    def pages(self, path: str, params: Mapping[str, str] | None = None) -> Iterator[dict[str, Any]]:
        """Every page of a collection, following ``@odata.nextLink``."""
        body = self.get(path, params)
        yield body
        while body.get("@odata.nextLink"):
            body = self.get(str(body["@odata.nextLink"]))
            yield body


def read(source: Any, ctx: DirectoryContext, cursor: str | None = None) -> Read:
    """Read the directory in full, or what changed since ``cursor`` (a delta link)."""
    account = ctx.account(source.account, "microsoft")
    resolve = ctx.resolve
    graph = Graph(account, resolve, ctx.retry)
    reader = _Reader(graph)
    try:
        if cursor:
            try:
                return _delta(reader, source, ctx, cursor)
            except CursorExpired as exc:
                ctx.log.warning("Entra delta link expired (%s); reading the directory in full", exc)
        return _full(reader, source, ctx)
    finally:
        graph.close()


def _full(reader: _Reader, source: Any, ctx: DirectoryContext) -> Read:
    latest = reader.get(
        "/users/delta", {"$select": SELECT, "$expand": "manager", "$deltatoken": "latest"}
    )
    link = latest.get("@odata.deltaLink")
    if not link:
        raise PermanentError("Graph GET /users/delta: no @odata.deltaLink for $deltatoken=latest")
    members = _members(reader, source.group) if source.group else None
    params = {"$select": SELECT, "$expand": "manager($select=id,mail)", "$top": str(PAGE)}
    entries = []
    for page in reader.pages("/users", params):
        for user in page.get("value", []):
            manager = user.get("manager") or {}
            e = _entry(user, manager.get("id"), members, ctx)
            if e is not None and user.get("accountEnabled", True) is not False:
                entries.append(e)
    return Read(entries, full=True, cursor=str(link), requests=reader.requests)


def _delta(reader: _Reader, source: Any, ctx: DirectoryContext, cursor: str) -> Read:
    changed: dict[str, dict[str, Any]] = {}
    gone: set[str] = set()
    link = None
    for page in reader.pages(cursor):
        for item in page.get("value", []):
            ident = str(item.get("id") or "")
            if not ident:
                continue
            if "@removed" in item:
                gone.add(ident)
                changed.pop(ident, None)
            else:
                gone.discard(ident)
                changed[ident] = {**changed.get(ident, {}), **item}
        link = page.get("@odata.deltaLink") or link
    if not link:
        raise PermanentError("Graph users/delta: the round ended without an @odata.deltaLink")
    by_ref = {e.ref: e for e in ctx.known.values() if e.ref}
    members = _members(reader, source.group) if source.group else None
    entries: dict[str, Entry] = {}
    removed = {by_ref[i].email for i in gone if i in by_ref}
    moved: set[str] = set()
    for ident, user in changed.items():
        before = by_ref.get(ident)
        manager = _manager_delta(user, before)
        e = _entry(user, manager, members, ctx)
        disabled = user.get("accountEnabled", True) is False
        if before is not None and (e is None or disabled or e.email != before.email):
            removed.add(before.email)  # disabled, or their address changed
            moved.add(ident)
        if e is None or disabled:
            continue
        entries[e.email] = e
    for e in ctx.known.values():
        # the reports of a manager whose address changed name them by id again
        if e.manager_ref in moved and e.ref not in changed and e.email not in entries:
            entries[e.email] = Entry.of({**e.data(), "manager": None})
    if members is not None:
        # membership changes reach no user's delta: compare with the last read
        for ref, before in by_ref.items():
            if ref in changed or ref in gone or before.email in entries:
                continue
            if (ref in members) != before.member:
                entries[before.email] = Entry.of({**before.data(), "member": ref in members})
    return Read(
        list(entries.values()),
        full=False,
        removed=sorted(removed - set(entries)),
        cursor=str(link),
        requests=reader.requests,
    )


def _manager_delta(user: dict[str, Any], before: Entry | None) -> str | None:
    """The manager a delta names: ``manager@delta`` when it changed (an entry marked
    ``@removed`` takes the manager away), else the one of the last read."""
    if "manager@delta" not in user:
        return before.manager_ref if before is not None else None
    alive = [m for m in user["manager@delta"] or [] if "@removed" not in m and m.get("id")]
    return str(alive[-1]["id"]) if alive else None


def _members(reader: _Reader, group: str) -> set[str]:
    """The ids of the users in ``group``, through nested groups too."""
    path = f"/groups/{urllib.parse.quote(group)}/transitiveMembers/microsoft.graph.user"
    ids: set[str] = set()
    for page in reader.pages(path, {"$select": "id", "$top": str(PAGE)}):
        ids.update(str(m["id"]) for m in page.get("value", []) if m.get("id"))
    return ids


def _entry(
    user: dict[str, Any], manager: str | None, members: set[str] | None, ctx: DirectoryContext
) -> Entry | None:
    ident = str(user.get("id") or "")
    email = str(user.get("mail") or user.get("userPrincipalName") or "").strip().lower()
    if not ident or not _ADDRESS.match(email):
        ctx.log.warning("Entra user %s has no usable address; skipped", ident or "without id")
        return None
    country = user.get("usageLocation") or user.get("country") or ""
    return Entry(
        email=email,
        name=str(user.get("displayName") or ""),
        manager_ref=manager,
        ref=ident,
        member=ident in members if members is not None else True,
        country=country.upper() if _COUNTRY.match(country) else None,
        language=user.get("preferredLanguage") or None,
    )


def _short(path: str) -> str:
    return urllib.parse.urlsplit(path).path.rsplit("/v1.0", 1)[-1]
