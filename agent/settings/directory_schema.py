"""The ``directory:`` section's schema: its sources, guard and relationships file."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    Field,
    model_validator,
)

from agent.settings.schema_types import Duration, Share, Strict


class CsvColumns(Strict):
    """Which column of the export holds each field (the header's text)."""

    email: str = "email"
    name: str | None = "name"
    manager: str | None = "manager"
    country: str | None = None
    timezone: str | None = None
    language: str | None = None


class CsvMembers(Strict):
    """Who is in the program: the rows whose ``column`` holds one of ``values``."""

    column: str
    values: list[str] = Field(min_length=1)


class CsvSource(Strict):
    """An export of an HR system; ``manager`` holds the manager's email."""

    kind: Literal["csv"]
    path: str
    columns: CsvColumns = CsvColumns()
    members: CsvMembers | None = None
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    encoding: str = "utf-8-sig"


def _ldap_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("ldap", "ldaps") or not parts.hostname:
        raise ValueError(f"{value!r} is not an ldap:// or ldaps:// URL with a host")
    if parts.path.strip("/") or parts.query or parts.username or parts.password:
        raise ValueError(f"{value!r}: give only the scheme, host and port; base_dn says where")
    try:
        parts.port  # noqa: B018 - raises on a port out of range
    except ValueError as exc:
        raise ValueError(f"{value!r}: {exc}") from None
    return value


def _ldap_filter(value: str) -> str:
    text = value.strip()
    if not (text.startswith("(") and text.endswith(")")) or text.count("(") != text.count(")"):
        raise ValueError(
            f"{value!r} is not an LDAP filter in parentheses, like (objectClass=person)"
        )
    return text


LdapUrl = Annotated[str, AfterValidator(_ldap_url)]
LdapFilter = Annotated[str, AfterValidator(_ldap_filter)]


class LdapAttributes(Strict):
    """Which attribute holds each field; ``manager`` holds the manager's DN."""

    email: str = "mail"
    name: str | None = "displayName"
    manager: str | None = "manager"
    #: tried in order: an ISO 3166 two-letter code (``c``), or a country's English name
    #: or three-letter code (``co``)
    country: list[str] = Field(default_factory=lambda: ["c", "co"])
    language: str | None = "preferredLanguage"
    #: an IANA time zone name, where the directory keeps one (no standard attribute does)
    timezone: str | None = None


class LdapMembers(Strict):
    """Who is in the program: members of any of ``groups`` (by ``memberOf``) that also
    match ``filter``; either may be left out, not both."""

    groups: list[str] = Field(default_factory=list)
    filter: LdapFilter | None = None

    @model_validator(mode="after")
    def _something(self) -> LdapMembers:
        if not self.groups and not self.filter:
            raise ValueError("name groups, a filter or both")
        return self


class LdapSource(Strict):
    """An LDAP directory or Active Directory, read with a read-only account and paged
    searches (RFC 2696)."""

    kind: Literal["ldap"]
    url: LdapUrl
    #: the account Cadence binds as (it needs read access to people only); none: anonymous
    bind_dn: str | None = None
    password_env: str | None = None
    password_file: str | None = None
    base_dn: str
    #: who is read: people, members or not (they may lead members)
    filter: LdapFilter = "(objectClass=person)"
    members: LdapMembers | None = None
    attributes: LdapAttributes = LdapAttributes()
    page_size: int = Field(default=500, ge=1, le=100_000)
    start_tls: bool = False
    ca_bundle: str | None = None
    #: seconds to connect, and for each answer, before the read is abandoned
    timeout: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _sign_in(self) -> LdapSource:
        if self.password_env and self.password_file:
            raise ValueError("give password_env or password_file, not both")
        if self.bind_dn and not (self.password_env or self.password_file):
            raise ValueError("bind_dn needs password_env or password_file")
        if not self.bind_dn and (self.password_env or self.password_file):
            raise ValueError("a password needs bind_dn (the account it belongs to)")
        if self.start_tls and self.url.startswith("ldaps:"):
            raise ValueError("start_tls is for ldap:// URLs; ldaps:// is TLS from the start")
        return self


class EntraSource(Strict):
    """Microsoft Entra ID through Graph, signed in as the named microsoft account's app."""

    kind: Literal["entra"]
    #: the microsoft account (client credentials) whose app reads the directory
    account: str
    #: the object id of the group whose transitive members are in the program; without
    #: it everyone is
    group: str | None = None


class GoogleDirectorySource(Strict):
    """Google Workspace through the Admin SDK Directory API (a full read each time)."""

    kind: Literal["google"]
    #: the google account whose service-account key (domain-wide delegation) reads it
    account: str
    #: the administrator the service account acts as
    subject: str
    customer: str = "my_customer"
    #: the email (or id) of the group whose members, nested ones too, are in the program
    group: str | None = None
    #: the Admin SDK's address (a proxy, or a test server)
    endpoint: str = "https://admin.googleapis.com/"


DirectorySource = Annotated[
    CsvSource | LdapSource | EntraSource | GoogleDirectorySource, Field(discriminator="kind")
]


class PairColumns(Strict):
    employee: str = "employee"
    partner: str = "partner"
    role: str = "role"
    program: str = "program"


class PairsSource(Strict):
    """Mentoring and peer relationships from a CSV file, read with the configuration."""

    path: str
    columns: PairColumns = PairColumns()
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    encoding: str = "utf-8-sig"


class DirectoryGuardConfig(Strict):
    """``directory.guard``: how much one read may change before a person confirms it."""

    max_drop: Share = 0.1
    max_changes: Share = 0.2
    min_changes: int = Field(default=10, ge=0)


class DirectoryConfig(Strict):
    """``directory:``: people and reporting lines read from the company's directory."""

    source: DirectorySource
    #: the program the leader relationships follow, and their role
    program: str
    role: str = "leader"
    #: the calendar account of the people the directory adds (the default account)
    account: str | None = None
    #: a new line's first meetings are due this long after it starts, not at once
    first_within: Duration = timedelta(days=30)
    #: how long the data of a person who left is kept before it is erased
    retention: Duration = timedelta(days=365)
    #: how often ``cadence serve`` reads the directory
    interval: Duration = timedelta(hours=1)
    #: the folder of the development plans of the people it adds, one ``EMAIL.yaml`` each
    plans: str | None = None
    #: mentoring and peer relationships from a CSV (the leader lines come from the source)
    relationships: PairsSource | None = None
    guard: DirectoryGuardConfig = DirectoryGuardConfig()
