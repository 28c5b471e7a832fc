"""The configuration file's schema: one pydantic model per section, with its defaults.

The file format is a contract (DESIGN.md): keys are extended, never renamed. These
models validate the file; ``agent.settings.config`` resolves them into ``Settings``.
"""

from __future__ import annotations

import urllib.parse
from datetime import date, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    field_validator,
    model_validator,
)

from agent.core.model import Stage
from agent.settings.directory_schema import (  # noqa: F401
    CsvSource,
    DirectoryConfig,
    DirectorySource,
    EntraSource,
    GoogleDirectorySource,
    LdapSource,
)
from agent.settings.queue_schema import QueueConfig
from agent.settings.schema_types import (  # noqa: F401 - callers import them here
    MAX_DURATION,
    ByteSize,
    Duration,
    Hours,
    Language,
    Regex,
    Share,
    SpanText,
    Strict,
    TimeZoneName,
    _address,
    _duration,
    _hours,
    _percent,
    _regex,
    _size,
    _span,
    _tick,
    _zone,
    within,
)

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


class Remote(Strict):
    """What every account reached over HTTPS has: whom to trust and how long to wait."""

    ca_bundle: str | None = None
    timeout: float = Field(default=30.0, gt=0)
    """Seconds a request may go unanswered before it is abandoned (and retried)."""


class GoogleAccount(Remote):
    """Google Workspace: a service-account key (domain-wide delegation) or a user token."""

    provider: Literal["google"]
    credentials: str
    endpoints: GoogleEndpoints = GoogleEndpoints()
    sender: str | None = None
    #: where a service account's access tokens are kept between runs (0600); by
    #: default beside the store, ``<store name>.<account>.tokens.json``
    token_cache: str | None = None
    timeout: float = Field(default=60.0, gt=0)


class MicrosoftAccount(Remote):
    """Microsoft 365 through Microsoft Graph and MSAL."""

    provider: Literal["microsoft"]
    tenant: str
    client_id: str
    client_secret_env: str | None = None
    client_certificate: str | None = None
    authority: str = "https://login.microsoftonline.com"
    graph: str = "https://graph.microsoft.com"
    token_cache: str | None = None
    sender: str | None = None


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


class CalDAVAccount(Remote):
    """CalDAV calendars with SMTP mail (and IMAP for replies)."""

    provider: Literal["caldav"]
    url: str
    username: str | None = None
    password_env: str | None = None
    auth: Literal["basic", "digest"] = "basic"
    smtp: SmtpSettings | None = None
    imap: ImapSettings | None = None


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
    language: Language | None = None


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
    language: Language | None = None


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


def _a_day_at_least(value: timedelta) -> timedelta:
    if value < timedelta(days=1):
        raise ValueError("must be at least 1d: a younger tick may still be running")
    return value


class RetentionConfig(Strict):
    """``retention:``: how long the store keeps what only history needs."""

    #: finished tick rows older than this are deleted, with their audit rows (none:
    #: kept forever); bookings, mails and meetings are never deleted
    ticks: Annotated[Duration, AfterValidator(_a_day_at_least)] | None = None


class ServiceConfig(Strict):
    """``cadence serve``: where /healthz and /metrics listen, and when it is unhealthy."""

    host: str = "127.0.0.1"
    port: int = Field(default=9464, ge=0, le=65535)  # 0: no HTTP endpoint
    unhealthy_after: int = Field(default=3, ge=1)  # consecutive failed ticks


def _public_url(value: str) -> str:
    parts = urllib.parse.urlsplit(value)
    loopback = parts.hostname in ("127.0.0.1", "::1", "localhost")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise ValueError(
            f"{value!r} is not an https URL: Google and Microsoft deliver notifications "
            "only over HTTPS (plain http is accepted for 127.0.0.1 alone, for tests)"
        )
    if parts.query or parts.fragment:
        raise ValueError(f"{value!r}: the public URL takes no query or fragment")
    return value.rstrip("/")


