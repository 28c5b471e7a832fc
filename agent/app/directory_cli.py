"""``cadence directory diff|sync``, ``cadence export`` and ``cadence forget``.

The directory commands take the store's tick lock, as a tick does, so that a read is
never applied while a tick plans from the lines it changes.
"""

from __future__ import annotations

import json
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import typer

from agent.app.clitools import (
    ConfigOption,
    NowOption,
    fail,
    load_settings,
    locked_errors,
    parse_now,
    store_problems,
)
from agent.app.lock import Busy, TickLock
from agent.core.errors import CadenceError

directory_app = typer.Typer(help="People and reporting lines from the company's directory.")


def _sync(config: str | None, now: str | None, apply: bool, confirm: bool) -> None:
    from agent.store.sqlite import Store
    from agent.tick import directory

    settings = load_settings(config)
    if settings.directory is None:
        fail(f"{settings.path}: no directory: section; see docs/directory.md", 2)
    when = parse_now(now)
    try:
        with (
            locked_errors(),
            store_problems(settings.store_at),
            TickLock(settings.store_at, wait=5 if apply else 0),
            closing(Store(settings.store_at)) as store,
        ):
            out = directory.sync(settings, store, when, apply=apply, confirm=confirm)
    except CadenceError as exc:  # not the store's lock, nor the configuration
        fail(f"error: directory read failed: {exc}", 1)
        return
    d = out.diff
    for line in d.lines():
        typer.echo(line)
    for line in out.skipped:
        typer.echo(f"skipped: {line}")
    typer.echo(
        f"In all: {d.before} -> {d.after} people; {len(d.joined)} joined, {len(d.left)} left, "
        f"{len(d.manager_changes)} new leader(s), {len(d.started)} line(s) started, "
        f"{len(d.ended)} ended"
    )
    if out.held and not confirm:
        typer.echo(f"held: {out.held}")
        if apply:
            typer.echo("nothing applied: check the source, then `cadence directory sync --confirm`")
            raise typer.Exit(1)
    elif apply:
        typer.echo(
            "applied" + (f"; erased after retention: {len(out.erased)}" if out.erased else "")
        )


@directory_app.command("diff")
def diff(config: str | None = ConfigOption, now: str | None = NowOption) -> None:
    """Show what the next directory sync would change, without changing anything."""
    _sync(config, now, apply=False, confirm=False)


@directory_app.command("sync")
def sync(
    config: str | None = ConfigOption,
    now: str | None = NowOption,
    confirm: bool = typer.Option(
        False, "--confirm", help="Apply a read past the guard's limits (look at the diff first)."
    ),
) -> None:
    """Read the directory and apply what changed; the next tick acts on it."""
    _sync(config, now, apply=True, confirm=confirm)


def _store(config: str | None):  # type: ignore[no-untyped-def]
    from agent.store.sqlite import Store

    settings = load_settings(config)
    return settings, Store(settings.store_at)


def export(
    email: str = typer.Argument(..., help="The person's address."),
    config: str | None = ConfigOption,
    output: Path | None = typer.Option(None, "--output", "-o", help="Write here, not stdout."),
) -> None:
    """Write everything Cadence holds about a person as JSON."""
    from agent.store.directory import DirectoryRows

    settings, store = _store(config)
    email = email.strip().lower()
    with store_problems(settings.store_at), closing(store):
        rows = DirectoryRows(store)
        held = rows.export(email)
        data = {
            "email": email,
            "exported_at": datetime.now(UTC).isoformat(),
            "forgotten_at": rows.forgotten(email),
            "configured": email in settings.people,
            "plan": _plan_text(settings, email),
            "store": held,
        }
    text = json.dumps(data, indent=2, default=str, ensure_ascii=False)
    if output is None:
        typer.echo(text)
        return
    from agent.core import files

    files.write_private(output, text.encode())
    typer.echo(f"{sum(len(v) for v in held.values())} rows written to {output}")


def _plan_text(settings, email: str) -> str | None:  # type: ignore[no-untyped-def]
    person = settings.people.get(email)
    if person is None or not person.plan:
        return None
    try:
        return str(Path(person.plan).read_text(encoding="utf-8"))
    except OSError:
        return None


def forget(
    email: str = typer.Argument(..., help="The person's address."),
    config: str | None = ConfigOption,
    now: str | None = NowOption,
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
) -> None:
    """Erase everything the store holds about a person; a tombstone keeps who and when."""
    from agent.store.directory import DirectoryRows

    email = email.strip().lower()
    if not yes:
        typer.confirm(f"Erase everything Cadence holds about {email}?", abort=True)
    settings, store = _store(config)
    try:
        with store_problems(settings.store_at), TickLock(settings.store_at, wait=5), closing(store):
            counts = DirectoryRows(store).forget(email, parse_now(now))
    except Busy as exc:
        fail(str(exc), 1)
        return
    typer.echo(f"erased {sum(counts.values())} rows about {email}; a tombstone records when")
    if email in settings.people:
        typer.echo(
            f"note: {email} is still listed in {settings.path}; remove them there, "
            "or Cadence starts a new record at the next tick"
        )
