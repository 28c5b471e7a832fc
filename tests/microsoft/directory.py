"""The directory side of the fake Graph: users with their managers, ``users/delta``, and a
group's transitive members, shaped as Graph documents them.

- ``GET /users`` with ``$select``, ``$expand=manager`` (or ``manager($select=...)``),
  ``$top`` of 1 to 999: with ``$expand`` a page holds 100 at most, Graph's known limit
  for directory objects; ``@odata.nextLink`` carries a ``$skiptoken``
- ``GET /users/delta``: an initial round (every user, the manager as ``manager@delta``:
  ``[{"@odata.type": "#microsoft.graph.user", "id": ...}]``), or ``$deltatoken=latest``
  for a delta link and no data; a delta link returns the users changed since (every
  selected property, ``manager@delta`` only when the manager changed), and deleted users
  as ``{"id": ..., "@removed": {"reason": "changed"}}``; pages of :attr:`delta_page`
  linked by ``$skiptoken``, the last with ``@odata.deltaLink``. A delta token the
  directory no longer knows (:meth:`GraphDirectory.expire`) answers 410 Gone with
  ``resyncRequired``.
- ``GET /groups/{id}/transitiveMembers/microsoft.graph.user`` with ``$select=id`` and
  ``$top``: users of the group and of the groups nested in it.

An application's token needs ``User.Read.All`` (users) and ``GroupMember.Read.All``
(members), or a broader permission, in :attr:`GraphServer.app_permissions`.
"""

from __future__ import annotations

import re
import secrets
import urllib.parse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.microsoft.server import GraphServer

PROPERTIES = (
    "id",
    "mail",
    "userPrincipalName",
    "displayName",
    "givenName",
    "surname",
    "jobTitle",
    "usageLocation",
    "country",
    "preferredLanguage",
    "accountEnabled",
)
DEFAULT_SELECT = ("id", "displayName", "mail", "userPrincipalName", "preferredLanguage")
USER_TYPE = "#microsoft.graph.user"
READ_USERS = {"User.Read.All", "User.ReadWrite.All", "Directory.Read.All"}
READ_MEMBERS = {"GroupMember.Read.All", "Group.Read.All", "Directory.Read.All"}
ROUTES = ("users.list", "users.delta", "groups.transitiveMembers")


@dataclass
class User:
    id: str
    props: dict[str, Any]
    manager: str | None = None
    #: the manager before the last change, for ``manager@delta``'s ``@removed``
    former: str | None = None
    changed: int = 0
    manager_changed: int = 0


@dataclass
class Snapshot:
    """The items of one listing or delta round, served page by page."""

    items: list[dict[str, Any]]
    page: int
    base: str
    #: for a delta round, what its delta link goes on from: (watermark, select, expand)
    delta: tuple[int, tuple[str, ...], bool] | None = None
    pages: dict[str, int] = field(default_factory=dict)


def route(method: str, path: str) -> str:
    """The name of a directory route, or ""."""
    if method != "GET":
        return ""
    if path == "/v1.0/users":
        return "users.list"
    if path in ("/v1.0/users/delta", "/v1.0/users/microsoft.graph.delta"):
        return "users.delta"
    if re.fullmatch(r"/v1\.0/groups/[^/]+/transitiveMembers/microsoft\.graph\.user", path):
        return "groups.transitiveMembers"
    return ""


