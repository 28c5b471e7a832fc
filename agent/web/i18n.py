"""The pages in the reader's language: which language a request is answered in, and a
Jinja2 environment per language with its catalogue and its date filters.

A signed-in person reads the pages in the language of their mail (their ``language:``,
the directory's, their program's, else the global one); a visitor who has not signed in
(the sign-in page, a pick-a-time link) in the first shipped language their browser asks
for (``Accept-Language``, negotiated by Babel), else the global language. The pages use
the same catalogues as the mails (``agent/locale``), so one ``make messages`` and one
catalogue check cover both.

Dates and times are drawn as the mails draw them (:mod:`agent.core.locales`), in the
reader's time zone: ``Mo., 7. Dez. 2026, 14:00 MEZ``.
"""

from __future__ import annotations

import functools
import gettext
import threading
from datetime import date, datetime, tzinfo
from pathlib import Path
from typing import Any

from babel.core import LOCALE_ALIASES, negotiate_locale
from jinja2 import Environment, FileSystemLoader, select_autoescape

from agent.core import locales
from agent.core.templates import Templates
from agent.core.timestamps import from_store
from agent.rules.messages import N_, Gettext

#: Babel's aliases, with the one Portuguese catalogue Cadence ships
ALIASES = {**LOCALE_ALIASES, "pt": "pt_BR"}


def accepted(header: str) -> list[str]:
    """The languages of an ``Accept-Language`` header, most wanted first (``q=0`` and
    ``*`` left out), as Babel spells locales (``de_DE``)."""
    ranked: list[tuple[float, int, str]] = []
    for n, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip()
        if not tag or tag == "*" or len(tag) > 35:
            continue
        weight = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        if weight > 0:
            ranked.append((-weight, n, tag.replace("-", "_")))
    return [tag for _, _, tag in sorted(ranked)]


def negotiate(header: str | None) -> str | None:
    """The shipped language a browser's ``Accept-Language`` asks for, or None."""
    wanted = accepted(header or "")[:20]
    if not wanted:
        return None
    found = negotiate_locale(wanted, list(locales.SHIPPED), aliases=ALIASES)
    if found is not None:
        return found
    # a region Babel cannot alias (pt-PT): the nearest catalogue, as for config codes
    return next((n for n in map(locales.normalize, wanted) if n), None)


def _local(value: datetime | date, zone: tzinfo | None) -> datetime | date:
    if isinstance(value, datetime) and zone is not None:
        return value.astimezone(zone)
    return value


def moment(
    value: datetime | str | None, zone: tzinfo | None, *, language: str, _: Gettext = N_
) -> str:
    """``Mon 7 Dec 2026, 14:00 CET``; ``Mo., 7. Dez. 2026, 14:00 MEZ`` (a store
    timestamp is read first)."""
    if not value:
        return "—"
    dt = from_store(value) if isinstance(value, str) else value
    local = dt.astimezone(zone) if zone is not None else dt
    return _("%(date)s, %(time)s %(zone)s") % {
        "date": locales.full_day(local, language),
        "time": locales.clock(local, language),
        "zone": locales.zone_name(local, language),
    }


def day(value: datetime | date | None, zone: tzinfo | None = None, *, language: str) -> str:
    """``Mon 7 Dec 2026``; ``Mo., 7. Dez. 2026``."""
    if not value:
        return "—"
    return locales.full_day(_local(value, zone), language)


def span(start: datetime, end: datetime, *, language: str, _: Gettext = N_) -> str:
    """``Mon 7 Dec 2026, 14:00–15:00 CET`` (both already in the reader's zone)."""
    return _("%(date)s, %(start)s–%(end)s %(zone)s") % {
        "date": locales.full_day(start, language),
        "start": locales.clock(start, language),
        "end": locales.clock(end, language),
        "zone": locales.zone_name(start, language),
    }


class Environments:
    """One Jinja2 environment per language over the web templates, made when first
    asked for (the pages run in a thread pool, so making one is guarded)."""

    def __init__(self, folder: Path, templates: Templates) -> None:
        self.folder = folder
        self.templates = templates
        self._envs: dict[str, Environment] = {}
        self._lock = threading.Lock()

    def get(self, language: str) -> Environment:
        env = self._envs.get(language)
        if env is not None:
            return env
        with self._lock:
            if language not in self._envs:
                self._envs[language] = self._make(language)
            return self._envs[language]

    def translations(self, language: str) -> gettext.NullTranslations:
        return self.templates.translations(language)

    def _make(self, language: str) -> Environment:
        env = Environment(
            loader=FileSystemLoader(self.folder),
            autoescape=select_autoescape(["j2", "html"]),
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=["jinja2.ext.i18n"],
        )
        translations = self.translations(language)
        env.install_gettext_translations(  # type: ignore[attr-defined]
            translations, newstyle=True
        )
        _ = translations.gettext
        filters: dict[str, Any] = {
            "moment": functools.partial(moment, language=language, _=_),
            "day": functools.partial(day, language=language),
            "span": functools.partial(span, language=language, _=_),
            "number": functools.partial(_number, language=language),
        }
        env.filters.update(filters)
        return env


def _number(value: float, digits: int = 0, *, language: str) -> str:
    return locales.number(value, language, digits)
