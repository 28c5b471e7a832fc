"""The configuration file's schema: one pydantic model per section, with its defaults.

The file format is a contract (DESIGN.md): keys are extended, never renamed. These
models validate the file; ``agent.settings.config`` resolves them into ``Settings``.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from agent.core.durations import (
    format_duration,
    parse_days,
    parse_duration,
    parse_span,
    parse_spans,
)
from agent.core.model import Stage

#: the longest duration any key takes. The agent adds durations to today's date and to
#: each other (a series' interval, the booking horizon, the lead time ...); ten years
#: keeps every such sum a real date, where an unbounded one fails every tick.
MAX_DURATION = timedelta(days=3650)


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        delta = value
    elif not isinstance(value, str):
        raise ValueError(f"not a duration: {value!r} (add a unit: 15m, 24h, 90d, 6w)")
    else:
        delta = parse_duration(value)
    if abs(delta) > MAX_DURATION:
        raise ValueError(
            f"{format_duration(delta)} is too long: at most {format_duration(MAX_DURATION)} "
            "(ten years)"
        )
    return delta


#: the shortest ``tick:``: a tick reads every calendar, so a faster one only loads the
#: providers (and is throttled by them)
MIN_TICK = timedelta(minutes=1)


def _tick(value: timedelta) -> timedelta:
    if value < MIN_TICK:
        raise ValueError(f"{format_duration(value)} is too short: a tick is at least 1m")
    return value


#: characters an address never needs and a file or URL path must not get from one
_UNSAFE_ADDRESS = re.compile(r"[/\\\x00-\x1f\x7f]|\.\.")


def _address(value: str) -> str:
    """Refuse an address that could name a path: each provider derives files (the local
    calendars) or URLs from it."""
    if _UNSAFE_ADDRESS.search(value):
        raise ValueError(
            f"{value!r} is not a usable email address: it may hold no '/', '\\', '..' "
            "or control characters"
        )
    if len(value) > 254:
        raise ValueError("an email address has at most 254 characters")
    return value


_UNITS = {"": 1, "b": 1, "kb": 1024, "mb": 1024 * 1024, "gb": 1024 * 1024 * 1024}


def _size(value: Any) -> int:
    """Bytes from ``5MB``, ``300KB`` or a bare number (1 MB = 1,048,576 bytes)."""
    if isinstance(value, int) and not isinstance(value, bool):
        number, unit = value, ""
    else:
        found = re.fullmatch(r"\s*(\d+)\s*([kmg]?b?)\s*", str(value), re.I)
        if not found or isinstance(value, bool):
            raise ValueError(f"not a size: {value!r} (a number of bytes, or with KB, MB, GB)")
        number, unit = int(found.group(1)), found.group(2).lower()
    if unit in ("k", "m", "g"):
        unit += "b"
    size = number * _UNITS[unit]
    if size < 1024:
        raise ValueError(f"{value!r} is under 1 KB: no reply would fit")
    return size


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r} (use an IANA name like Europe/Berlin)"
        ) from None
    return value


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return value


def _span(value: str) -> str:
    parse_span(value)
    return value


def _hours(value: dict[str, str]) -> dict[str, str]:
    seen: dict[int, str] = {}
    for days, spans in value.items():
        parse_spans(spans)
        for day in parse_days(days):
            if day in seen:
                raise ValueError(f"{days!r} repeats a day already given by {seen[day]!r}")
            seen[day] = days
    return value


Duration = Annotated[
    timedelta,
    BeforeValidator(_duration),
    PlainSerializer(format_duration, return_type=str),
    WithJsonSchema({"type": "string", "pattern": r"^(\d+\s*[smhdw]\s*)+$", "examples": ["90d"]}),
]
ByteSize = Annotated[
    int,
    BeforeValidator(_size),
    WithJsonSchema(
        {"type": ["string", "integer"], "pattern": r"^\d+\s*[KkMmGg]?[Bb]?$", "examples": ["5MB"]}
    ),
]
TimeZoneName = Annotated[str, AfterValidator(_zone)]
Regex = Annotated[str, AfterValidator(_regex)]
SpanText = Annotated[
    str,
    AfterValidator(_span),
    WithJsonSchema({"type": "string", "pattern": r"^\d{1,2}:\d{2}-\d{1,2}:\d{2}$"}),
]
Hours = Annotated[
    dict[str, str],
    AfterValidator(_hours),
    WithJsonSchema(
        {
            "type": "object",
            "description": 'weekdays → spans, e.g. {"mon-fri": "09:00-17:00"}',
            "additionalProperties": {"type": "string"},
        }
    ),
]


def _percent(value: Any) -> Any:
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            return float(value.strip()[:-1]) / 100
        except ValueError:
            raise ValueError(f"{value!r} is not a percentage like 25%") from None
    return value


#: a share of a whole: "25%" or 0.25
Share = Annotated[float, BeforeValidator(_percent), Field(gt=0, le=1)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --- accounts: one model per provider -------------------------------------------------


class LocalAccount(Strict):
    """ICS files in a folder and an outbox folder of .eml files."""

    provider: Literal["local"]
    calendars: str = "calendars"
    outbox: str = "outbox"
    inbox: str | None = None


class GoogleEndpoints(Strict):
    calendar: str = "https://www.googleapis.com/calendar/v3/"
    gmail: str = "https://gmail.googleapis.com/"


class GoogleAccount(Strict):
    """Google Workspace: a service-account key (domain-wide delegation) or a user token."""

    provider: Literal["google"]
    credentials: str
    endpoints: GoogleEndpoints = GoogleEndpoints()
    ca_bundle: str | None = None
    sender: str | None = None
    #: seconds a request may go unanswered before it is abandoned (and retried)
    timeout: float = Field(default=60.0, gt=0)


class MicrosoftAccount(Strict):
    """Microsoft 365 through Microsoft Graph and MSAL."""

    provider: Literal["microsoft"]
    tenant: str
    client_id: str
    client_secret_env: str | None = None
    client_certificate: str | None = None
    authority: str = "https://login.microsoftonline.com"
    graph: str = "https://graph.microsoft.com"
    ca_bundle: str | None = None
    token_cache: str | None = None
    sender: str | None = None
    #: seconds a request may go unanswered before it is abandoned (and retried)
    timeout: float = Field(default=30.0, gt=0)


class MailServer(Strict):
    """What SMTP and IMAP share: a server, a sign-in, TLS and a time limit."""

    host: str
    username: str | None = None
    password_env: str | None = None
    ca_bundle: str | None = None
    starttls: bool = True
    timeout: float = Field(default=30.0, gt=0)


class SmtpSettings(MailServer):
    """SMTP submission: STARTTLS on 587 (default), implicit TLS on 465 with ``ssl``."""

    port: int = Field(default=587, ge=1, le=65535)
    ssl: bool = False
    from_: str | None = Field(default=None, alias="from")


class ImapSettings(MailServer):
    """IMAP for reading replies: IMAPS on 993 (default), STARTTLS with ``ssl: false``."""

    port: int = Field(default=993, ge=1, le=65535)
    ssl: bool = True
    folder: str = "INBOX"
    #: the folder where the SMTP server files a copy of each mail sent through it, if
    #: it does: an interrupted send is looked for there by Message-ID
    sent_folder: str | None = None


class CalDAVAccount(Strict):
    """CalDAV calendars with SMTP mail (and IMAP for replies)."""

    provider: Literal["caldav"]
    url: str
    username: str | None = None
    password_env: str | None = None
    auth: Literal["basic", "digest"] = "basic"
    smtp: SmtpSettings | None = None
    imap: ImapSettings | None = None
    ca_bundle: str | None = None
    timeout: float = Field(default=30.0, gt=0)


class ExchangeAccount(Strict):
    """Exchange Server on premises through EWS."""

    provider: Literal["exchange"]
    server: str
    auth: Literal["ntlm", "basic", "oauth"] = "ntlm"
    username: str
    password_env: str | None = None
    access_type: Literal["impersonation", "delegate"] = "impersonation"
    version: str | None = None
    ca_bundle: str | None = None
    #: exchangelib's own back-off on ErrorServerBusy (FaultTolerance); 0s fails fast
    max_wait: Duration = timedelta(seconds=60)


Account = Annotated[
    LocalAccount | GoogleAccount | MicrosoftAccount | CalDAVAccount | ExchangeAccount,
    Field(discriminator="provider"),
]


# --- people, relationships, programs --------------------------------------------------


class Defaults(Strict):
    account: str | None = None
    country: str | None = None
    subdivision: str | None = None
    working_hours: Hours = Field(default_factory=lambda: {"mon-fri": "09:00-17:00"})


class PersonConfig(Strict):
    email: Annotated[str, AfterValidator(_address)] = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    name: str | None = None
    timezone: TimeZoneName | None = None
    country: str | None = None
    subdivision: str | None = None
    working_hours: Hours | None = None
    account: str | None = None
    plan: str | None = None
    calendar: str | None = None
    username: str | None = None
    closed: list[date] = Field(default_factory=list)


class RelationshipConfig(Strict):
    employee: str
    partner: str
    role: Literal["leader", "mentor", "peer"] = "leader"
    program: str


class SeriesConfig(Strict):
    every: Duration
    duration: Duration
    title: str
    match: Regex | None = None
    stages: list[Stage] = Field(default_factory=list)
    skip_near: str | None = None
    skip_within: Duration = timedelta(days=14)

    @field_validator("stages")
    @classmethod
    def _stages(cls, value: list[Stage]) -> list[Stage]:
        if not value:
            raise ValueError(
                "an empty list: name the stages in order (align, advance, amplify, "
                "advocate), or leave the key out for a series without stages"
            )
        twice = sorted({str(s) for s in value if value.count(s) > 1})
        if twice:
            raise ValueError(f"{', '.join(twice)} listed more than once")
        return value


class BookingConfig(Strict):
    horizon: Duration = timedelta(days=14)
    lead_time: Duration = timedelta(days=2)
    window: SpanText | None = None
    buffer: Duration = timedelta(minutes=10)
    conference: Literal["auto", "none"] = "auto"
    max_per_day: int = Field(default=2, ge=1)
    max_per_week: int = Field(default=5, ge=1)


class RescheduleConfig(Strict):
    min_notice: Duration = timedelta(hours=48)
    max_moves: int = Field(default=1, ge=0)


class AgendaConfig(Strict):
    before: Duration = timedelta(hours=24)


class RecapConfig(Strict):
    after: Duration = timedelta(hours=2)
    within: Duration = timedelta(days=7)
    #: recaps also for meetings that ended this long before Cadence first saw the
    #: relationship (default none: it recaps only what it watched)
    backfill: Duration = timedelta(0)
    collect_replies: bool = False
    #: whose replies count: "authenticated" (the receiving server's SPF, DKIM or DMARC
    #: pass for the From domain) or "from" (the From address alone); unset: "from" for
    #: the local provider, "authenticated" for every other
    trust: Literal["authenticated", "from"] | None = None
    #: the receiving servers whose Authentication-Results count; unset: the topmost field
    authserv_ids: list[str] = Field(default_factory=list)
    #: a reply with more action lines is refused whole
    max_actions: int = Field(default=50, ge=1, le=10_000)
    #: a larger reply is refused without reading its body where the provider gives sizes
    max_reply_size: ByteSize = 5 * 1024 * 1024
    #: updated recaps per relationship in any 24 hours; replies past it are recorded
    #: without one
    max_updates_per_day: int = Field(default=3, ge=0, le=100)


class ProgramConfig(Strict):
    organizer: Literal["employee", "partner"] = "employee"
    series: dict[str, SeriesConfig]
    lapse_grace: Duration = timedelta(days=7)
    booking: BookingConfig = BookingConfig()
    reschedule: RescheduleConfig = RescheduleConfig()
    agenda: AgendaConfig = AgendaConfig()
    recap: RecapConfig = RecapConfig()


class SyncSettings(Strict):
    """How hard the sync step may press each account's API."""

    #: calendars read at once per account (one request at a time per calendar)
    concurrency: int = Field(default=8, ge=1, le=64)
    #: requests per second per account (a token bucket), None for no limit
    rate: float | None = Field(default=None, gt=0)
    #: the bucket's size: how many requests may go out at once after a quiet spell
    burst: int = Field(default=10, ge=1)


