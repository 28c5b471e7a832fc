"""``cadence status``: the picture the store holds, with no calls to any provider."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import typer

from agent.settings.config import Settings
from agent.store.assessed import assess_from_store
from agent.store.sqlite import Store
from agent.tick import plans
from agent.views.people import laid
from agent.views.uncertain import describe, uncertain_mail


def collect(settings: Settings, now: datetime) -> list[dict[str, Any]]:
    broken_plans = plans.problems(settings)
    store = Store(settings.store_at)
    try:
        settings = laid(settings, store)
        rows = []
        unsure: dict[tuple[str, str], list[str]] = {}
        for mail in uncertain_mail(store):
            unsure.setdefault((mail["relationship"], mail["series"]), []).append(describe(mail))
        for assessment in assess_from_store(settings, store, now).values():
            rel = assessment.relationship
            refused = {
                r["series"]: r["message"]
                for r in store.audit_rows(relationship=rel.id, kind="not-booked", limit=50)
            }
            for state in assessment.states:
                zone = rel.employee.zone
                rows.append(
                    {
                        "relationship": rel.id,
                        "program": rel.program.name,
                        "series": state.name,
                        "last_held": state.last_held.start.astimezone(zone).isoformat()
                        if state.last_held
                        else None,
                        "next_scheduled": state.next_scheduled.start.astimezone(zone).isoformat()
                        if state.next_scheduled
                        else None,
                        "due": state.due.astimezone(zone).date().isoformat(),
                        "lapsed": state.lapsed,
                        "stage": state.stage,
                        "days_since_held": state.days_since_held(now),
                        "reason": state.skip_reason or state.due_reason,
                        "not_booked": None if state.next_scheduled else refused.get(state.name),
                        "uncertain_mail": unsure.get((rel.id, state.name), []),
                        "plan_problem": broken_plans.get(rel.employee.email),
                    }
                )
        return rows
    finally:
        store.close()


def print_status(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'relationship':<42} {'series':<11} {'last held':<11} {'next':<11} {'due':<11} lapsed"
    )
    typer.echo(header)
    for r in rows:
        typer.echo(
            f"{r['relationship']:<42} {r['series']:<11} {(r['last_held'] or '-')[:10]:<11} "
            f"{(r['next_scheduled'] or '-')[:10]:<11} {r['due']:<11} {'yes' if r['lapsed'] else 'no'}"
        )
    unsure = [line for r in rows for line in r.get("uncertain_mail", [])]
    if unsure:
        typer.echo(
            f"\n{len(unsure)} mail(s) may not have gone out (not sent again, to never send "
            "twice; check the sender's Sent folder and resend if missing):"
        )
        for line in unsure:
            typer.echo(f"  {line}")
    broken = {
        r["relationship"].split("/")[0]: r["plan_problem"] for r in rows if r.get("plan_problem")
    }
    for email, problem in sorted(broken.items()):
        typer.echo(f"\n! {plans.plan_warning(email, problem)}")


def recent_ticks(settings: Settings, limit: int = 10) -> list[dict[str, Any]]:
    """The last ``limit`` ticks, newest first (read only: a running one is left as is)."""
    store = Store(settings.store_at)
    try:
        return store.ticks(limit)
    finally:
        store.close()


def print_ticks(ticks: list[dict[str, Any]]) -> None:
    """Say how the last tick went, and which recent ones a killed process cut short."""
    if not ticks:
        return
    last = ticks[0]
    if last["status"] == "running":
        typer.echo(f"\nlast tick: #{last['id']} running since {last['started_at']}")
    else:
        typer.echo(f"\nlast tick: #{last['id']} {last['status']}, finished {last['finished_at']}")
    for tick in ticks:
        if tick["status"] == "interrupted":
            typer.echo(
                f"tick #{tick['id']} was interrupted: started {tick['started_at']}, never "
                "finished (the next tick took up its work)"
            )
