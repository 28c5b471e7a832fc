"""Read the templates once: the package's, overlaid by the user's ``templates:`` folder,
and the message catalogues the package ships.

A file in the folder replaces the package's template of the same relative name (say
``agenda/align.j2``) and may add templates that the replacements include; every other
template still comes from the package. A file under a language's folder
(``de/agenda/align.j2``) replaces the template for mail in that language only.

The catalogues are gettext ``.po`` files under ``agent/locale`` (the ones translators
edit, kept in the repository), compiled with Babel when they are first read: nothing is
built at install time and a fresh checkout renders every language.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterator
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

from agent.core.locales import SHIPPED, SOURCE
from agent.core.templates import Templates

PACKAGE = "agent"
FOLDER = "templates"
LOCALES = "locale"
DOMAIN = "messages"


def load(folder: Path | None = None) -> Templates:
    """Return the package's templates overlaid by those in ``folder``.

    A missing folder adds nothing (the config check warns about it). Raise ValueError
    naming the file when a template in the folder is not UTF-8 text.
    """
    if folder is None or not folder.is_dir():
        return packaged()
    base = packaged()
    sources = dict(base.sources)
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if not path.is_file() or any(part.startswith(".") for part in name.split("/")):
            continue  # editors' and systems' hidden files are no templates
        try:
            sources[name] = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"template {path} is not UTF-8 text: {exc.reason}") from None
    return Templates(sources, base.catalogues)


@functools.cache
def packaged() -> Templates:
    """Return the templates and catalogues shipped in the package, read once per process."""
    root = files(PACKAGE).joinpath(FOLDER)
    sources = {name: item.read_bytes().decode("utf-8") for name, item in _walk(root, "")}
    return Templates(sources, catalogues())


def catalogues() -> dict[str, Translations]:
    """Compile the package's ``.po`` catalogues, one per shipped language but English."""
    out: dict[str, Translations] = {}
    for language in SHIPPED:
        if language == SOURCE:
            continue
        po = files(PACKAGE).joinpath(LOCALES, language, "LC_MESSAGES", f"{DOMAIN}.po")
        out[language] = compile_po(po.read_bytes(), language)
    return out


def compile_po(data: bytes, language: str) -> Translations:
    """Compile one ``.po`` file into gettext translations (fuzzy entries left out)."""
    catalog = read_po(io.BytesIO(data), locale=language, domain=DOMAIN)
    buffer = io.BytesIO()
    write_mo(buffer, catalog, use_fuzzy=False)
    buffer.seek(0)
    return Translations(buffer, domain=DOMAIN)


def _walk(folder: Traversable, prefix: str) -> Iterator[tuple[str, Traversable]]:
    for item in folder.iterdir():
        if item.is_dir():
            yield from _walk(item, f"{prefix}{item.name}/")
        elif item.is_file() and not item.name.startswith("."):
            yield f"{prefix}{item.name}", item
