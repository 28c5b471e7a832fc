"""Calendar and mail providers, one module each; the interfaces live in base.py.

A static registry maps the ``provider:`` name of an account to its module. Each module
exposes ``connect(ctx: Context) -> tuple[Calendar, Mailer]``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agent.connectors.base import Calendar, Mailer
from agent.core.errors import ConfigError, PermanentError
from agent.core.model import Person
from agent.core.retry import RetryPolicy

if TYPE_CHECKING:
    from agent.settings.config import Settings

PROVIDERS = {
    "local": "agent.connectors.local",
    "google": "agent.connectors.google",
    "microsoft": "agent.connectors.microsoft",
    "caldav": "agent.connectors.caldav",
    "exchange": "agent.connectors.exchange",
}


@dataclass
class Context:
    """What the engine hands a connector: its account, its people, logger and retry policy."""

    name: str
    account: Any
    settings: Settings
    people: Sequence[Person]
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("cadence.connector"))

    @property
    def reply_mailboxes(self) -> tuple[str, ...]:
        """The inboxes this account reads replies to recaps from (none: it reads none)."""
        return tuple(self.settings.reply_accounts.get(self.name, ()))

    @property
    def correspondents(self) -> list[str]:
        """Everyone Cadence mails, in any relationship: whose mail may be a reply."""
        rels = self.settings.relationships
        return sorted({p.email.lower() for r in rels for p in (r.employee, r.partner)})


#: one check of an account's local files: the key it concerns and the call that raises
#: ConfigError or PermanentError (the very call ``connect`` makes), with no network
FileCheck = tuple[str, Callable[[], object]]


def connect(ctx: Context) -> tuple[Calendar, Mailer]:
    """Open the calendar and mailer of one account; raise ConfigError for unknown providers."""
    result: tuple[Calendar, Mailer] = _module(ctx).connect(ctx)
    return result


def preflight(ctx: Context) -> list[tuple[str, str]]:
    """What ``connect`` would refuse in the account's own files and folders (credentials,
    token caches, certificates, CA bundles, the local calendars folder): (key, message)
    pairs, found by running the provider's own checks, with no network call.

    ``cadence check`` reports these, so that it fails on what makes ``run`` fail.
    """
    checks: Callable[[Context], list[FileCheck]] | None = getattr(_module(ctx), "file_checks", None)
    problems = []
    for key, check in checks(ctx) if checks else []:
        try:
            check()
        except (ConfigError, PermanentError) as exc:
            problems.append((key, str(exc)))
    return problems


def _module(ctx: Context) -> Any:
    provider = ctx.account.provider
    module_name = PROVIDERS.get(provider)
    if module_name is None:
        raise ConfigError(f"unknown provider {provider!r}; choose one of: {', '.join(PROVIDERS)}")
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise ConfigError(
                f"account {ctx.name!r}: provider {provider!r} is not available in this version"
            ) from None
        raise
