"""Readable summaries of a tick for the terminal.

The lines about people (each relationship, its series, what was done for it, the totals)
go through the catalogue in the config's global ``language:``, the operator's; the
reasons and details quoted from the planner and the audit log stay English, as the log
is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import typer

from agent.core import locales
from agent.rules.actions import Action, acts
from agent.rules.messages import N_
from agent.settings.config import Settings
from agent.tick.reporting import TickReport

_LABELS = {
    "book": N_("booked"),
    "agenda": N_("agenda sent"),
    "recap": N_("recap sent"),
    "invite": N_("invitation sent"),
    "move": N_("moved"),
    "ask": N_("asked the employee to pick a time"),
    "accept": N_("accepted a move made by hand"),
    "reply": N_("reply read"),
    "update": N_("updated recap sent"),
    "cancel": N_("cancelled"),
    "ended": N_("told both the line has ended"),
    "handover": N_("hand-over sent to the new leader"),
}
#: the same, planned by ``cadence plan`` (or held back by the guard)
_PLANNED = {
    "book": N_("would book"),
    "agenda": N_("would send the agenda"),
    "recap": N_("would send the recap"),
    "invite": N_("would send the invitation"),
    "move": N_("would move"),
    "ask": N_("would ask the employee to pick a time"),
    "accept": N_("would accept a move made by hand"),
    "reply": N_("would read a reply"),
    "update": N_("would send the updated recap"),
    "cancel": N_("would cancel"),
    "ended": N_("would tell both the line has ended"),
    "handover": N_("would send the hand-over to the new leader"),
}


def _delivered(data: dict[str, Any], _: Callable[[str], str]) -> str:
    """``to ana@…, ben@… → outbox/….eml``: where a mail went."""
    return _("to %(people)s → %(where)s") % {
        "people": ", ".join(data["to"]),
        "where": data["where"],
    }


def _when(dt: datetime, language: str) -> str:
    """``Mon 2026-12-07 14:00`` in English, as it always read; the language's date else."""
    if language == locales.SOURCE:
        return f"{dt:%a %Y-%m-%d %H:%M}"
    return f"{locales.full_day(dt, language)} {locales.clock(dt, language)}"


def print_report(settings: Settings, report: TickReport, *, dry_run: bool = False) -> int:
    """Print per relationship what the tick found and did; return the number of new actions."""
    new = 0
    echo = typer.echo
    lang = settings.language
    _ = settings.templates.translations(lang).gettext
    mode = _("plan only") if dry_run else _("run")
    flags = max(6, len(_("LAPSED")), len(_("ok")))  # the state column's width
    echo(
        _("Tick at %(when)s UTC (%(mode)s)")
        % {"when": f"{report.now:%Y-%m-%d %H:%M}", "mode": mode}
    )
    states: dict[str, list[Any]] = {}
    for state in report.states:
        states.setdefault(state.relationship.id, []).append(state)
    actions: dict[str | None, list[Any]] = {}
    for act in report.actions:
        actions.setdefault(act.relationship, []).append(act)
    for rel in settings.relationships:
        echo("")
        language = rel.language(settings.language)
        pair = {
            "employee": rel.employee.name,
            "employee_zone": rel.employee.timezone,
            "role": _(rel.role),
            "partner": rel.partner.name,
            "partner_zone": rel.partner.timezone,
            "program": rel.program.name,
        }
        head = _(
            "%(employee)s (%(employee_zone)s) with %(role)s %(partner)s (%(partner_zone)s), "
            "%(program)s"
        )
        if language != locales.SOURCE:
            head += _("; mail in %(language)s")
        echo(head % {**pair, "language": locales.tag(language)})
        for state in states.get(rel.id, []):
            if state.next_scheduled:
                when = state.next_scheduled.start.astimezone(rel.employee.zone)
                found = _("next scheduled %(when)s") % {"when": _when(when, lang)}
            elif state.skip_reason:
                found = state.skip_reason
            else:
                found = state.due_reason
            held = state.last_held.start.astimezone(rel.employee.zone) if state.last_held else None
            flag = (_("LAPSED") if state.lapsed else _("ok")).ljust(flags)
            last = _("last held %(day)s") % {"day": f"{held:%Y-%m-%d}"} if held else _("never held")
            echo(f"  {state.name:<11} {flag} {last}")
            echo(f"              {found}")
        for action in actions.get(rel.id, []):
            if action.kind in _LABELS and action.outcome in ("done", "planned"):
                new += 1
                planned = action.outcome == "planned"
                label = _(_PLANNED[action.kind] if planned else _LABELS[action.kind])
                echo(f"  → {label}: {action.detail}")
                data = action.data
                if action.kind == "book" and "employee_local" in data:
                    echo(f"      {data['employee_local']}  |  {data['partner_local']}")
                    if data.get("stage"):
                        echo("      " + _("stage: %(stage)s") % {"stage": data["stage"]})
                    echo("      " + _("why: %(why)s") % {"why": data["why"]})
                    echo(f"      {data['slot_reason']}")
                elif data.get("where"):
                    echo("      " + _delivered(data, _))
            elif action.outcome in ("no-slot", "held-back", "deferred", "failed", "uncertain"):
                echo(f"  ! {action.detail}")
    known = {rel.id for rel in settings.relationships}
    ended = [a for a in report.actions if a.relationship and a.relationship not in known]
    for rel_id in dict.fromkeys(a.relationship for a in ended):
        echo("")
        echo(_("%(relationship)s: the reporting line has ended") % {"relationship": rel_id})
        for action in [a for a in ended if a.relationship == rel_id]:
            if action.kind in _LABELS and action.outcome == "done":
                new += 1
                echo(f"  → {_(_LABELS[action.kind])}: {action.detail}")
                if action.data.get("where"):
                    echo("      " + _delivered(action.data, _))
            elif action.outcome in ("held-back", "failed", "uncertain"):
                echo(f"  ! {action.detail}")
    for error in report.errors:
        if not any(error == a.detail and a.relationship for a in report.actions):
            echo(f"! {error}")
    echo("")
    for warning in report.warnings:
        echo(f"! {warning}")
    if report.held and dry_run:
        echo("! " + _("the guard would hold this plan: %(why)s") % {"why": report.held})
    if report.held and not dry_run:
        echo(
            _("Held by the guard: nothing was booked or sent; the audit log says what would have been.")
        )  # fmt: skip
    elif settings.read_only and not dry_run:
        echo(
            _("Read-only mode (read_only: true): nothing was booked or sent; the audit log says what would have been.")
        )  # fmt: skip
    elif new:
        outcome = "planned" if dry_run else "done"
        kinds = ("agenda", "recap", "invite", "update", "ended", "handover")
        counts = {
            "booked": report.count("book", outcome),
            "mails": sum(report.count(k, outcome) for k in kinds),
        }
        total = (
            _("Would: %(booked)s booked, %(mails)s mails.")
            if dry_run
            else _("Did: %(booked)s booked, %(mails)s mails.")
        )
        echo(total % counts)  # fmt: skip
    else:
        echo(_("Nothing new to book or send: every due action is already done."))
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