class GuardConfig(Strict):
    """``guard:``: how much one tick may do before it stops and waits for a person.

    A mistyped calendars folder, a missing scope or an emptied calendar makes everyone
    look never held; past either limit a tick books nothing and sends nothing until
    ``cadence run --once --confirm`` or a raised limit.
    """

    #: the most bookings, moves and mails one tick may make
    max_actions: int | None = Field(default=None, ge=1)
    #: the largest share of relationships one tick may book or mail for ("25%" or 0.25)
    max_share: Share | None = None
    #: the share applies from this many relationships on (a small team all lapses at once)
    min_relationships: int = Field(default=20, ge=1)


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


DirectorySource = Annotated[CsvSource | LdapSource, Field(discriminator="kind")]


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


class ServiceConfig(Strict):
    """``cadence serve``: where /healthz and /metrics listen, and when it is unhealthy."""

    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535)  # 0: no HTTP endpoint
    unhealthy_after: int = Field(default=3, ge=1)  # consecutive failed ticks


class ConfigFile(Strict):
    """The whole configuration file."""

    timezone: TimeZoneName = "UTC"
    store: str = "var/cadence.db"
    tick: Annotated[Duration, AfterValidator(_tick)] = timedelta(minutes=10)
    templates: str | None = None
    language: Literal["en"] = "en"
    read_only: bool = False
    sync: SyncSettings = SyncSettings()
    service: ServiceConfig = ServiceConfig()
    guard: GuardConfig = GuardConfig()
    accounts: dict[str, Account]
    defaults: Defaults = Defaults()
    people: list[PersonConfig] = Field(default_factory=list)
    relationships: list[RelationshipConfig] = Field(default_factory=list)
    programs: dict[str, ProgramConfig] = Field(default_factory=dict)
    directory: DirectoryConfig | None = None


def json_schema() -> dict[str, Any]:
    """Return the JSON Schema of the configuration file, for editors."""
    schema = ConfigFile.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Cadence configuration"
    return schema
