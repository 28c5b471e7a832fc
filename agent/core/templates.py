"""The agenda, recap, invitation and packet templates as a value.

The settings layer reads the package's templates and the user's ``templates:`` folder
once, when it loads the configuration; the rules render from this value, so rendering
a mail reads no file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, eq=False)
class Templates:
    """Jinja2 template sources by name (``agenda.html.j2``, ``agenda/align.j2`` ...).

    Compared and hashed by identity, so that a renderer can keep one compiled
    environment per loaded value.
    """

    sources: Mapping[str, str]
