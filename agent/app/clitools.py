"""What every ``cadence`` command shares: options, exits, settings and store errors.

Exit codes: 0 success, 1 runtime failure, 2 configuration or usage error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import typer

from agent.core.errors import CadenceError, ConfigError
from agent.settings import config as config_mod
from agent.store import broken

ConfigOption = typer.Option(
    None, "--config", "-c", help="Configuration file (default: $CADENCE_CONFIG or ./cadence.yaml)."
)
NowOption = typer.Option(
    None, "--now", help="Evaluate as of this instant (ISO 8601 with an offset)."
)


def fail(message: str, code: int) -> None:
    typer.echo(message, err=True)
    raise typer.Exit(code)


@contextmanager
def exit_on_error() -> Iterator[None]:
    """Fail with a Cadence error's message: exit 2 for the configuration, 1 for the rest."""
    with exits((ConfigError, 2, ""), (CadenceError, 1, "error: ")):
        yield


@contextmanager
def exits(*ways: tuple[type[Exception], int, str]) -> Iterator[None]:
    """Fail on the first of ``ways`` (an error, its exit code, a prefix) the error is."""
    try:
        yield
    except Exception as exc:
        for kind, code, prefix in ways:
            if isinstance(exc, kind):
                fail(f"{prefix}{exc}", code)
        raise


@contextmanager
def store_problems(path: Path | str) -> Iterator[None]:
    """Turn a store that cannot be used (a folder, read-only, corrupted, not a database,
    a full disk), wherever in the command it shows, into its one-line error and exit 1."""
    try:
        yield
    except broken.StoreError as exc:
        fail(f"error: {exc}", 1)
    except broken.database_errors() as exc:
        fail(f"error: {broken.explain(path, exc)}", 1)


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


LogLevelOption = typer.Option(
    None, "--log-level", help="debug, info, warning or error (overrides -v/--quiet)."
)
LogFormatOption = typer.Option(
    "auto", "--log-format", help="text, json, or auto: text on a terminal, JSON lines otherwise."
)


def setup_logging(verbose: bool, level: str | None = None, fmt: str = "auto") -> None:
    from agent.core import logs

    try:
        logs.setup(level or ("info" if verbose else "warning"), fmt)  # type: ignore[arg-type]
    except ValueError as exc:
        fail(str(exc), 2)


@contextmanager
def locked_errors() -> Iterator[None]:
    """Exit 1 when another process holds the store, 2 for the configuration."""
    from agent.app.lock import Busy

    with exits((Busy, 1, ""), (ConfigError, 2, "")):
        yield
