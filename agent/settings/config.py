"""YAML configuration → validated settings.

The file format is a contract (DESIGN.md): keys are extended, never renamed. Every error
names the file, the line and the key path, and all errors are reported at once. The
file's schema is in ``agent.settings.schema``; its models are importable from here too.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent.core import titles
from agent.core.directory import Directory, Limits, Pair
from agent.core.durations import parse_days, parse_span, parse_spans
from agent.core.errors import ConfigError
from agent.core.model import (
    Booking,
    Guard,
    Person,
    Program,
    Relationship,
    ReplyIntake,
    Series,
    Span,
    WorkingHours,
)
from agent.core.templates import Templates
from agent.settings import queue_schema, yamlsource
from agent.settings import templates as template_files

# the schema's models that callers import from here
from agent.settings.schema import (
    CalDAVAccount,
    ConfigFile,
    ExchangeAccount,
    GoogleAccount,
    ImapSettings,
    LocalAccount,
    MicrosoftAccount,
    PushConfig,
    RetentionConfig,
    ServiceConfig,
    SmtpSettings,
    SyncSettings,
    WebConfig,
    json_schema,
)

__all__ = [
    "DEFAULT_CONFIG",
    "ENV_CONFIG",
    "CalDAVAccount",
    "ConfigFile",
    "ExchangeAccount",
    "GoogleAccount",
    "ImapSettings",
    "LocalAccount",
    "MicrosoftAccount",
    "PushConfig",
    "ServiceConfig",
    "Settings",
    "SmtpSettings",
    "SyncSettings",
    "config_path",
    "json_schema",
    "load",
    "reply_accounts",
]

ENV_CONFIG = "CADENCE_CONFIG"
DEFAULT_CONFIG = "cadence.yaml"


# --- the resolved settings -------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """The configuration resolved into domain values; paths are absolute.

    Everything the agent needs is a field here, worked out once when the file loads:
    no code reads the raw file afterwards.
    """

    path: Path
    #: the SQLite file; for a server store, the name its neighbours (token caches) take
    store: Path
    tick: timedelta
    people: dict[str, Person]
    programs: dict[str, Program]
    relationships: tuple[Relationship, ...]
    accounts: dict[str, Any]
    #: the package's templates overlaid by the ``templates:`` folder, read once here
    templates: Templates
    #: the language of mail and pages (``language:``)
    language: str
    #: ``read_only: true``: ticks plan and audit, but book and send nothing
    read_only: bool
    #: how hard the sync step may press each account's API (``sync:``)
    sync: SyncSettings
    #: where ``cadence serve`` listens and when it is unhealthy (``service:``)
    service: ServiceConfig
    #: how much one tick may do before it waits for a person (``guard:``)
    guard: Guard
    #: the mailboxes replies to recaps are read from, per account: the employees on that
    #: account whose program collects replies (``recap: {collect_replies: true}``), who
    #: are the From of their recaps. An account that is not a key reads no replies.
    reply_accounts: Mapping[str, tuple[str, ...]]
    base: Path
    warnings: tuple[str, ...] = field(default=())
    #: people and reporting lines read from the company's directory (``directory:``)
    directory: Directory | None = None
    #: notifications from the providers (``push:``); None: every tick polls
    push: PushConfig | None = None
    #: the web app of ``cadence serve`` (``web:``); None: only /healthz and /metrics
    web: WebConfig | None = None
    queue: queue_schema.Queue | None = None  # ``queue:``; None: one process ticks
    retention: RetentionConfig = field(default_factory=RetentionConfig)  # ``retention:``
    #: a server store's URL as written (``store: postgresql+psycopg://...``); None: SQLite
    store_url: str | None = None

    @property
    def store_at(self) -> Path | str:
        """What ``Store`` and ``TickLock`` open: the server's URL, or the SQLite file."""
        return self.store_url or self.store

    def reply_size_limit(self, account: str) -> int:
        """The largest reply the account's reader fetches whole: the highest
        ``recap.max_reply_size`` of the programs whose replies arrive there."""
        sizes = [
            r.program.intake.max_size
            for r in self.relationships
            if r.program.collect_replies and r.employee.account == account
        ]
        return max(sizes, default=ReplyIntake().max_size)

    @property
    def collects_replies(self) -> bool:
        """Whether any program collects replies to recaps, even one no relationship
        follows yet: sign-in asks for the mail read scope then, so that adding a
        relationship later needs no new consent."""
        return any(p.collect_replies for p in self.programs.values())

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


