"""The ``cadence`` command.

Exit codes: 0 success, 1 runtime failure, 2 configuration or usage error.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import typer

from agent.app import queue_cli
from agent.app.clitools import (
    ConfigOption,
    LogFormatOption,
    LogLevelOption,
    NowOption,
    exit_on_error,
    fail,
    load_settings,
    locked_errors,
    parse_now,
    setup_logging,
    store_problems,
)
from agent.app.directory_cli import directory_app, export, forget
from agent.app.lock import Busy, TickLock
from agent.app.plan_cli import plan_export, plan_import
from agent.app.store_cli import store_app
from agent.core.errors import CadenceError, ConfigError
from agent.settings import config as config_mod

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Cadence keeps career-development conversations from lapsing.",
)


@app.command()
def check(config: str | None = ConfigOption) -> None:
    """Validate the configuration and the plan files it names."""
    from agent.settings import idp as idp

    settings = load_settings(config)
    errors: list[str] = []
    from agent.tick.plans import plan_path

    for person in settings.people.values():
        path = plan_path(settings, person)
        if path:
            try:
                idp.load(path)
            except ConfigError as exc:
                errors.extend(exc.errors)
    errors += _account_errors(settings)
    errors += _signin_errors(settings)
    if errors:
        for line in errors:
            typer.echo(line, err=True)
        raise typer.Exit(2)
    typer.echo(
        f"{settings.path}: ok ({len(settings.people)} people, "
        f"{len(settings.relationships)} relationships, {len(settings.programs)} programs)"
    )


def _account_errors(settings: config_mod.Settings) -> list[str]:
    """What `run` would refuse in each account's own files (a credentials file others can
    read, a missing token cache or calendars folder ...), found by the providers' own
    checks, without a network call."""
    from agent import connectors
    from agent.settings import yamlsource

    errors: list[str] = []
    source: yamlsource.Source | None = None
    for name, account in settings.accounts.items():
        ctx = connectors.Context(
            name=name,
            account=account,
            settings=settings,
            people=[p for p in settings.people.values() if p.account == name],
        )
        try:
            problems = connectors.preflight(ctx)
        except ConfigError as exc:
            problems = [("provider", str(exc))]
        for key, message in problems:
            source = source or yamlsource.load(settings.path)
            errors.append(source.where(["accounts", name, key], message))
    return errors


def _signin_errors(settings: config_mod.Settings) -> list[str]:
    """What ``cadence serve`` would refuse in ``web.signin``: a client secret missing
    from the environment, a client file others can read."""
    from agent.settings import yamlsource
    from agent.web import oidc

    problems = oidc.preflight(settings)
    if not problems:
        return []
    source = yamlsource.load(settings.path)
    return [source.where(loc, message) for loc, message in problems]


@app.command("init-plan")
def init_plan(
    email: str = typer.Argument(..., help="The employee whose plan to start."),
    config: str | None = ConfigOption,
) -> None:
    """Write a commented starter plan (IDP) for EMAIL; never overwrite one."""
    from agent.settings import idp as idp

    settings = load_settings(config)
    person = settings.people.get(email.lower())
    if person is None:
        fail(f"{email} is not among the people in {settings.path}", 2)
        return
    path = Path(person.plan) if person.plan else settings.resolve(idp.default_path(person.email))
    if path.exists():
        fail(f"{path} exists; Cadence never overwrites a plan (edit it, or move it away)", 1)
    leaders = [
        r.partner.name
        for r in settings.relationships
        if r.employee.email == person.email and r.role == "leader"
    ]
    text = idp.starter(
        person.name, person.email, " and ".join(leaders) or "your leader", datetime.now(UTC).date()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with path.open("x", encoding="utf-8") as out:
            out.write(text)
    except FileExistsError:
        fail(f"{path} exists; Cadence never overwrites a plan", 1)
    typer.echo(f"wrote {path}")
    if not person.plan:
        try:
            shown = path.relative_to(settings.base)
        except ValueError:
            shown = path
        typer.echo(f"add 'plan: {shown}' to {person.email} in {settings.path}")
    typer.echo("edit it, then run 'cadence check'")


@app.command("review-packet")
def review_packet(
    email: str = typer.Argument(..., help="The employee whose record to assemble."),
    since: str = typer.Option(..., "--since", help="First day to include (YYYY-MM-DD)."),
    fmt: str = typer.Option("md", "--format", "-f", help="md or html."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write here, not stdout."),
    config: str | None = ConfigOption,
    now: str | None = NowOption,
) -> None:
    """Assemble the review packet: meetings, goals, actions, feedback, time invested."""
    from datetime import date

    from agent.store.sqlite import Store
    from agent.views import packet

    if fmt not in ("md", "html"):
        fail(f"--format: choose md or html, not {fmt!r}", 2)
    try:
        first = date.fromisoformat(since)
    except ValueError:
        fail(f"--since: not a date (YYYY-MM-DD): {since!r}", 2)
        return
    settings = load_settings(config)
    with store_problems(settings.store_at):
        store = Store(settings.store_at)
        try:
            data = packet.collect(settings, store, email, first, parse_now(now))
        except ConfigError as exc:
            fail(str(exc), 2)
            return
        finally:
            store.close()
    text = packet.render(data, fmt, settings.templates)
    if output:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {output}")
    else:
        typer.echo(text, nl=False)


@app.command()
def schema() -> None:
    """Print the JSON Schema of the configuration file (for editors)."""
    typer.echo(json.dumps(config_mod.json_schema(), indent=2))


def _tick(
    config: str | None,
    now: str | None,
    dry_run: bool,
    verbose: bool,
    log_level: str | None = None,
    log_format: str = "auto",
    as_json: bool = False,
    confirm: bool = False,
) -> None:
    from agent.tick.engine import Engine
    from agent.views.summary import print_actions, print_report

    setup_logging(verbose, log_level, log_format)
    settings = load_settings(config)
    when = parse_now(now)
    with (
        locked_errors(),
        store_problems(settings.store_at),
        TickLock(settings.store_at, wait=0 if dry_run else 5),
        Engine(settings) as engine,
    ):
        report = engine.tick(when, dry_run=dry_run, confirm=confirm)
        settings = engine.settings  # with the people and lines of the directory
    if as_json:
        typer.echo(json.dumps([a.describe() for a in report.planned], indent=2, default=str))
    else:
        print_report(settings, report, dry_run=dry_run)
        if dry_run:
            print_actions(report.planned)
            typer.echo(f"In all: {report.scale}")
    if report.errors:
        raise typer.Exit(1)


@app.command()
def plan(
    config: str | None = ConfigOption,
    now: str | None = NowOption,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
    log_level: str | None = LogLevelOption,
    log_format: str = LogFormatOption,
    as_json: bool = typer.Option(
        False, "--json", help="Print the planned actions as JSON, and nothing else."
    ),
) -> None:
    """Show what the next tick would do, without doing it: the planner's actions."""
    _tick(config, now, True, verbose, log_level, log_format, as_json)


