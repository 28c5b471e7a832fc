"""The configured settings, with the people and reporting lines the directory adds.

The YAML is resolved once (``config.load``); the directory changes while the service
runs, so each tick lays the stored directory over it. What the YAML says about a person
wins over the directory, and a relationship written in YAML is kept as written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable, Mapping
from pathlib import Path

from agent.core import locales
from agent.core.directory import Directory, Entry, Line
from agent.core.model import Person, Relationship, WorkingHours
from agent.settings.config import Settings, reply_accounts


def person(d: Directory, e: Entry) -> Person:
    """A person the YAML does not list, as the directory describes them; their plan is
    ``EMAIL.yaml`` in ``directory.plans``, once someone writes it."""
    plan = Path(d.plans) / f"{e.email}.yaml" if d.plans else None
    return Person(
        email=e.email,
        name=e.name or e.email.split("@")[0],
        timezone=e.timezone or d.timezone,
        working_hours=d.working_hours or WorkingHours({}),
        country=e.country or d.country,
        account=d.account,
        provided=d.provided - ({"timezone"} if e.timezone else set()),
        plan=str(plan) if plan is not None and plan.is_file() else None,
        language=locales.normalize(e.language),
    )


def merge(
    settings: Settings,
    entries: Mapping[str, Entry],
    lines: Iterable[Line],
    *,
    ended: bool = False,
    left: Collection[str] = (),
) -> Settings:
    """``settings`` with the directory's people, its open lines and its mentoring and
    peer pairs as relationships. With ``ended``, the lines that ended too (a person's
    history, under every leader). ``left`` are people who have left: still known, for
    what their ended lines need, but in no new relationship."""
    d = settings.directory
    if d is None or d.program not in settings.programs:
        return settings
    program = settings.programs[d.program]
    people = dict(settings.people)
    for email, e in entries.items():
        known = people.setdefault(email, person(d, e))
        if known.language is None and locales.normalize(e.language):
            # a language the YAML leaves out comes from the directory
            people[email] = dataclasses.replace(known, language=locales.normalize(e.language))
    relationships = list(settings.relationships)
    pairs = {(r.employee.email, r.partner.email) for r in relationships}
    for line in lines:
        if (line.until is not None and not ended) or (line.employee, line.leader) in pairs:
            continue
        if line.employee not in people or line.leader not in people:
            continue
        pairs.add((line.employee, line.leader))
        relationships.append(
            Relationship(
                people[line.employee],
                people[line.leader],
                d.role,
                program,
                first_due=line.since + d.first_within,
            )
        )
    for pair in d.pairs:
        if (pair.employee, pair.partner) in pairs:
            continue
        if not {pair.employee, pair.partner} <= people.keys() - set(left):
            continue  # not (or no longer) in the directory
        pairs.add((pair.employee, pair.partner))
        relationships.append(
            Relationship(
                people[pair.employee],
                people[pair.partner],
                pair.role,
                settings.programs[pair.program],
            )
        )
    return dataclasses.replace(
        settings,
        people=people,
        relationships=tuple(relationships),
        reply_accounts=reply_accounts(relationships),
    )
