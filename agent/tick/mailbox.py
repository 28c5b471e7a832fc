"""People's languages from their Microsoft 365 mailbox settings, read seldom.

When neither the config nor the directory names a person's language, their mailbox's
``language.locale`` (``GET /users/{id}/mailboxSettings``, the same answer the time zone
and working hours come from) decides, mapped to the nearest shipped catalogue. What a
mailbox said is kept in the store (:mod:`agent.store.mailbox`) and asked again after
:data:`FRESH`; a mailbox that could not be read is asked again after :data:`RETRY`,
its last language kept meanwhile.
Other providers have no such setting: their people keep the program's or the global
language.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from agent.connectors.base import MailboxSettings
from agent.core import locales
from agent.core.model import Person
from agent.store.mailbox import MailboxLanguages, Read, relanguaged, with_languages
from agent.store.sqlite import Store

#: how long a mailbox's language is kept before the mailbox is asked again
FRESH = timedelta(days=30)
#: how long after a failed read (no permission, an error) the mailbox is asked again
RETRY = timedelta(days=1)


def adopt(engine: Any, journal: Any, only: frozenset[str] | None = None) -> None:
    """Give ``engine``'s people who name no language their mailbox's, reading the
    mailboxes whose last read is old (each tick, before the sync); ``only``: these
    people alone (a worker's unit)."""
    settings = engine.settings
    if engine.configured.directory is None:
        # a long-lived engine's people still carry the mailbox's languages of the last
        # tick (with a directory, each tick lays its people afresh over the config)
        named = {email: p.language for email, p in engine.configured.people.items()}
        settings = relanguaged(settings, named)
    emails = {e for r in settings.relationships for e in (r.employee.email, r.partner.email)}
    if only is not None:
        emails &= only
    people = [settings.people[e] for e in sorted(emails)]
    calendar_of = lambda account: engine.connection(account)[0]  # noqa: E731
    reads = refresh(engine.store, people, calendar_of, journal.audit, journal.now, only is not None)
    engine.settings = with_languages(settings, reads)


def due(read: Read | None, now: datetime) -> bool:
    """Whether a mailbox's language is to be read (again) at ``now``."""
    return read is None or now - read.at >= (FRESH if read.ok else RETRY)


def refresh(
    store: Store,
    people: Sequence[Person],
    calendar_of: Callable[[str], Any],
    audit: Callable[[str, str], None],
    now: datetime,
    few: bool = False,
) -> dict[str, Read]:
    """Read the language of each person who has none whose mailbox says one and whose
    last read is old; return every read kept, by address (``few``: those of
    ``people``)."""
    rows = MailboxLanguages(store)
    reads = rows.all([p.email for p in people] if few else None)
    for person in people:
        if person.language is not None or not due(reads.get(person.email), now):
            continue
        try:
            calendar = calendar_of(person.account)
        except Exception:  # the sync step reports an account it cannot reach
            continue
        if not isinstance(calendar, MailboxSettings):
            continue
        try:
            code = calendar.mailbox_language(person)
        except Exception as exc:  # asked again after RETRY; what it said last meanwhile
            last = reads.get(person.email)
            read = Read(last.language if last else None, now, ok=False)
            audit("settings", f"{person.email}: mailbox language not read ({type(exc).__name__})")
        else:
            read = Read(locales.normalize(code), now)
            if read.language:
                said = f"language {locales.tag(read.language)} from the mailbox"
            else:
                said = (
                    f"the mailbox's language {code!r} has no catalogue"
                    if code
                    else "no language in the mailbox settings"
                )
            audit("settings", f"{person.email}: {said}")
        rows.put(person.email, read)
        reads[person.email] = read
    return reads


def adopt_zones(engine: Any, run: Any, only: frozenset[str] | None = None) -> None:
    """Take the time zone and working hours the config leaves out from providers that
    know them (Microsoft 365's mailbox settings), once per person and engine; ``only``:
    these people alone (a worker's unit, whose task plans nobody else)."""
    changed: dict[str, Person] = {}
    for person in engine.people():
        if not person.provided or (only is not None and person.email not in only):
            continue
        if person.email not in engine._adopted:
            if person.email in engine._asked:
                continue  # asked and not told: config defaults, until the next engine
            engine._asked.add(person.email)
            try:
                calendar, _ = engine.connection(person.account)
                if not isinstance(calendar, MailboxSettings):
                    continue
                engine._adopted[person.email] = calendar.mailbox_settings(person)
            except Exception as exc:  # the sync step reports an unusable account
                run.audit(
                    "settings",
                    f"{person.email}: mailbox settings not read ({type(exc).__name__}); "
                    "config defaults kept",
                )
                continue
            run.audit(
                "settings",
                f"{person.email}: {', '.join(sorted(person.provided))} from the mailbox "
                f"({engine._adopted[person.email][0]})",
            )
        zone, hours = engine._adopted[person.email]
        changed[person.email] = dataclasses.replace(
            person,
            timezone=zone if "timezone" in person.provided else person.timezone,
            working_hours=hours if "working_hours" in person.provided else person.working_hours,
            provided=frozenset(),  # known now: a later engine on these settings asks no more
        )
    if changed:
        people = {**engine.settings.people, **changed}
        relationships = tuple(
            dataclasses.replace(
                r, employee=people[r.employee.email], partner=people[r.partner.email]
            )
            for r in engine.settings.relationships
        )
        engine.settings = dataclasses.replace(
            engine.settings, people=people, relationships=relationships
        )