class GraphDirectory:
    """The users and groups of the fake tenant; guarded by the server's lock."""

    def __init__(self, server: GraphServer) -> None:
        self.server = server
        self.users: dict[str, User] = {}
        #: mail → object id
        self.by_mail: dict[str, str] = {}
        self.removed: list[tuple[int, str]] = []
        #: group id → its direct members (user ids or group ids)
        self.groups: dict[str, list[str]] = {}
        self.counter = 0
        #: delta token → (watermark, select, expand); replayable until expired
        self.tokens: dict[str, tuple[int, tuple[str, ...], bool]] = {}
        self.snapshots: dict[str, Snapshot] = {}
        self.delta_page = 100

    # --- test hooks ------------------------------------------------------------------

    def add_user(self, mail: str, name: str, manager: str | None = None, **props: Any) -> str:
        """Add a user (``manager`` by mail); return their object id."""
        with self.server.lock:
            self.counter += 1
            ident = f"{self.counter:08x}-0000-4000-8000-{secrets.token_hex(6)}"
            values = {
                "mail": mail,
                "userPrincipalName": mail,
                "displayName": name,
                "accountEnabled": True,
                **props,
            }
            user = User(ident, values, self.id_of(manager) if manager else None)
            user.changed = user.manager_changed = self.counter
            self.users[ident] = user
            self.by_mail[mail] = ident
            return ident

    def id_of(self, mail: str) -> str:
        with self.server.lock:
            return self.by_mail[mail]

    def update(self, who: str, **props: Any) -> None:
        """Change properties of the user whose mail is ``who``."""
        with self.server.lock:
            user = self.users[self.id_of(who)]
            self.counter += 1
            if "mail" in props:
                self.by_mail[props["mail"]] = self.by_mail.pop(who)
            user.props.update(props)
            user.changed = self.counter

    def set_manager(self, mail: str, manager: str | None) -> None:
        with self.server.lock:
            user = self.users[self.id_of(mail)]
            self.counter += 1
            user.former, user.manager = user.manager, self.id_of(manager) if manager else None
            user.changed = user.manager_changed = self.counter

    def delete(self, mail: str) -> None:
        with self.server.lock:
            ident = self.by_mail.pop(mail)
            del self.users[ident]
            self.counter += 1
            self.removed.append((self.counter, ident))
            for members in self.groups.values():
                if ident in members:
                    members.remove(ident)

    def add_group(self, ident: str, members: list[str]) -> None:
        """A group whose members are users (by mail) or other groups (by id)."""
        with self.server.lock:
            self.groups[ident] = [m if m in self.groups else self.id_of(m) for m in members]

    def expire(self) -> None:
        """Forget every delta token, as Graph does after a while."""
        with self.server.lock:
            self.tokens.clear()
            self.snapshots.clear()

    # --- requests --------------------------------------------------------------------

    def dispatch(
        self, route_name: str, path: str, query: dict[str, str], headers: dict[str, str]
    ) -> dict[str, Any]:
        from tests.microsoft.server import GraphError

        grant = self.server.tokens[headers.get("authorization", "")[7:]]
        held = (
            self.server.app_permissions
            if grant["app"]
            else {s.rsplit("/", 1)[-1] for s in str(grant["scope"]).split()}
        )
        need = READ_MEMBERS if route_name == "groups.transitiveMembers" else READ_USERS
        if not held & need:
            raise GraphError(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            )
        if "$skiptoken" in query:
            return self._next(query["$skiptoken"])
        if route_name == "users.list":
            return self._list(query)
        if route_name == "users.delta":
            return self._delta(query)
        return self._members(path.split("/")[3], query)

    def _list(self, query: dict[str, str]) -> dict[str, Any]:
        from tests.microsoft.server import GraphError

        _known(query, {"$select", "$expand", "$top", "$skiptoken"})
        select = _select(query.get("$select"))
        expand, manager_select = _expand(query.get("$expand"))
        try:
            top = int(query.get("$top", "100"))
        except ValueError as exc:
            raise GraphError(400, "Request_BadRequest", "Invalid $top.") from exc
        if not 1 <= top <= 999:
            raise GraphError(400, "Request_BadRequest", f"Invalid page size specified: '{top}'.")
        page = min(top, 100) if expand else top
        items = []
        for user in sorted(self.users.values(), key=lambda u: u.id):
            item = {"id": user.id, **{p: user.props.get(p) for p in select if p != "id"}}
            if expand and user.manager in self.users:
                boss = self.users[user.manager]
                item["manager"] = {
                    "@odata.type": USER_TYPE,
                    "id": boss.id,
                    **{p: boss.props.get(p) for p in manager_select if p != "id"},
                }
            items.append(item)
        base = f"{self.server.url}/v1.0/users?" + urllib.parse.urlencode(
            {k: v for k, v in query.items() if k != "$skiptoken"}, safe="$,()=;"
        )
        return self._serve(Snapshot(items, page, base), 0, "users")

    def _delta(self, query: dict[str, str]) -> dict[str, Any]:
        from tests.microsoft.server import GraphError

        _known(query, {"$select", "$expand", "$deltatoken", "$skiptoken"})
        token = query.get("$deltatoken")
        if token and token != "latest":
            if token not in self.tokens:
                raise GraphError(
                    410, "resyncRequired", "The delta token is no longer valid; resync."
                )
            since, select, expand = self.tokens[token]
            items = self._changes(since, select, expand)
        else:
            select = _select(query.get("$select"))
            expand, manager_select = _expand(query.get("$expand"))
            if manager_select:
                raise GraphError(
                    400, "Request_BadRequest", "$select inside $expand is not supported by delta."
                )
            since = 0
            items = [] if token == "latest" else self._changes(-1, select, expand)
        snap = Snapshot(
            items, self.delta_page, f"{self.server.url}/v1.0/users/delta?", (since, select, expand)
        )
        return self._serve(snap, 0, "users")

    def _changes(self, since: int, select: tuple[str, ...], expand: bool) -> list[dict[str, Any]]:
        """The users changed after ``since`` (-1: all of them, an initial round)."""
        out: list[dict[str, Any]] = []
        if since >= 0:
            out.extend(
                {"id": ident, "@removed": {"reason": "changed"}}
                for counter, ident in self.removed
                if counter > since
            )
        for user in sorted(self.users.values(), key=lambda u: u.changed):
            if user.changed <= since:
                continue
            item: dict[str, Any] = {"id": user.id}
            # a property never set is left out; a changed or unchanged one is given
            item.update({p: user.props[p] for p in select if p != "id" and p in user.props})
            if expand and (since < 0 or user.manager_changed > since):
                links: list[dict[str, Any]] = []
                if user.manager:
                    links.append({"@odata.type": USER_TYPE, "id": user.manager})
                elif user.former and since >= 0:
                    links.append(
                        {
                            "@odata.type": USER_TYPE,
                            "id": user.former,
                            "@removed": {"reason": "deleted"},
                        }
                    )
                if links or since >= 0:
                    item["manager@delta"] = links
            out.append(item)
        return out

    def _members(self, group: str, query: dict[str, str]) -> dict[str, Any]:
        from tests.microsoft.server import GraphError

        _known(query, {"$select", "$top", "$skiptoken"})
        if group not in self.groups:
            raise GraphError(
                404,
                "Request_ResourceNotFound",
                f"Resource '{group}' does not exist or one of its queried reference-property "
                "objects are not present.",
            )
        if query.get("$select", "id") != "id":
            raise GraphError(400, "Request_BadRequest", "only $select=id is modelled")
        top = int(query.get("$top", "100"))
        if not 1 <= top <= 999:
            raise GraphError(400, "Request_BadRequest", f"Invalid page size specified: '{top}'.")
        seen: set[str] = set()
        users: list[str] = []
        todo = [group]
        while todo:
            for member in self.groups[todo.pop()]:
                if member in seen:
                    continue
                seen.add(member)
                if member in self.groups:
                    todo.append(member)
                elif member in self.users:
                    users.append(member)
        items = [{"@odata.type": USER_TYPE, "id": u} for u in sorted(users)]
        base = (
            f"{self.server.url}/v1.0/groups/{group}/transitiveMembers/microsoft.graph.user?"
            + urllib.parse.urlencode({"$select": "id", "$top": str(top)}, safe="$")
        )
        return self._serve(Snapshot(items, top, base), 0, "directoryObjects")

    def _serve(self, snap: Snapshot, offset: int, what: str) -> dict[str, Any]:
        key = secrets.token_urlsafe(8)
        self.snapshots[key] = snap
        chunk = snap.items[offset : offset + snap.page]
        out: dict[str, Any] = {
            "@odata.context": f"{self.server.url}/v1.0/$metadata#{what}",
            "value": chunk,
        }
        if offset + snap.page < len(snap.items):
            skip = f"{key}.{offset + snap.page}"
            sep = "" if snap.base.endswith("?") else "&"
            out["@odata.nextLink"] = f"{snap.base}{sep}$skiptoken={skip}"
        elif snap.delta is not None:
            token = secrets.token_urlsafe(24)
            self.tokens[token] = (self.counter, snap.delta[1], snap.delta[2])
            out["@odata.deltaLink"] = f"{self.server.url}/v1.0/users/delta?$deltatoken={token}"
        return out

    def _next(self, skip: str) -> dict[str, Any]:
        from tests.microsoft.server import GraphError

        key, _, offset = skip.partition(".")
        snap = self.snapshots.get(key)
        if snap is None or not offset.isdigit():
            raise GraphError(410, "resyncRequired", "The skip token is no longer valid.")
        what = "users" if "/users" in snap.base else "directoryObjects"
        return self._serve(snap, int(offset), what)


def _known(query: dict[str, str], allowed: set[str]) -> None:
    from tests.microsoft.server import GraphError

    for name in query:
        if name not in allowed:
            raise GraphError(
                400, "Request_BadRequest", f"Unsupported query parameter {name!r} here."
            )


def _select(value: str | None) -> tuple[str, ...]:
    from tests.microsoft.server import GraphError

    names = tuple(p.strip() for p in value.split(",")) if value else DEFAULT_SELECT
    for name in names:
        if name not in PROPERTIES:
            raise GraphError(
                400,
                "Request_BadRequest",
                f"Could not find a property named '{name}' on type 'microsoft.graph.user'.",
            )
    return names


def _expand(value: str | None) -> tuple[bool, tuple[str, ...]]:
    """Whether the manager is expanded, and the manager's properties selected inside."""
    from tests.microsoft.server import GraphError

    if not value:
        return False, ()
    m = re.fullmatch(r"manager(?:\(\$select=([A-Za-z,]+)\))?", value)
    if m is None:
        raise GraphError(
            400, "Request_BadRequest", f"Could not find a navigation property '{value}'."
        )
    return True, _select(m.group(1)) if m.group(1) else ()
