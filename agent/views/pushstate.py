"""The push part of ``cadence status``: each person's channel, from the store."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import typer

from agent.core.timestamps import to_store
from agent.settings.config import Settings
from agent.store.push import PushRows
from agent.store.sqlite import Store

#: providers that can notify (Exchange: through subscriptions Cadence asks); the others
#: are polled at every tick
PUSHING = ("google", "microsoft", "exchange")


def collect(settings: Settings, store: Store, now: datetime) -> list[dict[str, Any]]:
    """Per person in a relationship: their channel's state, end and last notification."""
    rows = PushRows(store).all()
    polled = PushRows(store).polled()
    emails = sorted(
        {r.employee.email for r in settings.relationships}
        | {r.partner.email for r in settings.relationships}
    )
    out = []
    for email in emails:
        person = settings.people[email]
        provider = str(getattr(settings.accounts.get(person.account), "provider", ""))
        row = rows.get(email)
        if settings.push is None:
            state = "off"
        elif provider not in PUSHING:
            state = "polled"  # CalDAV, local files: no push
        elif row is None:
            state = "none"
        elif row.state == "active" and row.channel.expires <= now:
            state = "expired"
        elif row.state == "refused":
            state = "polled"  # the server offers no subscription: the error says why
        else:
            state = row.state
        out.append(
            {
                "email": email,
                "provider": provider,
                "state": state,
                "expires": (
                    to_store(row.channel.expires) if row and row.state != "refused" else None
                ),
                "notified_at": to_store(row.notified_at) if row and row.notified_at else None,
                "read_at": to_store(polled[email]) if email in polled else None,
                "error": row.error if row else None,
            }
        )
    return out


def read(settings: Settings, now: datetime) -> list[dict[str, Any]]:
    store = Store(settings.store_at)
    try:
        return collect(settings, store, now)
    finally:
        store.close()


def show(rows: list[dict[str, Any]]) -> None:
    if not rows or all(r["state"] == "off" for r in rows):
        typer.echo("\npush: off (every tick reads every calendar)")
        return
    typer.echo(f"\n{'push':<42} {'state':<8} {'ends':<17} {'last notified':<17} last read")
    for r in rows:
        typer.echo(
            f"{r['email']:<42} {r['state']:<8} {(r['expires'] or '-')[:16]:<17} "
            f"{(r['notified_at'] or '-')[:16]:<17} {(r['read_at'] or '-')[:16]}"
            + (f"  ({r['error']})" if r["error"] else "")
        )
