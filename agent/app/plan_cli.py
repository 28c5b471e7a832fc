"""``cadence plan-export`` and ``cadence plan-import``: plans between the store and files.

A plan in the store wins over its file (the web app edits the store). ``plan-export``
writes the stored plans to each person's plan file (``plan:``, else
``plans/<email>.yaml``), so that those who prefer files can edit them; ``plan-import``
checks the files as ``cadence check`` does and puts them in the store, with a history
row, so that they win again.
"""

from __future__ import annotations

from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
import yaml

from agent.app.clitools import ConfigOption, fail, load_settings, store_problems
from agent.core.errors import ConfigError
from agent.core.plan import Plan
from agent.settings import idp
from agent.settings.config import Settings
from agent.store.plans import PlanRows
from agent.store.sqlite import Store
from agent.tick.plans import plan_path

PeopleArgument = typer.Argument(None, help="Only these people (default: everyone).")


def to_yaml(plan: Plan, email: str, when: datetime, by: str) -> str:
    """The plan as a plan file ``idp.load`` reads back to the same plan."""
    data: dict[str, Any] = plan.model_dump(mode="json", exclude_defaults=True)
    head = f"# Development plan of {email}, exported from the store ({when:%Y-%m-%d %H:%M} UTC, last changed by {by}).\n"
    return head + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def file_for(settings: Settings, email: str) -> Path:
    person = settings.people.get(email)
    found = plan_path(settings, person) if person is not None else None
    return found or settings.resolve(idp.default_path(email))


def plan_export(
    people: list[str] | None = PeopleArgument, config: str | None = ConfigOption
) -> None:
    """Write the plans kept in the store to the plan files (the store's plan wins)."""
    settings = load_settings(config)
    wanted = {p.strip().lower() for p in people or []}
    now = datetime.now(UTC)
    with store_problems(settings.store_at), closing(Store(settings.store_at)) as store:
        stored = PlanRows(store).all()
    count = 0
    for email, row in sorted(stored.items()):
        if wanted and email not in wanted:
            continue
        path = file_for(settings, email)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(to_yaml(row.plan, email, now, row.updated_by), encoding="utf-8")
        typer.echo(f"{email}: version {row.version} written to {path}")
        count += 1
    typer.echo(f"{count} plan(s) exported")


def plan_import(
    people: list[str] | None = PeopleArgument, config: str | None = ConfigOption
) -> None:
    """Check the plan files and put them in the store, with a history row each."""
    settings = load_settings(config)
    wanted = {p.strip().lower() for p in people or []}
    plans: dict[str, Plan] = {}
    errors: list[str] = []
    for person in settings.people.values():
        if wanted and person.email not in wanted:
            continue
        path = plan_path(settings, person)
        if path is None:
            continue
        try:
            plans[person.email] = idp.load(path)
        except ConfigError as exc:
            errors.extend(exc.errors)
    if errors:
        for line in errors:
            typer.echo(line, err=True)
        fail("nothing imported: fix the plan files first", 2)
    now = datetime.now(UTC)
    with store_problems(settings.store_at), closing(Store(settings.store_at)) as store:
        rows = PlanRows(store)
        for email, plan in sorted(plans.items()):
            before = rows.get(email)
            after = rows.save(email, plan, by="plan-import", how="import", now=now)
            same = before is not None and before.version == after.version
            typer.echo(f"{email}: {'unchanged' if same else f'version {after.version}'}")
    typer.echo(f"{len(plans)} plan(s) imported")
