"""What the tick's steps need from the engine that runs them, as an interface, so the
sync, reply and executor modules sit below the engine instead of importing it back."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Protocol

from agent.connectors.base import Calendar, Mailer
from agent.core.model import Event, Interval, Person
from agent.core.ratelimit import TokenBucket
from agent.settings.config import Settings
from agent.store.kept import KeptCandidates
from agent.store.sqlite import Store
from agent.tick.plans import Plans

#: per account: how many calendars may be read at once, and the request pace
Limits = dict[str, tuple[threading.BoundedSemaphore, TokenBucket | None]]


class Host(Protocol):
    """The engine, as its steps see it: settings, store, connections and thread pool."""

    settings: Settings
    #: the settings as configured, before the directory's people are laid over them
    configured: Settings
    store: Store
    kept: KeptCandidates
    plans: Plans

    def connection(self, account: str) -> tuple[Calendar, Mailer]: ...

    def keep_only(self, event: Event) -> None: ...

    def sync_limits(self) -> Limits: ...

    def sync_pool(self) -> ThreadPoolExecutor: ...

    def window(self, now: datetime) -> Interval: ...

    def people(self) -> list[Person]: ...