@app.command()
def run(
    config: str | None = ConfigOption,
    now: str | None = NowOption,
    once: bool = typer.Option(False, "--once", help="Run one tick and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
    log_level: str | None = LogLevelOption,
    log_format: str = LogFormatOption,
    confirm: bool = typer.Option(
        False,
        "--confirm",
        help="Act on a plan past the guard's limits (look at `cadence plan` first).",
    ),
) -> None:
    """Run one tick (--once); use serve to keep running."""
    if not once:
        fail("cadence run needs --once; use 'cadence serve' to run on a schedule", 2)
    _tick(config, now, False, verbose, log_level, log_format, confirm=confirm)


@app.command()
def serve(
    config: str | None = ConfigOption,
    check_only: bool = typer.Option(False, "--check", help="Validate the configuration and exit."),
    verbose: bool = typer.Option(
        True, "--verbose/--quiet", "-v/-q", help="--quiet: warnings only."
    ),
    log_level: str | None = LogLevelOption,
    log_format: str = LogFormatOption,
) -> None:
    """Tick on the configured interval until SIGTERM or SIGINT; serve /healthz and /metrics."""
    from agent.app.service import Service

    setup_logging(verbose, log_level, log_format)
    settings = load_settings(config)
    if check_only:
        conf = settings.service
        where = f"http://{conf.host}:{conf.port}/healthz" if conf.port else "no HTTP endpoint"
        typer.echo(
            f"configuration ok: {len(settings.relationships)} relationships, "
            f"a tick every {settings.tick}, {where}"
        )
        return
    from agent.store.sqlite import Store

    with store_problems(settings.store_at):
        store = Store(settings.store_at)  # a store that cannot serve ticks stops here
        try:
            store.check_usable()
        finally:
            store.close()
    service = Service(settings)
    try:
        service.run()
    except OSError as exc:
        conf = settings.service
        fail(f"cannot listen on {conf.host}:{conf.port}: {exc.strerror or exc}", 1)


@app.command()
def health(
    config: str | None = ConfigOption,
    timeout: float = typer.Option(5.0, "--timeout", help="Seconds to wait for an answer."),
) -> None:
    """Ask a running cadence serve for /healthz; exit 0 when healthy, 1 otherwise."""
    import urllib.error
    import urllib.request

    conf = load_settings(config).service
    if not conf.port:
        fail("service.port is 0: this configuration serves no health endpoint", 2)
    host = "127.0.0.1" if conf.host in ("0.0.0.0", "") else conf.host
    host = "[::1]" if host == "::" else (f"[{host}]" if ":" in host else host)
    url = f"http://{host}:{conf.port}/healthz"
    try:
        direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy
        with direct.open(url, timeout=timeout) as answer:
            typer.echo(answer.read().decode().strip())
    except urllib.error.HTTPError as exc:
        with exc:
            typer.echo(exc.read().decode().strip())
        fail(f"unhealthy: {url} answered {exc.code}", 1)
    except (OSError, urllib.error.URLError) as exc:
        fail(f"no answer from {url}: {exc}", 1)


@app.command()
def status(
    config: str | None = ConfigOption,
    now: str | None = NowOption,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Per relationship and series: last held, next scheduled, due, lapsed (from the store)."""
    from agent.views import pushstate
    from agent.views.status import collect, print_status, print_ticks, recent_ticks

    settings = load_settings(config)
    with store_problems(settings.store_at):
        rows = collect(settings, parse_now(now))
        ticks = [] if as_json else recent_ticks(settings)
        pushed = pushstate.read(settings, parse_now(now))
    if as_json:
        by_email = {p["email"]: p["state"] for p in pushed}
        for row in rows:  # each side's push state, beside the relationship's series
            employee, partner = row["relationship"].split("/", 1)
            row["push"] = {employee: by_email.get(employee), partner: by_email.get(partner)}
        typer.echo(json.dumps(rows, indent=2))
    else:
        print_status(rows)
        pushstate.show(pushed)
        print_ticks(ticks)


@app.command()
def explain(
    relationship: str = typer.Argument(..., help="employee/partner, or an unambiguous part"),
    config: str | None = ConfigOption,
    now: str | None = NowOption,
) -> None:
    """Show the history, due date and candidate slots behind one relationship."""
    from agent.views.explain import explain as run_explain

    settings = load_settings(config)
    try:
        with store_problems(settings.store_at):
            run_explain(settings, relationship, parse_now(now), typer.echo)
    except ConfigError as exc:
        fail(str(exc), 2)


@app.command()
def report(
    config: str | None = ConfigOption,
    since: str | None = typer.Option(
        None, "--since", help="Count meetings from this date (YYYY-MM-DD; default: a year ago)."
    ),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv, json or html."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to this file."),
    details: bool = typer.Option(
        False, "--details", help="Include meeting titles (by default only dates and counts)."
    ),
    now: str | None = NowOption,
) -> None:
    """Cadence measures per leader and overall, from the store (no provider is called)."""
    from agent.views import report as report_mod

    if fmt not in ("table", "csv", "json", "html"):
        fail(f"--format: {fmt!r} is not one of table, csv, json, html", 2)
    settings = load_settings(config)
    when = parse_now(now)
    start = None
    if since is not None:
        try:
            day = date.fromisoformat(since)
        except ValueError:
            fail(f"--since: not a date (YYYY-MM-DD): {since!r}", 2)
            return
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        if start >= when:
            fail(f"--since {since} is not before now ({when:%Y-%m-%d})", 2)
    with store_problems(settings.store_at):
        built = report_mod.build(settings, when, start, details)
    if fmt == "html":
        from agent.views.report_html import render

        text = render(built)
    else:
        text = {"table": report_mod.to_table, "csv": report_mod.to_csv, "json": report_mod.to_json}[
            fmt
        ](built)
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"report written to {output}", err=True)


@app.command("log")
def log_cmd(
    config: str | None = ConfigOption,
    relationship: str | None = typer.Option(None, "--relationship", "-r"),
    kind: str | None = typer.Option(None, "--kind", "-k"),
    tick: int | None = typer.Option(None, "--tick"),
    limit: int = typer.Option(50, "--limit", "-n"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Print the audit log, newest last."""
    from agent.store.sqlite import Store

    settings = load_settings(config)
    with store_problems(settings.store_at):
        store = Store(settings.store_at)
        try:
            rows = store.audit_rows(tick=tick, relationship=relationship, kind=kind, limit=limit)
        finally:
            store.close()
    for row in rows:
        if as_json:
            typer.echo(json.dumps(row))
        else:
            where = f" {row['relationship']}" if row["relationship"] else ""
            typer.echo(f"{row['at']} #{row['tick']} {row['kind']}{where}: {row['message']}")


@app.command()
def demo(
    folder: Path = typer.Argument(Path("demo"), help="Workspace folder to create or reuse."),
    now: str | None = NowOption,
    serve: bool = typer.Option(
        False, "--serve", help="Then serve it with the web app and print sign-in links."
    ),
    port: int | None = typer.Option(None, "--port", help="With --serve: the port to listen on."),
) -> None:
    """Create a demo workspace on the local provider, run one tick, show what happened."""
    from agent.app.demo import run_demo

    try:
        run_demo(folder, parse_now(now))
    except Busy as exc:
        fail(str(exc), 1)
    if serve:
        from agent.app.demo_serve import serve_demo

        with exit_on_error():
            serve_demo(folder, port)


app.add_typer(directory_app, name="directory")
app.command("scheduler")(queue_cli.scheduler)
app.command("worker")(queue_cli.worker)
app.add_typer(store_app, name="store")
app.command("export")(export)
app.command("forget")(forget)
app.command("plan-export")(plan_export)
app.command("plan-import")(plan_import)

auth_app = typer.Typer(help="Consent flows for a single person's own account.")
app.add_typer(auth_app, name="auth")


@auth_app.command("google")
def auth_google(
    client_secrets: Path = typer.Argument(..., help="OAuth client file (Desktop app type)."),
    token: Path = typer.Option(Path("secrets/google-token.json"), "--token"),
    console: bool = typer.Option(False, "--console", help="Headless: paste the answer back."),
    config: str | None = ConfigOption,
) -> None:
    """Consent for Google Calendar and Gmail; the token is stored with 0600 permissions."""
    from agent.connectors import google

    scopes = google.scopes_for(False)
    if config_mod.config_path(config).exists():
        scopes = google.needed_scopes(load_settings(config))
    with exit_on_error():
        written = google.authorize(client_secrets, token, scopes, console)
    typer.echo(f"token stored in {written}; name it as `credentials:` of the google account")


@auth_app.command("microsoft")
def auth_microsoft(
    config: str | None = ConfigOption,
    account: str | None = typer.Option(None, "--account", help="The microsoft account to use."),
) -> None:
    """Sign in with the device-code flow; MSAL's token cache is written with 0600."""
    from agent.connectors.microsoft import login

    with exit_on_error():
        user = login(load_settings(config), account, show=typer.echo)
    typer.echo(f"signed in as {user}")


def main() -> None:
    try:
        app()
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        sys.exit(2)
    except CadenceError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
