"""YAML configuration → validated settings.

The file format is a contract (DESIGN.md): keys are extended, never renamed. Every error
names the file, the line and the key path, and all errors are reported at once.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
)

from agent.core.durations import (
    format_duration,
    parse_days,
    parse_duration,
    parse_span,
    parse_spans,
)
from agent.core.errors import ConfigError
from agent.core.model import (
    Booking,
    Person,
    Program,
    Relationship,
    Series,
    Span,
    Stage,
    WorkingHours,
)
from agent.core.templates import Templates
from agent.settings import templates as template_files
from agent.settings import yamlsource

ENV_CONFIG = "CADENCE_CONFIG"
DEFAULT_CONFIG = "cadence.yaml"


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


class SmtpSettings(Strict):
    """SMTP submission: STARTTLS on 587 (default), implicit TLS on 465 with ``ssl``."""

    host: str
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    ssl: bool = False
    username: str | None = None
    password_env: str | None = None
    from_: str | None = Field(default=None, alias="from")
    ca_bundle: str | None = None
    timeout: float = Field(default=30.0, gt=0)


class ImapSettings(Strict):
    """IMAP for reading replies: IMAPS on 993 (default), STARTTLS with ``ssl: false``."""

    host: str
    port: int = Field(default=993, ge=1, le=65535)
    ssl: bool = True
    starttls: bool = True
    username: str | None = None
    password_env: str | None = None
    folder: str = "INBOX"
    ca_bundle: str | None = None
    timeout: float = Field(default=30.0, gt=0)


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
    accounts: dict[str, Account]
    defaults: Defaults = Defaults()
    people: list[PersonConfig]
    relationships: list[RelationshipConfig] = Field(default_factory=list)
    programs: dict[str, ProgramConfig] = Field(default_factory=dict)


def json_schema() -> dict[str, Any]:
    """Return the JSON Schema of the configuration file, for editors."""
    schema = ConfigFile.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Cadence configuration"
    return schema


# --- the resolved settings -------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """The configuration resolved into domain values; paths are absolute."""

    path: Path
    file: ConfigFile
    store: Path
    tick: timedelta
    people: dict[str, Person]
    programs: dict[str, Program]
    relationships: tuple[Relationship, ...]
    accounts: dict[str, Any]
    #: the package's templates overlaid by the ``templates:`` folder, read once here
    templates: Templates
    base: Path
    warnings: tuple[str, ...] = field(default=())

    def resolve(self, relative: str) -> Path:
        path = Path(os.path.expanduser(relative))
        return path if path.is_absolute() else (self.base / path)

    def relationship(self, ref: str) -> Relationship:
        """Find a relationship by its id, or by an unambiguous part of it."""
        exact = [r for r in self.relationships if r.id == ref]
        if exact:
            return exact[0]
        found = [r for r in self.relationships if ref.lower() in r.id.lower()]
        if len(found) == 1:
            return found[0]
        choices = ", ".join(r.id for r in (found or list(self.relationships)))
        what = "is ambiguous" if found else "matches no relationship"
        raise ConfigError(f"relationship {ref!r} {what}; choose one of: {choices}")


def config_path(explicit: str | Path | None) -> Path:
    """Return the config path from --config, $CADENCE_CONFIG or the default."""
    return Path(explicit or os.environ.get(ENV_CONFIG) or DEFAULT_CONFIG)


def load(path: str | Path) -> Settings:
    """Load and validate a configuration file; raise ConfigError listing every error."""
    source = yamlsource.load(Path(path))
    if not isinstance(source.data, dict):
        raise ConfigError(f"{source.path}:1: (top): the file must hold a mapping of keys")
    try:
        parsed = ConfigFile.model_validate(source.data)
    except ValidationError as exc:
        errors = [_message(source, err) for err in exc.errors()]
        errors += [e for e in _references(source) if e not in errors]
        raise ConfigError(errors) from None
    return _resolve(source, parsed)


def _references(source: yamlsource.Source) -> list[str]:
    """Check relationships against people and programs in the raw data, so that these
    errors are reported together with any schema errors elsewhere in the file."""
    data = source.data
    people = data.get("people")
    programs = data.get("programs")
    relationships = data.get("relationships")
    if not isinstance(people, list) or not isinstance(relationships, list):
        return []
    emails = {str(p.get("email", "")).lower() for p in people if isinstance(p, dict)}
    errors = []
    for i, r in enumerate(relationships):
        if not isinstance(r, dict):
            continue
        for role in ("employee", "partner"):
            who = r.get(role)
            if isinstance(who, str) and who.lower() not in emails:
                errors.append(
                    source.where(["relationships", i, role], f"{who} is not among people")
                )
        program = r.get("program")
        if isinstance(programs, dict) and isinstance(program, str) and program not in programs:
            errors.append(
                source.where(["relationships", i, "program"], f"no program named {program!r}")
            )
    return errors


def _message(source: yamlsource.Source, err: Any) -> str:
    loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    kind = err["type"]
    if kind == "extra_forbidden":
        message = "unknown key"
    elif kind == "missing":
        message = "required key is missing"
    elif kind == "union_tag_invalid":
        message = f"unknown provider; choose one of: {err['ctx']['expected_tags']}"
    elif kind == "literal_error":
        message = f"must be one of {err['ctx']['expected']}, not {err['input']!r}"
    else:
        message = str(err["msg"]).removeprefix("Value error, ")
    return source.where(loc, message)


def _hours_of(text: dict[str, str]) -> WorkingHours:
    days: dict[int, tuple[Span, ...]] = {}
    for day_text, spans in text.items():
        for day in parse_days(day_text):
            days[day] = parse_spans(spans)
    return WorkingHours(days)


def _resolve(source: yamlsource.Source, cfg: ConfigFile) -> Settings:
    errors: list[str] = []
    warnings: list[str] = []
    base = source.path.resolve().parent

    def err(loc: list[str | int], message: str) -> None:
        errors.append(source.where(loc, message))

    default_account = cfg.defaults.account or (next(iter(cfg.accounts)) if cfg.accounts else None)
    if cfg.defaults.account and cfg.defaults.account not in cfg.accounts:
        err(["defaults", "account"], f"no account named {cfg.defaults.account!r}")
    if not cfg.accounts:
        err(["accounts"], "at least one account is required")

    people: dict[str, Person] = {}
    for i, p in enumerate(cfg.people):
        email = p.email.lower()
        if email in people:
            err(["people", i, "email"], f"{p.email} is listed twice")
            continue
        account = p.account or default_account or ""
        if p.account and p.account not in cfg.accounts:
            err(["people", i, "account"], f"no account named {p.account!r}")
        plan = None
        if p.plan:
            plan_path = (base / p.plan) if not Path(p.plan).is_absolute() else Path(p.plan)
            if not plan_path.exists():
                # a warning, so that `cadence init-plan` can write it; `cadence check` fails
                warnings.append(
                    source.where(
                        ["people", i, "plan"],
                        f"plan file {p.plan} not found (cadence init-plan {email} writes one)",
                    )
                )
            plan = str(plan_path)
        people[email] = Person(
            email=email,
            name=p.name or email.split("@")[0],
            timezone=p.timezone or cfg.timezone,
            working_hours=_hours_of(p.working_hours or cfg.defaults.working_hours),
            country=p.country or cfg.defaults.country,
            subdivision=p.subdivision or (None if p.country else cfg.defaults.subdivision),
            account=account,
            plan=plan,
            closed=frozenset(p.closed),
            provided=frozenset(
                name
                for name, missing in (
                    ("timezone", not p.timezone),
                    (
                        "working_hours",
                        not p.working_hours
                        and "working_hours" not in cfg.defaults.model_fields_set,
                    ),
                )
                if missing
            ),
        )
        _check_country(people[email], ["people", i, "country"], err)

    programs: dict[str, Program] = {}
    for name, prog in cfg.programs.items():
        series = []
        for sname, s in prog.series.items():
            if s.skip_near and s.skip_near not in prog.series:
                err(["programs", name, "series", sname, "skip_near"], f"no series {s.skip_near!r}")
            if s.every <= timedelta(0) or s.duration <= timedelta(0):
                err(["programs", name, "series", sname], "every and duration must be positive")
            if not s.match:
                warnings.append(
                    source.where(
                        ["programs", name, "series", sname],
                        "no match pattern: only the agent's own events count as meetings",
                    )
                )
            series.append(
                Series(
                    name=sname,
                    every=s.every,
                    duration=s.duration,
                    title=s.title,
                    match=s.match,
                    stages=tuple(str(st) for st in s.stages),
                    skip_near=s.skip_near,
                    skip_within=s.skip_within,
                )
            )
        b = prog.booking
        programs[name] = Program(
            name=name,
            series=tuple(series),
            organizer=prog.organizer,
            lapse_grace=prog.lapse_grace,
            booking=Booking(
                horizon=b.horizon,
                lead_time=b.lead_time,
                window=parse_span(b.window) if b.window else None,
                buffer=b.buffer,
                conference=b.conference,
                max_per_day=b.max_per_day,
                max_per_week=b.max_per_week,
            ),
            min_notice=prog.reschedule.min_notice,
            max_moves=prog.reschedule.max_moves,
            agenda_before=prog.agenda.before,
            recap_after=prog.recap.after,
            recap_within=prog.recap.within,
        )

    relationships: list[Relationship] = []
    seen: set[tuple[str, str]] = set()
    for i, r in enumerate(cfg.relationships):
        employee, partner = people.get(r.employee.lower()), people.get(r.partner.lower())
        program = programs.get(r.program)
        if employee is None:
            err(["relationships", i, "employee"], f"{r.employee} is not among people")
        if partner is None:
            err(["relationships", i, "partner"], f"{r.partner} is not among people")
        if program is None:
            err(["relationships", i, "program"], f"no program named {r.program!r}")
        if employee and partner and employee.email == partner.email:
            err(["relationships", i, "partner"], "employee and partner are the same person")
        if employee is None or partner is None or program is None:
            continue
        pair = (employee.email, partner.email)
        if pair in seen:
            err(
                ["relationships", i],
                "this pair is listed twice; one relationship follows one program "
                "(put every series it needs in that program)",
            )
        seen.add(pair)
        relationships.append(Relationship(employee, partner, r.role, program))

    templates = template_files.packaged()
    if cfg.templates:
        folder = Path(os.path.expanduser(cfg.templates))
        folder = folder if folder.is_absolute() else base / folder
        if not folder.is_dir():
            warnings.append(
                source.where(
                    ["templates"], f"no folder {cfg.templates}: the built-in templates are used"
                )
            )
        try:
            templates = template_files.load(folder)
        except ValueError as exc:
            err(["templates"], str(exc))

    if errors:
        raise ConfigError(errors)
    return Settings(
        path=source.path,
        file=cfg,
        store=(base / cfg.store) if not Path(cfg.store).is_absolute() else Path(cfg.store),
        tick=cfg.tick,
        people=people,
        programs=programs,
        relationships=tuple(relationships),
        accounts=dict(cfg.accounts),
        templates=templates,
        base=base,
        warnings=tuple(warnings),
    )


def _check_country(person: Person, loc: list[str | int], err: Any) -> None:
    if not person.country:
        return
    import holidays

    try:
        holidays.country_holidays(person.country, subdiv=person.subdivision)
    except NotImplementedError:
        err(loc, f"unknown country code {person.country!r} for public holidays")
    except Exception as exc:  # holidays raises NotImplementedError or ValueError for subdiv
        err(loc, f"unknown subdivision {person.subdivision!r} of {person.country}: {exc}")
