"""``cadence status``: the picture the store holds, with no calls to any provider."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import typer

from agent.rules import cadence, classify
from agent.settings.config import Settings
from agent.store.sqlite import Store


def collect(settings: Settings, now: datetime) -> list[dict[str, Any]]:
    store = Store(settings.store)
    try:
        own = {b.key: classify.Own(b.relationship, b.series, b.stage) for b in store.bookings()}
        rows = []
        for rel in settings.relationships:
            events = store.events(
                [rel.employee.email, rel.partner.email], now - timedelta(days=400)
            )
            meetings = classify.meetings(rel, events, own, now)
            refused = {
                r["series"]: r["message"]
                for r in store.audit_rows(relationship=rel.id, kind="not-booked", limit=50)
            }
            for state in cadence.assess(rel, meetings, now):
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
