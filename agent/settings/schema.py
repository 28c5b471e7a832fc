"""The configuration file's schema: one pydantic model per section, with its defaults.

The file format is a contract (DESIGN.md): keys are extended, never renamed. These
models validate the file; ``agent.settings.config`` resolves them into ``Settings``.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)

from agent.core.durations import (
    format_duration,
    parse_days,
    parse_duration,
    parse_span,
    parse_spans,
)
from agent.core.model import Stage


def _duration(value: Any) -> timedelta:
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError(f"not a duration: {value!r} (add a unit: 15m, 24h, 90d, 6w)")
    return parse_duration(value)


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
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
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
    collect_replies: bool = False


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
    CsvSource | EntraSource | GoogleDirectorySource, Field(discriminator="kind")
]


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
    tick: Duration = timedelta(minutes=10)
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
