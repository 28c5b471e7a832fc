"""The agenda, recap, invitation and packet templates, and the message catalogues, as a
value.

The settings layer reads the package's templates and catalogues and the user's
``templates:`` folder once, when it loads the configuration; the rules render from this
value, so rendering a mail reads no file.
"""

from __future__ import annotations

import gettext
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, eq=False)
class Templates:
    """Jinja2 template sources by name (``agenda.html.j2``, ``agenda/align.j2`` ...) and
    the compiled message catalogues by language (``de``, ``pt_BR`` ...).

    A source named ``LANG/NAME`` (``de/agenda.html.j2``) replaces ``NAME`` for mail in
    that language. Compared and hashed by identity, so that a renderer can keep one
    compiled environment per loaded value and language.
    """

    sources: Mapping[str, str]
    catalogues: Mapping[str, gettext.NullTranslations] = field(default_factory=dict)

    def translations(self, language: str) -> gettext.NullTranslations:
        """The catalogue of ``language``; English (the source language) and a language
        with no catalogue read the messages as written."""
        return self.catalogues.get(language) or gettext.NullTranslations()

    def for_language(self, language: str) -> dict[str, str]:
        """The sources with those written for ``language`` laid over the common ones."""
        prefix = f"{language}/"
        out = dict(self.sources)
        for name, text in self.sources.items():
            if name.startswith(prefix):
                out[name[len(prefix) :]] = text
        return out
