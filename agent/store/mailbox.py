"""The languages read from people's mailbox settings (Microsoft 365), kept between ticks.

A person's language comes from the config, else the directory, else their mailbox's
settings; the mailbox is asked seldom (a language rarely changes), so what it said is
kept here with when it was read, in the ``meta`` table (``mailbox_language:EMAIL``), and
asked again only once that is old. ``cadence forget`` erases it with the rest. The ticks
and the web app lay these languages over the people who have none.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from agent.core.timestamps import from_store, to_store
from agent.settings.config import Settings
from agent.store.rows import among
from agent.store.sqlite import Store

PREFIX = "mailbox_language:"


@dataclass(frozen=True)
class Read:
    """What a mailbox said, and when: a shipped language or None (none set, or one
    Cadence has no catalogue for); ``ok`` is False when the settings could not be read."""

    language: str | None
    at: datetime
    ok: bool = True


class MailboxLanguages:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.db = store.db

    def all(self, emails: Sequence[str] | None = None) -> dict[str, Read]:
        """Every mailbox's language read so far (or these mailboxes'), by address."""
        if emails is not None:
            names = [PREFIX + e for e in emails]
            rows = self.db.query(*among("SELECT name, value FROM meta WHERE 1 = 1", "name", names))
        else:
            rows = self.db.query(
                "SELECT name, value FROM meta WHERE name LIKE ? ESCAPE '\\'",
                [PREFIX.replace("_", "\\_") + "%"],
            )
        out = {}
        for row in rows:
            try:
                data = json.loads(row["value"])
                read = Read(data.get("language"), from_store(data["at"]), bool(data.get("ok")))
            except (ValueError, KeyError, TypeError):
                continue  # an unreadable row: the mailbox is asked again
            out[row["name"][len(PREFIX) :]] = read
        return out

    def put(self, email: str, read: Read) -> None:
        value = json.dumps({"language": read.language, "at": to_store(read.at), "ok": read.ok})
        with self.store.atomic():
            self.db.table("meta").upsert({"name": PREFIX + email, "value": value})


def with_languages(settings: Settings, reads: Mapping[str, Read]) -> Settings:
    """``settings`` with the mailboxes' languages given to the people who have none."""
    return relanguaged(
        settings,
        {
            email: reads[email].language
            for email, p in settings.people.items()
            if p.language is None and email in reads and reads[email].language
        },
    )


def relanguaged(settings: Settings, languages: Mapping[str, str | None]) -> Settings:
    """``settings`` with these people's languages set as given."""
    people = {
        email: dataclasses.replace(p, language=languages[email])
        for email, p in settings.people.items()
        if email in languages and p.language != languages[email]
    }
    if not people:
        return settings
    merged = {**settings.people, **people}
    relationships = tuple(
        dataclasses.replace(r, employee=merged[r.employee.email], partner=merged[r.partner.email])
        if r.employee.email in people or r.partner.email in people
        else r
        for r in settings.relationships
    )
    return dataclasses.replace(settings, people=merged, relationships=relationships)
