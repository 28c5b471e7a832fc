"""The languages Cadence writes in, and dates, times and numbers in each of them.

A person's language comes from their ``language:`` in the config, else the directory
(Entra ID ``preferredLanguage``, the Google Workspace user's language, an LDAP or CSV
column), else their program's ``language:``, else the global one. Codes are read
leniently (``de-DE``, ``pt-br``, ``ja_JP``) and mapped to the nearest shipped catalogue;
a language Cadence has no catalogue for gives None, so the next source decides.

English keeps the exact forms Cadence always wrote (``Mon 7 Dec 2026, 14:00``); every
other language is formatted by Babel from the CLDR (``Mo., 7. Dez. 2026, 14:00``).
"""

from __future__ import annotations

from datetime import date, datetime

from babel import Locale, UnknownLocaleError
from babel.dates import format_datetime, format_skeleton
from babel.numbers import format_decimal

#: the shipped catalogues; English is the source language of every message
SHIPPED = ("en", "de", "es", "fr", "pt_BR", "ja")
SOURCE = "en"


def normalize(code: str | None) -> str | None:
    """The shipped language nearest to ``code`` (``de-AT`` → ``de``, ``pt`` → ``pt_BR``),
    or None for an empty code or a language Cadence has no catalogue for."""
    if not code or not code.strip():
        return None
    text = code.strip().replace("-", "_")
    try:
        loc = Locale.parse(text)
    except (ValueError, UnknownLocaleError):
        return None
    if loc.language == "pt":
        return "pt_BR"  # the one Portuguese catalogue
    return loc.language if loc.language in SHIPPED else None


def tag(language: str) -> str:
    """The BCP 47 tag of a shipped language, for ``<html lang>`` and Content-Language."""
    return language.replace("_", "-")


def day_month(day: date | datetime, language: str) -> str:
    """``Tue 24 Nov`` in English, ``Di., 24. Nov.`` in German: a day in a subject line."""
    if language == SOURCE:
        return f"{day:%a} {day.day} {day:%b}"
    return format_skeleton("MMMEd", day, locale=language)


def full_day(day: date | datetime, language: str) -> str:
    """``Tue 24 Nov 2026`` in English, ``Di., 24. Nov. 2026`` in German."""
    if language == SOURCE:
        return f"{day:%a} {day.day} {day:%b %Y}"
    return format_skeleton("yMMMEd", day, locale=language)


def clock(dt: datetime, language: str) -> str:
    """``14:00``: every shipped language reads the 24-hour clock in Cadence's mails."""
    return f"{dt:%H:%M}"


def zone_name(dt: datetime, language: str) -> str:
    """The zone's short name as the language writes it (``MEZ``, ``CET``, ``JST``), else
    the zone database's abbreviation (``IST``), else an offset (``GMT-3``)."""
    own = dt.tzname() or ""
    if language == SOURCE:
        return own
    named = format_datetime(dt, "z", locale=language)
    if named[:1] not in "+-" and not named.startswith("GMT"):
        return named
    if own and own[:1] not in "+-":
        return own
    return format_datetime(dt, "O", locale=language)


def number(value: float, language: str, digits: int = 1) -> str:
    """``6.5`` in English, ``6,5`` in German, with ``digits`` decimals."""
    if language == SOURCE:
        return f"{value:.{digits}f}"
    pattern = "#,##0." + "0" * digits if digits else "#,##0"
    return format_decimal(value, format=pattern, locale=language)


def hours(value: float, language: str) -> str:
    """A meeting's length in hours, at most two significant digits (``0.25``, ``1``)."""
    if language == SOURCE:
        return f"{value:.2g}"
    return format_decimal(float(f"{value:.2g}"), format="#,##0.##", locale=language)
