"""The ``cadence`` command.

Exit codes: 0 success, 1 runtime failure, 2 configuration or usage error.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer

from agent import config as config_mod
from agent.connectors.base import CadenceError, ConfigError
from agent.lock import Busy, TickLock

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Cadence keeps career-development conversations from lapsing.",
)

ConfigOption = typer.Option(
    None, "--config", "-c", help="Configuration file (default: $CADENCE_CONFIG or ./cadence.yaml)."
)
NowOption = typer.Option(
    None, "--now", help="Evaluate as of this instant (ISO 8601 with an offset)."
)


def fail(message: str, code: int) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def parse_now(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        fail(f"--now: not an ISO 8601 date and time: {text!r}", 2)
        raise
    if value.tzinfo is None:
        fail(f"--now: {text!r} has no offset; add one, e.g. {text}+00:00", 2)
    return value.astimezone(UTC)


def load_settings(path: str | None) -> config_mod.Settings:
    try:
        settings = config_mod.load(config_mod.config_path(path))
    except ConfigError as exc:
        for line in exc.errors:
            typer.echo(line, err=True)
        raise typer.Exit(2) from None
    for warning in settings.warnings:
        typer.echo(f"warning: {warning}", err=True)
    return settings


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@app.command()
def check(config: str | None = ConfigOption) -> None:
    """Validate the configuration and the plan files it names."""
    from agent import plan as idp

    settings = load_settings(config)
    errors: list[str] = []
    for person in settings.people.values():
        if person.plan:
            try:
                idp.load(person.plan)
            except ConfigError as exc:
                errors.extend(exc.errors)
    if errors:
        for line in errors:
            typer.echo(line, err=True)
        raise typer.Exit(2)
    typer.echo(
        f"{settings.path}: ok ({len(settings.people)} people, "
        f"{len(settings.relationships)} relationships, {len(settings.programs)} programs)"
    )


@app.command()
def schema() -> None:
    """Print the JSON Schema of the configuration file (for editors)."""
    typer.echo(json.dumps(config_mod.json_schema(), indent=2))


def _tick(config: str | None, now: str | None, dry_run: bool, verbose: bool) -> None:
    from agent.engine import Engine
    from agent.summary import print_report

    setup_logging(verbose)
    settings = load_settings(config)
    when = parse_now(now)
    try:
        with TickLock(settings.store, wait=0 if dry_run else 5), Engine(settings) as engine:
            report = engine.tick(when, dry_run=dry_run)
    except Busy as exc:
        fail(str(exc), 1)
        return
    except ConfigError as exc:
        fail(str(exc), 2)
        return
    print_report(settings, report, dry_run=dry_run)
    if report.errors:
        raise typer.Exit(1)


@app.command()
def plan(
    config: str | None = ConfigOption,
    now: str | None = NowOption,
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Show what the next tick would do, without doing it."""
    _tick(config, now, dry_run=True, verbose=verbose)


@app.command()
def run(
    config: str | None = ConfigOption,
    now: str | None = NowOption,
    once: bool = typer.Option(False, "--once", help="Run one tick and exit."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
) -> None:
    """Run one tick (--once); use serve to keep running."""
    if not once:
        fail("cadence run needs --once; use 'cadence serve' to run on a schedule", 2)
    _tick(config, now, dry_run=False, verbose=verbose)


@app.command()
def serve(
    config: str | None = ConfigOption,
    check_only: bool = typer.Option(False, "--check", help="Validate and exit."),
    verbose: bool = typer.Option(True, "--verbose/--quiet", "-v/-q"),
) -> None:
    """Tick on the configured interval until SIGTERM or SIGINT."""
    from apscheduler.schedulers.background import BackgroundScheduler

    from agent.engine import Engine

    setup_logging(verbose)
    settings = load_settings(config)
    if check_only:
        typer.echo("configuration ok")
        return
    log = logging.getLogger("cadence.serve")
    stop = threading.Event()
    running = threading.Lock()

    def tick() -> None:
        if not running.acquire(blocking=False):
            log.warning("previous tick still running; skipping this one")
            return
        try:
            with TickLock(settings.store, wait=0), Engine(settings) as engine:
                report = engine.tick(datetime.now(UTC))
            log.info(
                "tick %s: %d booked, %d mails, %d errors",
                report.tick,
                report.count("book"),
                sum(report.count(k) for k in ("agenda", "recap", "invite")),
                len(report.errors),
            )
        except Busy as exc:
            log.warning("%s", exc)
        except Exception:
            log.exception("tick failed")
        finally:
            running.release()

    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.add_job(
        tick,
        "interval",
        seconds=settings.tick.total_seconds(),
        next_run_time=datetime.now(UTC),
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,
    )

    def on_signal(signum: int, _frame: Any) -> None:
        log.info("received %s: stopping after the current tick", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    scheduler.start()
    log.info("serving: a tick every %s", settings.tick)
    stop.wait()
    scheduler.shutdown(wait=True)
    log.info("stopped")


@app.command()
def status(
    config: str | None = ConfigOption,
    now: str | None = NowOption,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Per relationship and series: last held, next scheduled, due, lapsed (from the store)."""
    from agent.status import collect, print_status

    settings = load_settings(config)
    rows = collect(settings, parse_now(now))
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
    else:
        print_status(rows)


@app.command()
def explain(
    relationship: str = typer.Argument(..., help="employee/partner, or an unambiguous part"),
    config: str | None = ConfigOption,
    now: str | None = NowOption,
) -> None:
    """Show the history, due date and candidate slots behind one relationship."""
    from agent.explain import explain as run_explain

    settings = load_settings(config)
    try:
        run_explain(settings, relationship, parse_now(now), typer.echo)
    except ConfigError as exc:
        fail(str(exc), 2)


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
    from agent.store import Store

    settings = load_settings(config)
    store = Store(settings.store)
    rows = store.audit_rows(tick=tick, relationship=relationship, kind=kind, limit=limit)
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
) -> None:
    """Create a demo workspace on the local provider, run one tick, show what happened."""
    from agent.demo import run_demo

    try:
        run_demo(folder, parse_now(now))
    except Busy as exc:
        fail(str(exc), 1)


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
    try:
        written = google.authorize(client_secrets, token, scopes, console)
    except ConfigError as exc:
        fail(str(exc), 2)
        return
    except CadenceError as exc:
        fail(f"error: {exc}", 1)
        return
    typer.echo(f"token stored in {written}; name it as `credentials:` of the google account")


@auth_app.command("microsoft")
def auth_microsoft(
    config: str | None = ConfigOption,
    account: str | None = typer.Option(None, "--account", help="The microsoft account to use."),
) -> None:
    """Sign in with the device-code flow; MSAL's token cache is written with 0600."""
    from agent.connectors.microsoft_graph import login

    try:
        user = login(load_settings(config), account, show=typer.echo)
    except ConfigError as exc:
        fail(str(exc), 2)
        return
    except CadenceError as exc:
        fail(f"error: {exc}", 1)
        return
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
