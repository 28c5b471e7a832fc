"""The Admin SDK Directory API of the fake Google: ``users.list`` and ``members.list``.

Requests are validated against the ``admin`` ``directory_v1`` discovery document that
ships with google-api-python-client (by :class:`tests.google.server.GoogleServer`), and
answered as the API does: users in pages of ``maxResults`` (at most 500) linked by
``nextPageToken``, ``customer`` of ``my_customer`` or the customer id, the ``fields``
mask applied, and only for an administrator (403 ``forbidden`` for anyone else).
``members.list`` pages by at most 200, and with ``includeDerivedMembership`` lists the
members of nested groups too.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

from tests.google.discovery import API

if TYPE_CHECKING:
    from tests.google.server import GoogleState, Grant

ADMIN = API("admin.directory_v1")
MAX_MEMBERS = 200


class DirectoryService:
    """The customer's users and groups."""

    def __init__(self, state: GoogleState) -> None:
        self.s = state
        self.customer_id = "C03az79cb"
        self.users: dict[str, dict[str, Any]] = {}
        #: group email → member emails (users, or other groups)
        self.groups: dict[str, list[str]] = {}
        #: who may read the directory
        self.admins: set[str] = set()
        self.pages: dict[str, tuple[list[dict[str, Any]], int]] = {}

    # --- test hooks ------------------------------------------------------------------

    def add_user(
        self,
        email: str,
        name: str,
        manager: str | None = None,
        *,
        country: str | None = None,
        language: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        with self.s.lock:
            given, _, family = name.partition(" ")
            user: dict[str, Any] = {
                "kind": "admin#directory#user",
                "id": str(100000000000000000000 + len(self.users) * 7919),
                "primaryEmail": email,
                "name": {"givenName": given, "familyName": family, "fullName": name},
                "isAdmin": email in self.admins,
                "suspended": False,
                "archived": False,
                "orgUnitPath": "/",
                "customerId": self.customer_id,
                "emails": [{"address": email, "primary": True}],
            }
            if manager:
                user["relations"] = [{"value": manager, "type": "manager"}]
            if country:
                user["addresses"] = [{"type": "work", "countryCode": country, "primary": True}]
            if language:
                user["languages"] = [{"languageCode": language, "preference": "preferred"}]
            user.update(extra)
            self.users[email.lower()] = user
            return user

    def set_manager(self, email: str, manager: str | None) -> None:
        with self.s.lock:
            user = self.users[email.lower()]
            others = [r for r in user.get("relations", []) if r.get("type") != "manager"]
            user["relations"] = others + (
                [{"value": manager, "type": "manager"}] if manager else []
            )

    def delete(self, email: str) -> None:
        with self.s.lock:
            del self.users[email.lower()]

    def add_group(self, email: str, members: list[str]) -> None:
        with self.s.lock:
            self.groups[email.lower()] = [m.lower() for m in members]

    # --- requests --------------------------------------------------------------------

    def _admin(self, grant: Grant) -> None:
        from tests.google.server import Failure

        if grant.user not in self.admins:
            raise Failure(403, "Not Authorized to access this resource/api", "forbidden")

    def list_users(self, grant: Grant, q: dict[str, Any]) -> dict[str, Any]:
        from tests.google.server import Failure

        self._admin(grant)
        customer = q.get("customer")
        if customer is None and q.get("domain") is None:
            raise Failure(400, "Bad Request", "badRequest")
        if customer not in (None, "my_customer", self.customer_id):
            raise Failure(404, "Resource Not Found: customer", "notFound")
        ordered = [self.users[k] for k in sorted(self.users)]
        page = self._page(ordered, q.get("pageToken"), int(q.get("maxResults", 100)))
        return _mask({"kind": "admin#directory#users", **_rename(page, "users")}, q.get("fields"))

    def list_members(self, grant: Grant, p: dict[str, str], q: dict[str, Any]) -> dict[str, Any]:
        from tests.google.server import Failure

        self._admin(grant)
        key = p["groupKey"].lower()
        if key not in self.groups:
            raise Failure(404, "Resource Not Found: groupKey", "notFound")
        size = int(q.get("maxResults", MAX_MEMBERS))
        if not 1 <= size <= MAX_MEMBERS:
            raise Failure(400, "Invalid Input: maxResults", "invalid")
        seen: list[str] = []
        todo = [key]
        while todo:
            for member in self.groups[todo.pop(0)]:
                if member in seen:
                    continue
                seen.append(member)
                if member in self.groups and q.get("includeDerivedMembership"):
                    todo.append(member)
            if not q.get("includeDerivedMembership"):
                break
        members = [
            {
                "kind": "admin#directory#member",
                "id": self.users[m]["id"] if m in self.users else f"group-{m}",
                "email": m,
                "role": "MEMBER",
                "type": "GROUP" if m in self.groups else "USER",
                "status": "ACTIVE",
            }
            for m in seen
            if m in self.users or m in self.groups
        ]
        page = self._page(members, q.get("pageToken"), size)
        return _mask(
            {"kind": "admin#directory#members", **_rename(page, "members")}, q.get("fields")
        )

    def _page(self, items: list[dict[str, Any]], token: str | None, size: int) -> dict[str, Any]:
        from tests.google.server import Failure

        offset = 0
        if token:
            if token not in self.pages:
                raise Failure(400, "Invalid Input: pageToken", "invalid")
            items, offset = self.pages[token]
        out: dict[str, Any] = {"items": items[offset : offset + size]}
        if offset + size < len(items):
            following = secrets.token_urlsafe(12)
            self.pages[following] = (items, offset + size)
            out["nextPageToken"] = following
        return out


def _rename(page: dict[str, Any], key: str) -> dict[str, Any]:
    out = {k: v for k, v in page.items() if k != "items"}
    if page["items"]:
        out[key] = page["items"]
    return out


def parse_fields(text: str) -> dict[str, Any]:
    """A ``fields`` mask as a tree: ``a,b(c,d/e)`` → {a: {}, b: {c: {}, d: {e: {}}}}."""
    pos = 0

    def parse(until: str) -> dict[str, Any]:
        nonlocal pos
        node: dict[str, Any] = {}
        name = ""
        while pos < len(text) and text[pos] != until:
            ch = text[pos]
            pos += 1
            if ch == ",":
                if name:
                    node.setdefault(name.strip(), {})
                name = ""
            elif ch == "(":
                node.setdefault(name.strip(), {}).update(parse(")"))
                pos += 1
                name = ""
            elif ch == "/":
                rest = parse_path()
                _merge(node.setdefault(name.strip(), {}), rest)
                name = ""
            else:
                name += ch
        if name.strip():
            node.setdefault(name.strip(), {})
        return node

    def parse_path() -> dict[str, Any]:
        nonlocal pos
        name = ""
        while pos < len(text) and text[pos] not in ",()/":
            name += text[pos]
            pos += 1
        if pos < len(text) and text[pos] == "/":
            pos += 1
            return {name: parse_path()}
        if pos < len(text) and text[pos] == "(":
            pos += 1
            sub = parse(")")
            pos += 1
            return {name: sub}
        return {name: {}}

    return parse("\0")


def _merge(into: dict[str, Any], more: dict[str, Any]) -> None:
    for k, v in more.items():
        _merge(into.setdefault(k, {}), v)


def _mask(value: Any, fields: str | None) -> Any:
    return _apply(value, parse_fields(fields)) if fields else value


def _apply(value: Any, tree: dict[str, Any]) -> Any:
    if not tree:
        return value
    if isinstance(value, list):
        return [_apply(v, tree) for v in value]
    if isinstance(value, dict):
        return {k: _apply(value[k], sub) for k, sub in tree.items() if k in value}
    return value
