"""Read the templates once: the package's, overlaid by the user's ``templates:`` folder.

A file in the folder replaces the package's template of the same relative name (say
``agenda/align.j2``) and may add templates that the replacements include; every other
template still comes from the package.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path

from agent.core.templates import Templates

PACKAGE = "agent"
FOLDER = "templates"


def load(folder: Path | None = None) -> Templates:
    """Return the package's templates overlaid by those in ``folder``.

    A missing folder adds nothing (the config check warns about it). Raise ValueError
    naming the file when a template in the folder is not UTF-8 text.
    """
    if folder is None or not folder.is_dir():
        return packaged()
    sources = dict(packaged().sources)
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if not path.is_file() or any(part.startswith(".") for part in name.split("/")):
            continue  # editors' and systems' hidden files are no templates
        try:
            sources[name] = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"template {path} is not UTF-8 text: {exc.reason}") from None
    return Templates(sources)


@functools.cache
def packaged() -> Templates:
    """Return the templates shipped in the package, read once per process."""
    root = files(PACKAGE).joinpath(FOLDER)
    return Templates({name: item.read_bytes().decode("utf-8") for name, item in _walk(root, "")})


def _walk(folder: Traversable, prefix: str) -> Iterator[tuple[str, Traversable]]:
    for item in folder.iterdir():
        if item.is_dir():
            yield from _walk(item, f"{prefix}{item.name}/")
        elif item.is_file() and not item.name.startswith("."):
            yield f"{prefix}{item.name}", item
