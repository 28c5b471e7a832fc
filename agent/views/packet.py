"""The review packet: a year's development record as a self-assessment (Markdown or HTML).

It reads only the store and the plan: meetings held by stage and series, goals and
milestones with their progress, actions completed and open, feedback captured from
replies to recaps, and the time invested against the practice's 0.34 %.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from agent.core import locales
from agent.core.errors import CadenceError, ConfigError
from agent.core.model import Person
from agent.core.templates import Templates
from agent.core.timestamps import from_store
from agent.rules import messages, replies
from agent.settings import idp as idp
from agent.settings import templates as template_files
from agent.settings.config import Settings
from agent.store.plans import PlanRows
from agent.store.sqlite import Store
from agent.tick.plans import plan_path, recorded_actions
from agent.views.people import laid


@dataclass(frozen=True)
class HeldMeeting:
    day: date
    what: str
    partner: str
    role: str
    series: str
    stage: str | None
    hours: float


@dataclass(frozen=True)
class Feedback:
    day: date
    sender: str
    text: str


@dataclass(frozen=True)
class Packet:
    person: Person
    since: date
    until: date
    plan: idp.Plan | None
    plan_problem: str | None
    meetings: tuple[HeldMeeting, ...]
    by_series: dict[str, int]
    by_stage: dict[str, int]
    completed: tuple[replies.Action, ...]
    open: tuple[replies.Action, ...]
    feedback: tuple[Feedback, ...]
    hours: float
    share: float
    suggested: float = messages.SUGGESTED_HOURS
    extra: dict[str, Any] = field(default_factory=dict)
    #: the person's language (``Relationship.language``), for the words and the numbers
    language: str = locales.SOURCE

    @property
    def tag(self) -> str:
        return locales.tag(self.language)


def collect(settings: Settings, store: Store, email: str, since: date, now: datetime) -> Packet:
    """Assemble the packet of ``email`` from ``since`` up to ``now``; raise ConfigError
    for a person who is not configured."""
    settings = laid(settings, store, ended=True)
    person = settings.people.get(email.lower())
    if person is None:
        raise ConfigError(f"{email} is not among the people in {settings.path}")
    plan: idp.Plan | None = None
    problem: str | None = None
    path = plan_path(settings, person)
    stored = PlanRows(store).get(person.email)
    if stored is not None:  # the plan kept in the store wins over the file
        plan = stored.plan
    elif path:
        try:
            plan = idp.load(path)
        except CadenceError as exc:
            problem = str(exc)
    rels = {r.id: r for r in settings.relationships if r.employee.email == person.email}
    language = next(
        (r.language(settings.language) for r in rels.values()),
        person.language or settings.language,
    )
    tr = messages.translator(settings.templates, language)
    held: list[HeldMeeting] = []
    for row in store.meetings():
        rel = rels.get(row["relationship"])
        if rel is None or row["status"] != "held":
            continue
        start, end = from_store(row["start"]), from_store(row["end"])
        day = start.astimezone(person.zone).date()
        if day < since or start > now:
            continue
        held.append(
            HeldMeeting(
                day=day,
                what=messages.what(rel, row["series"], row["stage"], tr),
                partner=rel.partner.name,
                role=rel.role,
                series=row["series"].replace("_", " "),
                stage=row["stage"],
                hours=(end - start).total_seconds() / 3600,
            )
        )
    held.sort(key=lambda m: m.day)
    actions = replies.merge(plan, recorded_actions(store, person.email))
    done_at = {
        idp.normalize(r["title"]): r["done_at"] for r in store.actions(person.email) if r["done_at"]
    }
    completed = tuple(
        a
        for a in actions.done
        if idp.normalize(a.title) not in done_at
        or from_store(done_at[idp.normalize(a.title)]).astimezone(person.zone).date() >= since
    )
    feedback = []
    for row in store.replies(employee=person.email, status="recorded"):
        when = from_store(row["received_at"]).astimezone(person.zone).date()
        if row["notes"] and since <= when:
            sender = settings.people.get(row["sender"])
            feedback.append(Feedback(when, sender.name if sender else row["sender"], row["notes"]))
    hours = sum(m.hours for m in held)
    days = max(1, (now.astimezone(person.zone).date() - since).days)
    return Packet(
        person=person,
        since=since,
        until=now.astimezone(person.zone).date(),
        plan=plan,
        plan_problem=problem,
        meetings=tuple(held),
        by_series=dict(
            Counter(
                tr.gettext("%(what)s with %(name)s") % {"what": m.what, "name": m.partner}
                for m in held
                if not m.stage
            )
        ),
        by_stage=dict(Counter(messages.stage_name(m.stage, tr) for m in held if m.stage)),
        completed=completed,
        open=actions.open,
        feedback=tuple(feedback),
        hours=hours,
        # the share of working time over the period, scaled to a year's working hours
        share=100 * hours / (messages.WORK_HOURS_PER_YEAR * days / 365),
        language=language,
    )


def render(packet: Packet, fmt: str, templates: Templates | None = None) -> str:
    """Render the packet as ``md`` or ``html``, with the package's templates when
    ``templates`` (``Settings.templates``) is None."""
    if fmt not in ("md", "html"):
        raise ConfigError(f"--format: choose md or html, not {fmt!r}")
    html_env, text_env = messages.environments(
        templates or template_files.packaged(), packet.language
    )
    env = html_env if fmt == "html" else text_env
    return env.get_template(f"packet.{fmt}.j2").render(p=packet, plan=packet.plan)
