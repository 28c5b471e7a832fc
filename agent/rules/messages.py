"""Agenda, recap and invitation content from Jinja2 templates.

HTML templates are autoescaped, so calendar and plan text can't inject markup; the
text templates are not (they are plain text). Templates can be overridden from the
folder named by ``templates:`` in the config; the settings read them once into a
:class:`~agent.core.templates.Templates` value, so rendering reads no file.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from agent.core import titles
from agent.core.model import Person, Relationship
from agent.core.plan import Plan
from agent.core.templates import Templates
from agent.formats import plain
from agent.rules import replies

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
def environments(templates: Templates) -> tuple[jinja2.Environment, jinja2.Environment]:
    """The HTML (autoescaped) and text environments over ``templates``."""
    loader = jinja2.DictLoader(templates.sources)
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
        line = f"{a:%a} {a.day} {a:%b %Y, %H:%M}–{b:%H:%M} {a.tzname()} ({p.timezone})"
        if line not in lines:
            lines.append(line)
    return lines


def invested_line(hours: float) -> str:
    share = 100 * hours / WORK_HOURS_PER_YEAR
    return (
        f"Time in development conversations this year: {hours:.1f} h ({share:.2f} % of working "
        f"time; the practice suggests about {SUGGESTED_HOURS:.0f} h, 0.34 %)."
    )


def _named(person: Person) -> Person:
    """The person with their name as plain text, for a title or a subject."""
    return replace(person, name=plain.display_name(person.name))


def render_title(template: str, rel: Relationship, stage: str | None) -> str:
    """Render a series' title template (``core.titles``, the environment ``cadence
    check`` renders with) into one line of plain text (``plain.plain``): names and the
    template itself may hold markup or control characters."""
    named = replace(rel, employee=_named(rel.employee), partner=_named(rel.partner))
    return plain.plain(titles.render_title(template, named, stage))


def what(rel: Relationship, series: str, stage: str | None) -> str:
    """What a meeting is, in a subject: "Development Align", "Mentoring", ..."""
    if stage:
        return f"Development {stage.title()}"
    if series == "check_in":
        return "Development check-in"
    if rel.role == "mentor":
        return "Mentoring"
    return series.replace("_", " ").capitalize()


def subject(kind: str, rel: Relationship, series: str, stage: str | None, start: datetime) -> str:
    """``Agenda: Development Align with Ben, Tue 24 Nov 10:00`` (the employee's time), as
    one line of plain text (``plain.plain``): the name holds no markup or controls."""
    label = LABELS[kind]
    partner = plain.first_name(rel.partner.name, rel.partner.email)
    text = f"{label}: {what(rel, series, stage)} with {partner}"
    if kind != "pick":
        local = start.astimezone(rel.employee.zone)
        text += f", {local:%a} {local.day} {local:%b %H:%M}"
    return plain.plain(text)


LABELS = {
    "agenda": "Agenda",
    "recap": "Recap",
    "invitation": "Invitation",
    "pick": "Please pick a time",
    "update": "Recap updated",
}


def content_template(rel: Relationship, series: str, stage: str | None, first: bool) -> str:
    """The content block of an agenda or recap: topics and which parts of the plan to quote."""
    if stage in ("align", "advance", "amplify", "advocate"):
        return f"agenda/{stage}.j2"
    if series == "check_in":
        return "agenda/check_in.j2"
    if rel.role == "mentor":
        return "agenda/mentoring_first.j2" if first else "agenda/mentoring.j2"
    return "agenda/default.j2"


@dataclass(frozen=True)
class Update:
    """What a reply to a recap changed, for the updated recap sent as the paper trail."""

    sender: str
    received: str
    items: tuple[replies.Item, ...] = ()
    notes: str = ""


def render(
    kind: str,
    rel: Relationship,
    series: str,
    stage: str | None,
    start: datetime,
    end: datetime,
    *,
    plan: Plan | None = None,
    actions: replies.Actions | None = None,
    invested_hours: float = 0.0,
    next_meeting: str = "",
    reason: str = "",
    proposals: tuple[str, ...] = (),
    pick_links: tuple[str, ...] = (),
    templates: Templates,
    first: bool = False,
    language: str = "en",
    update: Update | None = None,
    since: datetime | None = None,
) -> Content:
    """Render an ``agenda``, ``recap``, ``invitation`` or ``pick`` mail for one meeting.

    ``templates`` are those the settings loaded (``Settings.templates``); ``actions`` are
    the plan's action items merged with those recorded from replies (the plan's alone
    when None); ``first`` says this is the series' first meeting;
    ``update`` turns a recap into the updated recap that follows a reply; ``since`` (the
    previous meeting) bounds the actions an agenda shows as completed since then.
    """
    html_env, text_env = environments(templates)
    series_title = render_title(rel.program.get(series).title, rel, stage)
    title = subject("update" if update else kind, rel, series, stage, start)
    if actions is None:
        actions = replies.merge(plan, ())
    share = 100 * invested_hours / WORK_HOURS_PER_YEAR
    context = {
        "subject": title,
        "language": language,
        "employee": rel.employee,
        "partner": rel.partner,
        "role": rel.role,
        "series": series,
        "series_title": series_title,
        "what": what(rel, series, stage),
        "stage": stage,
        "first": first,
        "when": when_lines(start, end, (rel.employee, rel.partner)),
        "meeting_day": start.astimezone(rel.employee.zone).date(),
        "plan": plan,
        "actions": actions.open,
        "done": actions.done,
        "recent": tuple(
            a
            for a in actions.done
            if a.source == "reply" and (since is None or (a.changed or "") >= _iso(since))
        ),
        "invested": invested_line(invested_hours),
        "invested_hours": invested_hours,
        "invested_share": share,
        "invested_bar": min(100, round(100 * invested_hours / SUGGESTED_HOURS)),
        "next_meeting": next_meeting or "to be booked by Cadence",
        "reason": reason,
        "proposals": proposals,
        "pick_links": pick_links,
        "update": update,
        "content_template": content_template(rel, series, stage, first),
    }
    html = html_env.get_template(f"{kind}.html.j2").render(context)
    text = text_env.get_template(f"{kind}.txt.j2").render(context)
    return Content(subject=title, text=text, html=html)


def render_page(kind: str, subject: str, templates: Templates, **context: object) -> Content:
    """Render a mail about people rather than a meeting (a hand-over, an ended line)."""
    html_env, text_env = environments(templates)
    context = {"subject": subject, "language": "en", **context}
    html = html_env.get_template(f"{kind}.html.j2").render(context)
    text = text_env.get_template(f"{kind}.txt.j2").render(context)
    return Content(subject=subject, text=text, html=html)


def _iso(dt: datetime) -> str:
    """The store's timestamp form, so recorded ``changed`` values compare as text."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def year_hours(durations: list[timedelta]) -> float:
    return sum(d.total_seconds() for d in durations) / 3600