_MESSAGES = {
    "union_tag_invalid": "unknown provider; choose one of: {ctx[expected_tags]}",
    "literal_error": "must be one of {ctx[expected]}, not {input!r}",
}


def _message(source: yamlsource.Source, err: Any) -> str:
    loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
    return source.where(loc, yamlsource.error_message(err, _MESSAGES))


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
    if cfg.push is not None and cfg.push.public_url is None:
        called = sorted(
            name
            for name, a in cfg.accounts.items()
            if getattr(a, "provider", None) in ("google", "microsoft")
        )
        if called:
            err(
                ["push"],
                f"public_url is required: Google and Microsoft 365 call it "
                f"(account {', '.join(called)})",
            )
    if cfg.push is not None and cfg.push.public_url is not None and cfg.service.port == 0:
        err(["push"], "push needs the HTTP endpoint of `cadence serve`: set service.port")
    ms_signin = cfg.web.signin.microsoft if cfg.web else None
    if ms_signin is not None:
        found = cfg.accounts.get(ms_signin.account)
        where: list[str | int] = ["web", "signin", "microsoft", "account"]
        if found is None or found.provider != "microsoft":
            err(where, f"no microsoft account named {ms_signin.account!r}")
        elif found.tenant.lower() in ("common", "organizations", "consumers"):
            err(where, f"sign-in needs the organization's own tenant, not {found.tenant!r}")

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
            calendar=p.calendar,
            username=p.username,
            language=p.language,
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
            recap_backfill=prog.recap.backfill,
            collect_replies=prog.recap.collect_replies,
            language=prog.language,
            intake=ReplyIntake(
                trust=prog.recap.trust,
                authserv_ids=tuple(a.lower() for a in prog.recap.authserv_ids),
                max_actions=prog.recap.max_actions,
                max_size=prog.recap.max_reply_size,
                max_updates_per_day=prog.recap.max_updates_per_day,
            ),
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

    for name, program in programs.items():
        following = [r for r in relationships if r.program is program]
        for spec in program.series:
            problem = titles.series_problem(spec, following or [titles.sample(program)])
            if problem:
                err(["programs", name, "series", spec.name, "title"], problem)
    directory = _directory(cfg, programs, default_account, base, err)

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

    queue = None if cfg.queue is None else queue_schema.resolve(cfg.queue, err)
    store_file, store_url = _store(cfg.store, base, lambda m: err(["store"], m))
    if errors:
        raise ConfigError(errors)
    return Settings(
        path=source.path,
        store=store_file,
        store_url=store_url,
        tick=cfg.tick,
        people=people,
        programs=programs,
        relationships=tuple(relationships),
        accounts=dict(cfg.accounts),
        templates=templates,
        base=base,
        warnings=tuple(warnings),
        language=cfg.language,
        read_only=cfg.read_only,
        sync=cfg.sync,
        guard=Guard(cfg.guard.max_actions, cfg.guard.max_share, cfg.guard.min_relationships),
        service=cfg.service,
        reply_accounts=reply_accounts(relationships),
        directory=directory,
        push=cfg.push,
        web=cfg.web,
        queue=queue,
        retention=cfg.retention,
    )


def _store(value: str, base: Path, err: Callable[[str], None]) -> tuple[Path, str | None]:
    """The SQLite file ``store:`` names, or a server's URL (its password is not needed
    yet) with the local name beside which token caches go."""
    scheme, sep, rest = value.partition("://")
    if not sep:
        return (base / value) if not Path(value).is_absolute() else Path(value), None
    if scheme == "sqlite":
        path = Path(rest.removeprefix("/")) if rest not in ("", "/") else Path("var/cadence.db")
        return (base / path) if not path.is_absolute() else path, None
    if scheme not in ("postgresql", "postgresql+psycopg"):
        err(
            f"{scheme} is not a store Cadence knows: give a file path, sqlite:///path "
            "or postgresql+psycopg://user@host/database"
        )
    return base / "var" / "store", value


