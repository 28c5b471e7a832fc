"""Agenda, recap and invitation content from Jinja2 templates.

HTML templates are autoescaped, so calendar and plan text can't inject markup; the
text templates are not (they are plain text). Templates can be overridden from the
folder named by ``templates:`` in the config.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from agent.model import Person, Relationship
from agent.plan import ActionItem, Plan

#: Working hours in a year (220 days × 8 h): the base of the 0.34 % figure.
WORK_HOURS_PER_YEAR = 1760.0
#: Four one-hour deep dives and eight 15-minute check-ins: about six hours a year.
SUGGESTED_HOURS = 6.0


@dataclass(frozen=True)
class Content:
    subject: str
    text: str
    html: str


@functools.lru_cache(maxsize=8)
def _environments(folder: str | None) -> tuple[jinja2.Environment, jinja2.Environment]:
    loaders: list[jinja2.BaseLoader] = []
    if folder:
        loaders.append(jinja2.FileSystemLoader(folder))
    loaders.append(jinja2.PackageLoader("agent", "templates"))
    loader = jinja2.ChoiceLoader(loaders)
    html = SandboxedEnvironment(
        loader=loader, autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True
    )
    text = SandboxedEnvironment(
        loader=loader, autoescape=False, undefined=jinja2.StrictUndefined, trim_blocks=True
    )
    return html, text


def when_lines(start: datetime, end: datetime, people: tuple[Person, ...]) -> list[str]:
    """The meeting's time in each person's own zone, once per distinct zone."""
    lines: list[str] = []
    for p in people:
        a, b = start.astimezone(p.zone), end.astimezone(p.zone)
        line = f"{a:%a %d %b %Y, %H:%M}–{b:%H:%M} {a.tzname()} ({p.timezone})"
        if line not in lines:
            lines.append(line)
    return lines


def invested_line(hours: float) -> str:
    share = 100 * hours / WORK_HOURS_PER_YEAR
    return (
        f"Time in development conversations this year: {hours:.1f} h ({share:.2f} % of working "
        f"time; the practice suggests about {SUGGESTED_HOURS:.0f} h, 0.34 %)."
    )


def render_title(template: str, rel: Relationship, stage: str | None) -> str:
    """Render a series' title template; the result is a single line."""
    env = _environments(None)[1]
    title = env.from_string(template).render(
        employee=rel.employee, partner=rel.partner, stage=stage or "", role=rel.role
    )
    return " ".join(title.split())


def _content_template(series: str, stage: str | None) -> str:
    if stage in ("align", "advance", "amplify", "advocate"):
        return f"agenda/{stage}.j2"
    if series == "check_in":
        return "agenda/check_in.j2"
    return "agenda/default.j2"


def render(
    kind: str,
    rel: Relationship,
    series: str,
    stage: str | None,
    start: datetime,
    end: datetime,
    *,
    plan: Plan | None = None,
    invested_hours: float = 0.0,
    next_meeting: str = "",
    reason: str = "",
    proposals: tuple[str, ...] = (),
    templates: Path | None = None,
) -> Content:
    """Render an ``agenda``, ``recap`` or ``invitation`` for one meeting."""
    html_env, text_env = _environments(str(templates) if templates else None)
    series_title = render_title(rel.program.get(series).title, rel, stage)
    local = start.astimezone(rel.employee.zone)
    label = {
        "agenda": "Agenda",
        "recap": "Recap",
        "invitation": "Invitation",
        "pick": "Please pick a time",
    }[kind]
    subject = f"{label}: {series_title}" + ("" if kind == "pick" else f", {local:%a %d %b %H:%M}")
    actions: list[ActionItem] = plan.open_actions if plan else []
    done: list[ActionItem] = [a for a in plan.actions if a.status == "done"] if plan else []
    context = {
        "subject": subject,
        "employee": rel.employee,
        "partner": rel.partner,
        "role": rel.role,
        "series": series,
        "series_title": series_title,
        "stage": stage,
        "when": when_lines(start, end, (rel.employee, rel.partner)),
        "plan": plan,
        "actions": actions,
        "done": done,
        "invested": invested_line(invested_hours),
        "next_meeting": next_meeting or "to be booked by Cadence",
        "reason": reason,
        "proposals": proposals,
        "content_template": _content_template(series, stage),
    }
    html = html_env.get_template(f"{kind}.html.j2").render(context)
    text = text_env.get_template(f"{kind}.txt.j2").render(context)
    return Content(subject=" ".join(subject.split()), text=text, html=html)


def year_hours(durations: list[timedelta]) -> float:
    return sum(d.total_seconds() for d in durations) / 3600
