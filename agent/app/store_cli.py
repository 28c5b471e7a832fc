"""``cadence store migrate`` and ``cadence store copy --to``: the store's schema, and
moving a store to another backend (an SQLite file to PostgreSQL)."""

from __future__ import annotations

from contextlib import closing

import typer

from agent.app.clitools import ConfigOption, load_settings, locked_errors, store_problems
from agent.app.lock import TickLock

store_app = typer.Typer(help="The store: its schema, and moving it to another database.")


@store_app.command("migrate")
def migrate(config: str | None = ConfigOption) -> None:
    """Bring the configured store to the newest schema; print its version before and
    after. Any Cadence command does this too, when it opens the store."""
    from agent.store.sqlite import Store

    settings = load_settings(config)
    with (
        locked_errors(),
        store_problems(settings.store_at),
        TickLock(settings.store_at, wait=30),
        closing(Store(settings.store_at, migrate=False)) as store,
    ):
        before, after = store.migrate()
        where = store.target.shown
    if before == after:
        typer.echo(f"store {where}: schema version {after}, the newest; nothing to do")
    else:
        typer.echo(f"store {where}: schema version {before} -> {after}")


@store_app.command("copy")
def copy(
    to: str = typer.Option(
        ...,
        "--to",
        help="The empty target: a file path, sqlite:///path or postgresql+psycopg://...",
    ),
    config: str | None = ConfigOption,
) -> None:
    """Copy every table of the configured store into an empty store (for example an
    SQLite file into PostgreSQL); no tick runs meanwhile. Then point `store:` at it."""
    from agent.store.copy import copy_store
    from agent.store.sqlite import Store
    from agent.store.target import StoreTarget

    settings = load_settings(config)
    target_at = StoreTarget.of(to)
    with (
        locked_errors(),
        store_problems(settings.store_at),
        TickLock(settings.store_at, wait=30),
        closing(Store(settings.store_at)) as source,
        store_problems(target_at.where),
        closing(Store(target_at)) as target,
    ):
        counts = copy_store(source, target)
    for table, count in counts.items():
        typer.echo(f"  {table:<18} {count:>8} rows")
    shown = target_at.shown
    typer.echo(f"copied {sum(counts.values())} rows into {shown}; now set `store: {shown}`")
