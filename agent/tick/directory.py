"""The directory sync: read the source, compare with the last read, guard, apply.

Applying a read only changes the store (people, lines); the tick that follows books the
joiners' first meetings and plans what ended lines need (``rules.handover``). A read the
guard holds changes nothing until a person confirms it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from agent.connectors import directory as sources
from agent.core.directory import Entry
from agent.core.errors import CadenceError, ConfigError
from agent.rules import directory as rules
from agent.settings.config import Settings
from agent.store.directory import DirectoryRows
from agent.store.sqlite import Store

log = logging.getLogger("cadence.directory")


@dataclass
class Outcome:
    """What one directory sync found and did."""

    diff: rules.Diff
    #: why the read waits for a person to confirm it; None when it was within the limits
    held: str | None = None
    applied: bool = False
    #: people whose retention ran out, erased by this sync
    erased: list[str] = field(default_factory=list)
    #: entries the read skipped, with why
    skipped: list[str] = field(default_factory=list)
    requests: int = 0


def _usable(e: Entry, skipped: list[str]) -> Entry:
    """The entry with the fields Cadence cannot use dropped (and said so)."""
    if e.timezone:
        try:
            ZoneInfo(e.timezone)
        except (ValueError, KeyError):
            skipped.append(f"{e.email}: unknown time zone {e.timezone!r}; the default is used")
            e = Entry.of({**e.data(), "timezone": None})
    return e


def sync(
    settings: Settings,
    store: Store,
    now: datetime,
    *,
    apply: bool = True,
    confirm: bool = False,
    ctx: sources.DirectoryContext | None = None,
) -> Outcome:
    """Read the directory and, with ``apply``, store what changed (unless held)."""
    d = settings.directory
    if d is None:
        raise ConfigError("no directory: section in the config")
    rows = DirectoryRows(store)
    before = rows.entries()
    ctx = ctx or sources.DirectoryContext(base=Path(d.base), accounts=settings.accounts)
    ctx.known = before
    try:
        read = sources.read(d.source, ctx, rows.cursor())
    except CadenceError as exc:
        if apply:  # the tick's warnings and /healthz say so until a read goes through
            rows.record_read(now, 0, 0, "failed", str(exc))
        raise
    raw = read.entries if read.full else rules.merged(before, read.entries, read.removed)
    skipped: list[str] = []
    entries = [_usable(e, skipped) for e in raw if not rows.forgotten(e.email.lower())]
    after = rules.resolve(entries)
    diff = rules.diff(before, after)
    out = Outcome(diff, skipped=skipped, requests=read.requests)
    out.held = rules.held(diff, d.limits)
    if not apply:
        return out
    if out.held and not confirm:
        log.warning("directory read held: %s", out.held)
        rows.record_read(now, len(after), diff.size, "held", out.held, read.cursor)
        store.audit(None, now, "directory-held", out.held, data={"changes": diff.lines()[:50]})
        return out
    ending, starting = rules.lines_after(rows.lines(), diff, now)
    rows.apply(
        now,
        after,
        [e.email for e in diff.left],
        ending,
        starting,
        changes=diff.size,
        cursor=read.cursor,
    )
    out.applied = True
    for text in diff.lines():
        store.audit(None, now, "directory", text)
    for line in ending:
        store.audit(None, now, "line-ended", f"{line.id}: {line.reason}", relationship=line.id)
    for line in starting:
        store.audit(None, now, "line-started", f"{line.id}", relationship=line.id)
    for email in rows.gone_before(now - d.retention):
        counts = rows.forget(email, now)
        out.erased.append(email)
        store.audit(
            None, now, "erased", f"retention over: {sum(counts.values())} rows erased", data=counts
        )
    return out
