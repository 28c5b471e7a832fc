"""Logging for people and for machines.

On a terminal: one readable line per record. Otherwise (a container, systemd, a pipe) or
with ``--log-format json``: one JSON object per line. Every record logged during a tick
carries the tick id, and records about one relationship carry it too: the engine sets
:data:`TICK` and passes ``extra={"relationship": ...}`` (or sets :data:`RELATIONSHIP`).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, Literal

TICK: ContextVar[int | None] = ContextVar("cadence_tick", default=None)
RELATIONSHIP: ContextVar[str | None] = ContextVar("cadence_relationship", default=None)

Format = Literal["auto", "text", "json"]
LEVELS = ("debug", "info", "warning", "error")

# attributes every LogRecord has; anything else was passed as ``extra=`` and is kept
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


@contextmanager
def tick_context(tick: int | None) -> Iterator[None]:
    """Tag every record logged inside the block with ``tick``."""
    token = TICK.set(tick)
    try:
        yield
    finally:
        TICK.reset(token)


class ContextFilter(logging.Filter):
    """Copy the tick and relationship of the current context onto each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "tick", None) is None:
            setattr(record, "tick", TICK.get())  # noqa: B010 - LogRecord has no such attribute
        if getattr(record, "relationship", None) is None:
            setattr(record, "relationship", RELATIONSHIP.get())  # noqa: B010
        return True


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s%(where)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        parts = []
        tick, rel = getattr(record, "tick", None), getattr(record, "relationship", None)
        if tick is not None:
            parts.append(f"tick={tick}")
        if rel:
            parts.append(f"rel={rel}")
        record.where = f" [{' '.join(parts)}]" if parts else ""
        return super().format(record)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name, value in vars(record).items():
            if name not in _STANDARD and name != "where" and value is not None:
                out[name] = value if isinstance(value, str | int | float | bool) else str(value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time (test runners swap it)."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def setup(level: str = "info", fmt: Format = "auto") -> None:
    """Send Cadence's records to stderr as text or JSON lines at ``level``.

    Raises ValueError for an unknown level or format.
    """
    if level.lower() not in LEVELS:
        raise ValueError(f"unknown log level {level!r}; use one of {', '.join(LEVELS)}")
    if fmt not in ("auto", "text", "json"):
        raise ValueError(f"unknown log format {fmt!r}; use auto, text or json")
    if fmt == "auto":
        fmt = "text" if sys.stderr.isatty() else "json"
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
    handler = _StderrHandler()
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())
    # chatty libraries stay at warning unless asked for debug
    quiet = logging.DEBUG if level.lower() == "debug" else logging.WARNING
    for name in ("apscheduler", "googleapiclient", "urllib3", "caldav", "exchangelib", "msal"):
        logging.getLogger(name).setLevel(quiet)
