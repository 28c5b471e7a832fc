"""Agenda, recap and invitation content from Jinja2 templates, in the reader's language.

HTML templates are autoescaped, so calendar and plan text can't inject markup; the
text templates are not (they are plain text). Templates can be overridden from the
folder named by ``templates:`` in the config, for every language or for one
(``de/agenda.html.j2``); the settings read them and the message catalogues once into a
:class:`~agent.core.templates.Templates` value, so rendering reads no file.

Every sentence a person reads goes through the catalogue (``_()`` in the templates and
here); dates, times, zones and numbers are formatted for the language
(:mod:`agent.core.locales`). The stage names (Align, Advance, Amplify, Advocate) are the
practice's own terms: they are catalogue messages with the context ``stage``, and every
shipped catalogue keeps them as they are (docs/CONTENT.md).
"""

from __future__ import annotations

import functools
import gettext
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import jinja2
from jinja2.sandbox import SandboxedEnvironment

from agent.core import locales, titles
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


def N_(message: str) -> str:
    """Mark ``message`` for the catalogue (``make messages``); it is translated where used."""
    return message


@functools.lru_cache(maxsize=32)
def environments(
    templates: Templates, language: str = locales.SOURCE
) -> tuple[jinja2.Environment, jinja2.Environment]:
    """The HTML (autoescaped) and text environments over ``templates`` in ``language``:
    its own templates laid over the common ones, its catalogue behind ``_()``, and the
    ``number``, ``hours`` and ``day`` filters formatting for it."""
    loader = jinja2.DictLoader(templates.for_language(language))
    envs = []
    for autoescape in (True, False):
        env = SandboxedEnvironment(
            loader=loader,
            autoescape=autoescape,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            extensions=["jinja2.ext.i18n"],
        )
        env.install_gettext_translations(  # type: ignore[attr-defined]
            templates.translations(language), newstyle=True
        )
        env.filters["number"] = functools.partial(_number, language=language)
        env.filters["hours"] = functools.partial(_hours, language=language)
        env.filters["day"] = functools.partial(locales.full_day, language=language)
        envs.append(env)
    return envs[0], envs[1]


def _number(value: float, digits: int = 1, *, language: str) -> str:
    return locales.number(value, language, digits)


def _hours(value: float, *, language: str) -> str:
    return locales.hours(value, language)


def translator(templates: Templates | None, language: str) -> gettext.NullTranslations:
    """The catalogue for the Python-side sentences (subjects, lines) of ``language``."""
    return templates.translations(language) if templates else gettext.NullTranslations()


Gettext = Callable[[str], str]


def when_lines(
    start: datetime,
    end: datetime,
    people: tuple[Person, ...],
    language: str = locales.SOURCE,
    _: Gettext = N_,
) -> list[str]:
    """The meeting's time in each person's own zone, once per distinct zone."""
    lines: list[str] = []
    for p in people:
        a, b = start.astimezone(p.zone), end.astimezone(p.zone)
        line = _("%(date)s, %(start)s–%(end)s %(zone)s (%(place)s)") % {
            "date": locales.full_day(a, language),
            "start": locales.clock(a, language),
            "end": locales.clock(b, language),
            "zone": locales.zone_name(a, language),
            "place": p.timezone,
        }
        if line not in lines:
            lines.append(line)
    return lines


def invested_line(hours: float, language: str = locales.SOURCE, _: Gettext = N_) -> str:
    share = 100 * hours / WORK_HOURS_PER_YEAR
    return _(
        "Time in development conversations this year: %(hours)s h (%(share)s %% of working "
        "time; the practice suggests about %(suggested)s h, %(practice)s %%)."
    ) % {
        "hours": locales.number(hours, language, 1),
        "share": locales.number(share, language, 2),
        "suggested": locales.number(SUGGESTED_HOURS, language, 0),
        "practice": locales.number(0.34, language, 2),
    }


def _named(person: Person) -> Person:
    """The person with their name as plain text, for a title or a subject."""
    return replace(person, name=plain.display_name(person.name))


def render_title(
    template: str,
    rel: Relationship,
    stage: str | None,
    series: str = "",
    templates: Templates | None = None,
    language: str = locales.SOURCE,
) -> str:
    """Render a series' title template (``core.titles``, the environment ``cadence
    check`` renders with) into one line of plain text (``plain.plain``): names and the
    template itself may hold markup or control characters. ``what`` in the template is
    the meeting as ``language``'s catalogue names it."""
    named = replace(rel, employee=_named(rel.employee), partner=_named(rel.partner))
    meeting = what(rel, series, stage, translator(templates, language)) if series else ""
    text = titles.render_title(template, named, stage, meeting, locales.tag(language))
    return plain.plain(text)


