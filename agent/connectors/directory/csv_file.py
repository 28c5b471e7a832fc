"""An export of an HR system as CSV, with the columns named in the config.

Python's csv module reads it; a row that cannot be used (no address, a broken line) is
logged and skipped, never fatal, and a file that cannot be read at all is an error for
the read, which leaves the last read in place.
"""

from __future__ import annotations

import csv
import re
from typing import Any

from agent.connectors.directory import DirectoryContext, Read
from agent.core.directory import Entry
from agent.core.errors import PermanentError

_ADDRESS = re.compile(r"^[^@\s/\\]+@[^@\s/\\]+$")


def read(source: Any, ctx: DirectoryContext, cursor: str | None = None) -> Read:
    path = ctx.base / source.path
    cols = source.columns
    try:
        with path.open(encoding=source.encoding, newline="") as f:
            rows = list(csv.DictReader(f, delimiter=source.delimiter))
            header = set(rows[0].keys()) if rows else set()
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise PermanentError(f"directory file {path}: {exc}") from exc
    wanted = [c for c in (cols.email, cols.name, cols.manager) if c]
    if source.members:
        wanted.append(source.members.column)
    missing = [c for c in wanted if rows and c not in header]
    if missing:
        raise PermanentError(f"directory file {path}: no column {', '.join(map(repr, missing))}")
    values = {v.strip().lower() for v in source.members.values} if source.members else set()
    entries = []
    for n, row in enumerate(rows, start=2):

        def cell(column: str | None, row: dict[str, Any] = row) -> str | None:
            value = (row.get(column) or "").strip() if column else ""
            return value or None

        email = cell(cols.email)
        if not email or not _ADDRESS.match(email):
            ctx.log.warning("directory file %s, line %d: no usable email address; skipped", path, n)
            continue
        manager = cell(cols.manager)
        if manager and not _ADDRESS.match(manager):
            ctx.log.warning(
                "directory file %s, line %d: manager %r is not an address", path, n, manager
            )
            manager = None
        entries.append(
            Entry(
                email=email.lower(),
                name=cell(cols.name) or "",
                manager=manager.lower() if manager else None,
                member=(cell(source.members.column) or "").lower() in values
                if source.members
                else True,
                country=cell(cols.country),
                timezone=cell(cols.timezone),
                language=cell(cols.language),
            )
        )
    return Read(entries, full=True)