def _directory(
    cfg: ConfigFile, programs: Mapping[str, Program], account: str | None, base: Path, err: Any
) -> Directory | None:
    d = cfg.directory
    if d is None:
        return None
    if d.program not in programs:
        err(["directory", "program"], f"no program named {d.program!r}")
    if d.account and d.account not in cfg.accounts:
        err(["directory", "account"], f"no account named {d.account!r}")
    # a cloud source signs in as one of the accounts, of its own provider
    wanted = {"entra": "microsoft", "google": "google"}.get(d.source.kind)
    if wanted:
        name = getattr(d.source, "account", "")
        found = cfg.accounts.get(name)
        if found is None or found.provider != wanted:
            err(
                ["directory", "source", "account"],
                f"no {wanted} account named {name!r} for the {d.source.kind} directory",
            )
    return Directory(
        source=d.source,
        program=d.program,
        role=d.role,
        account=d.account or account or "",
        first_within=d.first_within,
        retention=d.retention,
        interval=d.interval,
        limits=Limits(d.guard.max_drop, d.guard.max_changes, d.guard.min_changes),
        base=str(base),
        plans=str(base / os.path.expanduser(d.plans)) if d.plans else None,
        pairs=_pairs(d, programs, base, err) if d.relationships else (),
        timezone=cfg.timezone,
        working_hours=_hours_of(cfg.defaults.working_hours),
        country=cfg.defaults.country,
        provided=frozenset(
            {"timezone"}
            | ({"working_hours"} if "working_hours" not in cfg.defaults.model_fields_set else set())
        ),
    )


def _pairs(d: Any, programs: Mapping[str, Program], base: Path, err: Any) -> tuple[Pair, ...]:
    """Read ``directory.relationships``: one relationship per row, each error as
    ``file:line: column: message`` among the config's errors."""
    src = d.relationships
    path = base / os.path.expanduser(src.path)
    cols = src.columns
    out: list[Pair] = []
    try:
        with path.open(encoding=src.encoding, newline="") as f:
            reader = csv.DictReader(f, delimiter=src.delimiter)
            missing = [
                c for c in (cols.employee, cols.partner) if c not in (reader.fieldnames or [])
            ]
            if missing:
                err(
                    ["directory", "relationships", "columns"],
                    f"{path}: no column {', '.join(missing)}",
                )
                return ()
            for row in reader:
                where = f"{path}:{reader.line_num}"
                employee = (row.get(cols.employee) or "").strip().lower()
                partner = (row.get(cols.partner) or "").strip().lower()
                role = (row.get(cols.role) or "").strip().lower() or "mentor"
                program = (row.get(cols.program) or "").strip()
                problems = [
                    f"{name}: {value!r} is not an address"
                    for name, value in (("employee", employee), ("partner", partner))
                    if not _ADDRESS.match(value)
                ]
                if role not in ("leader", "mentor", "peer"):
                    problems.append(f"role: {role!r} is not leader, mentor or peer")
                if program not in programs:
                    problems.append(f"program: no program named {program!r}")
                if employee == partner:
                    problems.append("partner: the employee and partner are the same person")
                if problems:
                    errors = [f"{where}: {p}" for p in problems]
                    err(["directory", "relationships", "path"], "; ".join(errors))
                    continue
                out.append(Pair(employee, partner, role, program, where))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        err(["directory", "relationships", "path"], f"{path}: {exc}")
    return tuple(out)


_ADDRESS = re.compile(r"^[^@\s/\\]+@[^@\s/\\]+$")


def reply_accounts(relationships: list[Relationship]) -> dict[str, tuple[str, ...]]:
    """Return, per account, the mailboxes replies to recaps arrive in: those of the
    account's employees whose program collects replies (a recap goes out From the
    employee, so a reply comes back to them)."""
    boxes: dict[str, set[str]] = {}
    for r in relationships:
        if r.program.collect_replies:
            boxes.setdefault(r.employee.account, set()).add(r.employee.email.lower())
    return {account: tuple(sorted(boxes[account])) for account in sorted(boxes)}


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