class PushConfig(Strict):
    """``push:``: notifications from Google, Microsoft and Exchange instead of polling
    every tick."""

    #: the HTTPS address the providers call, the reverse proxy's in front of
    #: ``cadence serve`` (``/google`` and ``/microsoft`` are added to it); Exchange
    #: alone needs none: Cadence asks its subscriptions
    public_url: Annotated[str, AfterValidator(_public_url)] | None = None
    #: how often a calendar whose channel is healthy is read anyway (the safety net);
    #: 12 h keeps a quiet calendar under 0.2 requests an hour with delegated Google
    #: tokens, each poll needing a token of its own
    poll: Annotated[Duration, AfterValidator(_tick)] = timedelta(hours=12)
    #: how long the notifications of one calendar are gathered before it is synced
    debounce: Duration = Field(default=timedelta(seconds=1))
    #: a channel is renewed once it ends within this time
    renew_before: Duration = timedelta(hours=12)
    #: notifications accepted per second from one source address (a burst of 5x passes)
    rate: float = Field(default=50.0, gt=0)
    #: how often the Exchange pull subscriptions are asked for their events
    pull: Annotated[
        Duration,
        within(timedelta(seconds=1), timedelta(minutes=30), "a subscription asked less often ends"),
    ] = timedelta(seconds=30)
    #: how Exchange tells of changes: ``stream`` (connections held open, a change told
    #: at once) or ``pull`` (each subscription asked every ``pull``)
    exchange: Literal["stream", "pull"] = "stream"
    #: streaming subscriptions carried by one ``GetStreamingEvents`` connection
    stream_group: Annotated[int, within(1, 200, "Exchange carries at most 200 a connection")] = 200
    #: how long a streaming connection is held before it is opened again
    stream_timeout: Annotated[
        Duration,
        within(
            timedelta(minutes=1),
            timedelta(minutes=30),
            "Exchange's ConnectionTimeout",
            minutes=True,
        ),
    ] = timedelta(minutes=30)


def _https_url(value: str) -> str:
    parts = urllib.parse.urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(f"{value!r} is not an https URL")
    return value


class GoogleSignin(Strict):
    """Sign-in with Google (OpenID Connect) through an OAuth client of type *Web
    application*: a service account, or the Desktop client of ``cadence auth google``,
    cannot receive a browser's redirect, so the web app has a client of its own."""

    #: the client's JSON as the Google Cloud console downloads it (0600)
    client_file: str | None = None
    #: or the client's id, with its secret in an environment variable
    client_id: str | None = None
    client_secret_env: str | None = None
    #: accept only accounts of this Google Workspace domain (the ``hd`` claim)
    hosted_domain: str | None = None
    discovery: Annotated[str, AfterValidator(_https_url)] = (
        "https://accounts.google.com/.well-known/openid-configuration"
    )
    ca_bundle: str | None = None
    timeout: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _one_client(self) -> GoogleSignin:
        if bool(self.client_file) == bool(self.client_id and self.client_secret_env):
            raise ValueError("give client_file, or client_id with client_secret_env (not both)")
        return self


class MicrosoftSignin(Strict):
    """Sign-in with Microsoft Entra ID (OpenID Connect) through the app registration of a
    ``microsoft`` account: its client id, tenant and secret."""

    account: str
    #: default: the account's ``{authority}/{tenant}/v2.0/.well-known/openid-configuration``
    discovery: Annotated[str | None, AfterValidator(lambda v: v and _https_url(v))] = None
    #: default: the account's ``client_secret_env``
    client_secret_env: str | None = None
    timeout: float = Field(default=30.0, gt=0)


class SigninConfig(Strict):
    """``web.signin``: the OpenID Connect providers people may sign in with, beside the
    mailed link of local accounts."""

    google: GoogleSignin | None = None
    microsoft: MicrosoftSignin | None = None


class WebConfig(Strict):
    """The web app ``cadence serve`` adds beside /healthz and /metrics (``web:``)."""

    signin: SigninConfig = SigninConfig()

    #: administrators and HR: the organization report, the audit log, the health
    admins: list[Annotated[str, AfterValidator(_address)]] = Field(default_factory=list)
    #: how long a signed-in session lasts
    session: Duration = timedelta(hours=8)
    #: how long a sign-in link mailed to the outbox stays good (it is single-use)
    link: Duration = timedelta(minutes=15)
    #: how long a pick-a-time link stays good (it is single-use)
    pick: Duration = timedelta(days=7)
    #: the address people open, for links in mail (default: http://<host>:<port>)
    url: str | None = None
    #: the file of the key that signs cookies and links (0600; created when missing)
    secret: str = "var/web.secret"
    #: cookies only over HTTPS (true behind a TLS proxy; false for the local demo)
    secure_cookies: bool = True


class ConfigFile(Strict):
    """The whole configuration file."""

    timezone: TimeZoneName = "UTC"
    store: str = "var/cadence.db"
    tick: Annotated[Duration, AfterValidator(_tick)] = timedelta(minutes=10)
    templates: str | None = None
    language: Language = "en"
    read_only: bool = False
    sync: SyncSettings = SyncSettings()
    service: ServiceConfig = ServiceConfig()
    web: WebConfig | None = None
    guard: GuardConfig = GuardConfig()
    retention: RetentionConfig = RetentionConfig()
    accounts: dict[str, Account]
    defaults: Defaults = Defaults()
    people: list[PersonConfig] = Field(default_factory=list)
    relationships: list[RelationshipConfig] = Field(default_factory=list)
    programs: dict[str, ProgramConfig] = Field(default_factory=dict)
    directory: DirectoryConfig | None = None
    push: PushConfig | None = None
    queue: QueueConfig | None = None


def json_schema() -> dict[str, Any]:
    """Return the JSON Schema of the configuration file, for editors."""
    schema = ConfigFile.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Cadence configuration"
    return schema
