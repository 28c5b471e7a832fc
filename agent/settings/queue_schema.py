"""The ``queue:`` section: Cadence past one machine (``cadence scheduler`` and
``cadence worker``).

Every address here may carry a password, and passwords never sit in the configuration
file: a URL with one is refused, and ``${NAME}`` stands for a whole URL read from the
environment variable NAME when the settings are resolved.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Callable
from datetime import timedelta
from typing import Annotated

from pydantic import AfterValidator, Field

from agent.settings.schema_types import Duration, Strict

_ENV = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def resolve_url(value: str) -> str:
    """The URL itself, or the one in the environment variable ``${NAME}`` names."""
    match = _ENV.match(value)
    if match is None:
        return value
    found = os.environ.get(match.group(1))
    if not found:
        raise ValueError(f"environment variable {match.group(1)} is not set")
    return found


def _url(*schemes: str) -> AfterValidator:
    def check(value: str) -> str:
        if _ENV.match(value):
            return value  # checked when resolved: the variable holds the secret
        parts = urllib.parse.urlsplit(value)
        if parts.scheme not in schemes:
            raise ValueError(
                f"{parts.scheme or value!r}: expected a URL starting with "
                + " or ".join(f"{s}://" for s in schemes)
            )
        if parts.password:
            raise ValueError(
                "a password in the configuration file; put the whole URL in an "
                "environment variable and write ${NAME} here"
            )
        return value

    return AfterValidator(check)


BrokerUrl = Annotated[str, _url("amqp", "amqps", "pyamqp", "redis", "rediss")]
RedisUrl = Annotated[str, _url("redis", "rediss")]
PostgresUrl = Annotated[str, _url("postgresql", "postgres")]


class QueueConfig(Strict):
    """``queue:``: a scheduler enqueues the work, workers on any machine run it."""

    #: the Celery broker: RabbitMQ (``amqp://``) or Redis (``redis://``)
    broker: BrokerUrl
    #: where task results are kept; Cadence reads none, so none by default
    backend: RedisUrl | None = None
    #: PostgreSQL for the scheduler's election and the scheduling units' leases
    #: (advisory locks, held by a connection: a dead process frees them)
    lock: PostgresUrl
    #: Redis for the per-account limits every worker shares (``sync.concurrency``,
    #: ``sync.rate``, a provider's Retry-After)
    limits: RedisUrl
    #: a task running longer is killed and handed to another worker
    time_limit: Duration = Field(default=timedelta(minutes=15))
    #: where /metrics of ``cadence worker`` and ``cadence scheduler`` listen (0: nowhere)
    metrics_port: int = Field(default=9465, ge=0, le=65535)
    #: the queue's name on the broker
    name: str = Field(default="cadence", pattern=r"^[A-Za-z0-9_.-]+$")


class Queue:
    """``queue:`` resolved: the URLs as the processes use them (``${NAME}`` read)."""

    def __init__(self, conf: QueueConfig, urls: dict[str, str | None]) -> None:
        self.conf = conf
        self.broker = urls["broker"] or ""
        self.backend = urls["backend"]
        self.lock = urls["lock"] or ""
        self.limits = urls["limits"] or ""
        self.time_limit = conf.time_limit
        self.metrics_port = conf.metrics_port
        self.name = conf.name

    def __repr__(self) -> str:  # the URLs may hold passwords: never in a log line
        return f"Queue(name={self.name!r})"


def resolve(conf: QueueConfig, err: Callable[[list[str | int], str], None]) -> Queue:
    """Read the ``${NAME}`` URLs from the environment; ``err`` hears what is missing."""
    urls: dict[str, str | None] = {}
    for key in ("broker", "backend", "lock", "limits"):
        value = getattr(conf, key)
        try:
            urls[key] = None if value is None else resolve_url(value)
        except ValueError as exc:
            err(["queue", key], str(exc))
            urls[key] = None
    return Queue(conf, urls)
