"""Readable summaries of a tick for the terminal."""

from __future__ import annotations

from collections.abc import Sequence

import typer

from agent.core import locales
from agent.rules.actions import Action, acts
from agent.settings.config import Settings
from agent.tick.engine import TickReport

_LABELS = {
    "book": "booked",
    "agenda": "agenda sent",
    "recap": "recap sent",
    "invite": "invitation sent",
    "move": "moved",
    "ask": "asked the employee to pick a time",
    "accept": "accepted a move made by hand",
    "reply": "reply read",
    "update": "updated recap sent",
    "cancel": "cancelled",
    "ended": "told both the line has ended",
    "handover": "hand-over sent to the new leader",
}


def print_report(settings: Settings, report: TickReport, *, dry_run: bool = False) -> int:
    """Print per relationship what the tick found and did; return the number of new actions."""
    new = 0
    echo = typer.echo
    verb = "would" if dry_run else "did"
    echo(f"Tick at {report.now:%Y-%m-%d %H:%M} UTC ({'plan only' if dry_run else 'run'})")
    for rel in settings.relationships:
        echo("")
        language = rel.language(settings.language)
        echo(
            f"{rel.employee.name} ({rel.employee.timezone}) with {rel.role} "
            f"{rel.partner.name} ({rel.partner.timezone}), {rel.program.name}"
            + (f"; mail in {locales.tag(language)}" if language != locales.SOURCE else "")
        )
        for state in [s for s in report.states if s.relationship.id == rel.id]:
            if state.next_scheduled:
                when = state.next_scheduled.start.astimezone(rel.employee.zone)
                found = f"next scheduled {when:%a %Y-%m-%d %H:%M}"
            elif state.skip_reason:
                found = state.skip_reason
            else:
                found = state.due_reason
            held = state.last_held.start.astimezone(rel.employee.zone) if state.last_held else None
            flag = "LAPSED" if state.lapsed else "ok"
            echo(
                f"  {state.name:<11} {flag:<6} last held {held:%Y-%m-%d}"
                if held
                else f"  {state.name:<11} {flag:<6} never held"
            )
            echo(f"              {found}")
        for action in [a for a in report.actions if a.relationship == rel.id]:
            if action.kind in _LABELS and action.outcome in ("done", "planned"):
                new += 1
                planned = action.outcome == "planned"
                label = f"would {action.kind}" if planned else _LABELS[action.kind]
                echo(f"  → {label}: {action.detail}")
                data = action.data
                if action.kind == "book" and "employee_local" in data:
                    echo(f"      {data['employee_local']}  |  {data['partner_local']}")
                    if data.get("stage"):
                        echo(f"      stage: {data['stage']}")
                    echo(f"      why: {data['why']}")
                    echo(f"      {data['slot_reason']}")
                elif data.get("where"):
                    echo(f"      to {', '.join(data['to'])} → {data['where']}")
            elif action.outcome in ("no-slot", "held-back", "deferred", "failed", "uncertain"):
                echo(f"  ! {action.detail}")
    known = {rel.id for rel in settings.relationships}
    ended = [a for a in report.actions if a.relationship and a.relationship not in known]
    for rel_id in dict.fromkeys(a.relationship for a in ended):
        echo("")
        echo(f"{rel_id}: the reporting line has ended")
        for action in [a for a in ended if a.relationship == rel_id]:
            if action.kind in _LABELS and action.outcome == "done":
                new += 1
                echo(f"  → {_LABELS[action.kind]}: {action.detail}")
                if action.data.get("where"):
                    echo(f"      to {', '.join(action.data['to'])} → {action.data['where']}")
            elif action.outcome in ("held-back", "failed", "uncertain"):
                echo(f"  ! {action.detail}")
    for error in report.errors:
        if not any(error == a.detail and a.relationship for a in report.actions):
            echo(f"! {error}")
    echo("")
    for warning in report.warnings:
        echo(f"! {warning}")
    if report.held and dry_run:
        echo(f"! the guard would hold this plan: {report.held}")
    if report.held and not dry_run:
        echo(
            "Held by the guard: nothing was booked or sent; the audit log says what would have been."
        )
    elif settings.read_only and not dry_run:
        echo(
            "Read-only mode (read_only: true): nothing was booked or sent; the audit log says what would have been."
        )
    elif new:
        echo(
            f"{verb.title()}: {report.count('book', 'planned' if dry_run else 'done')} booked, "
            f"{sum(report.count(k, 'planned' if dry_run else 'done') for k in ('agenda', 'recap', 'invite', 'update', 'ended', 'handover'))} mails."
        )
    else:
        echo("Nothing new to book or send: every due action is already done.")
    return new


def print_actions(actions: Sequence[Action]) -> None:
    """Print the planner's actions in the order a run would take them."""
    doing = [a for a in actions if acts(a)]
    typer.echo(f"Planned actions ({len(doing)}), in the order a run takes them:")
    if not doing:
        typer.echo("  (none)")
    for number, action in enumerate(doing, 1):
        series = f" {action.series}" if action.series else ""
        typer.echo(f"  {number:>3}. {action.kind:<7} {action.relationship}{series}  [{action.key}]")
        typer.echo(f"       {action.reason}")
