"""Directory sources, one module each: where the people and their managers are read.

Each module exposes ``read(source, ctx: DirectoryContext, cursor) -> Read``. A source
that can read incrementally (Entra ID's delta) returns what changed since ``cursor``;
the others return everyone (``Read.full``).
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.core.directory import Entry
from agent.core.errors import PermanentError
from agent.core.retry import RetryPolicy

SOURCES = {
    "csv": "agent.connectors.directory.csv_file",
    "ldap": "agent.connectors.directory.ldap_source",
    "entra": "agent.connectors.directory.entra",
    "google": "agent.connectors.directory.google_workspace",
}


@dataclass(frozen=True)
class Read:
    """One read of a source: everyone (``full``), or what changed since the cursor."""

    entries: list[Entry]
    full: bool = True
    removed: list[str] = field(default_factory=list)
    #: where the next read takes up (a delta link), or None
    cursor: str | None = None
    #: requests the read made, for the benchmarks and /metrics
    requests: int = 0


@dataclass
class DirectoryContext:
    """What a source needs besides its own config."""

    base: Path
    accounts: dict[str, Any] = field(default_factory=dict)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("cadence.directory"))
    #: the entries of the last read applied, by email: what a delta read changes
    known: Mapping[str, Entry] = field(default_factory=dict)

    def account(self, name: str, provider: str) -> Any:
        """The named account, which must be of the provider the source reads through."""
        account = self.accounts.get(name)
        if account is None or getattr(account, "provider", "") != provider:
            raise PermanentError(f"no {provider} account named {name!r}")
        return account

    def resolve(self, path: str) -> Path:
        """An account file's path, relative to the config folder."""
        return self.base / os.path.expanduser(path)


def read(source: Any, ctx: DirectoryContext, cursor: str | None = None) -> Read:
    module = importlib.import_module(SOURCES[source.kind])
    result: Read = module.read(source, ctx, cursor)
    return result