def event_title(
    rel: Relationship,
    series: str,
    stage: str | None,
    templates: Templates | None,
    default: str = locales.SOURCE,
) -> str:
    """The title of a meeting's calendar event: the series' template in the organizer's
    language (the invitation is theirs), ``default`` being the global ``language:``."""
    language = rel.organizer_language(default)
    return render_title(rel.program.get(series).title, rel, stage, series, templates, language)


def stage_name(stage: str, translations: gettext.NullTranslations | None = None) -> str:
    """A stage as the catalogue names it (the shipped ones keep the practice's terms)."""
    name = stage.title()
    return translations.pgettext("stage", name) if translations else name


def what(
    rel: Relationship,
    series: str,
    stage: str | None,
    translations: gettext.NullTranslations | None = None,
) -> str:
    """What a meeting is, in a subject: "Development Align", "Mentoring", ..."""
    _ = translations.gettext if translations else N_
    if stage:
        return _("Development %(stage)s") % {"stage": stage_name(stage, translations)}
    if series == "check_in":
        return _("Development check-in")
    if rel.role == "mentor":
        return _("Mentoring")
    return series.replace("_", " ").capitalize()


def subject(
    kind: str,
    rel: Relationship,
    series: str,
    stage: str | None,
    start: datetime,
    language: str = locales.SOURCE,
    translations: gettext.NullTranslations | None = None,
) -> str:
    """``Agenda: Development Align with Ben, Tue 24 Nov 10:00`` (the employee's time), as
    one line of plain text (``plain.plain``): the name holds no markup or controls."""
    _ = translations.gettext if translations else N_
    partner = plain.first_name(rel.partner.name, rel.partner.email)
    text = _("%(label)s: %(what)s with %(name)s") % {
        "label": _(LABELS[kind]),
        "what": what(rel, series, stage, translations),
        "name": partner,
    }
    if kind != "pick":
        local = start.astimezone(rel.employee.zone)
        text += _(", %(day)s %(time)s") % {
            "day": locales.day_month(local, language),
            "time": locales.clock(local, language),
        }
    return plain.plain(text)


#: how the packet names a partner's role
ROLES = (N_("leader"), N_("mentor"), N_("peer"))

LABELS = {
    "agenda": N_("Agenda"),
    "recap": N_("Recap"),
    "invitation": N_("Invitation"),
    "pick": N_("Please pick a time"),
    "update": N_("Recap updated"),
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
    html_env, text_env = environments(templates, language)
    tr = templates.translations(language)
    series_title = event_title(rel, series, stage, templates, language)
    title = subject("update" if update else kind, rel, series, stage, start, language, tr)
    if actions is None:
        actions = replies.merge(plan, ())
    share = 100 * invested_hours / WORK_HOURS_PER_YEAR
    context = {
        "subject": title,
        "language": locales.tag(language),
        "employee": rel.employee,
        "partner": rel.partner,
        "role": rel.role,
        "series": series,
        "series_title": series_title,
        "what": what(rel, series, stage, tr),
        "stage": stage,
        "first": first,
        "when": when_lines(start, end, (rel.employee, rel.partner), language, tr.gettext),
        "meeting_day": start.astimezone(rel.employee.zone).date(),
        "plan": plan,
        "actions": actions.open,
        "done": actions.done,
        "recent": tuple(
            a
            for a in actions.done
            if a.source == "reply" and (since is None or (a.changed or "") >= _iso(since))
        ),
        "invested": invested_line(invested_hours, language, tr.gettext),
        "invested_hours": invested_hours,
        "invested_share": share,
        "invested_bar": min(100, round(100 * invested_hours / SUGGESTED_HOURS)),
        "next_meeting": next_meeting or tr.gettext("to be booked by Cadence"),
        "reason": reason,
        "proposals": proposals,
        "pick_links": pick_links,
        "update": update,
        "content_template": content_template(rel, series, stage, first),
    }
    html = html_env.get_template(f"{kind}.html.j2").render(context)
    text = text_env.get_template(f"{kind}.txt.j2").render(context)
    return Content(subject=title, text=text, html=html)


def render_page(
    kind: str,
    subject: str,
    templates: Templates,
    language: str = locales.SOURCE,
    **context: object,
) -> Content:
    """Render a mail about people rather than a meeting (a hand-over, an ended line)."""
    html_env, text_env = environments(templates, language)
    context = {"subject": subject, **context, "language": locales.tag(language)}
    html = html_env.get_template(f"{kind}.html.j2").render(context)
    text = text_env.get_template(f"{kind}.txt.j2").render(context)
    return Content(subject=subject, text=text, html=html)


def _iso(dt: datetime) -> str:
    """The store's timestamp form, so recorded ``changed`` values compare as text."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def year_hours(durations: list[timedelta]) -> float:
    return sum(d.total_seconds() for d in durations) / 3600
