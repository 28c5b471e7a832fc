"""Prometheus metrics of a running ``cadence serve``.

One registry per process, made active by the service; when no registry is active (every
other command, most tests) nothing is measured and connections are not wrapped.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from agent.connectors.base import CAPABILITIES
from agent.core import errors, retry

__all__ = ["CONTENT_TYPE", "Metrics", "activate", "active", "deactivate", "instrument"]

MAIL_KINDS = ("agenda", "recap", "invite", "ask")


#: every metric as (attribute, kind, name, help, labels, histogram buckets), in the order
#: the exposition lists them
_DECLARED: tuple[
    tuple[str, type[Counter | Gauge | Histogram], str, str, tuple[str, ...], tuple[float, ...]], ...
] = (
    (
        "ticks",
        Counter,
        "cadence_ticks",
        "Ticks run, by result (ok, partial, failed, busy).",
        ("status",),
        (),
    ),
    (
        "tick_seconds",
        Histogram,
        "cadence_tick_duration_seconds",
        "Wall time of a tick.",
        (),
        (0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
    ),
    (
        "last_tick",
        Gauge,
        "cadence_last_tick_timestamp_seconds",
        "When the last tick finished (Unix time).",
        (),
        (),
    ),
    (
        "last_success",
        Gauge,
        "cadence_last_success_timestamp_seconds",
        "When the last tick without errors finished (Unix time).",
        (),
        (),
    ),
    (
        "failures",
        Gauge,
        "cadence_consecutive_failed_ticks",
        "Failed ticks in a row (0 after a good one).",
        (),
        (),
    ),
    (
        "actions",
        Counter,
        "cadence_actions",
        "What ticks did or decided, by kind and outcome.",
        ("kind", "outcome"),
        (),
    ),
    (
        "lapsed",
        Gauge,
        "cadence_lapsed_relationships",
        "Relationships with at least one lapsed series at the last tick.",
        (),
        (),
    ),
    (
        "relationships",
        Gauge,
        "cadence_relationships",
        "Relationships assessed at the last tick.",
        (),
        (),
    ),
    ("booked", Counter, "cadence_meetings_booked", "Meetings booked on calendars.", (), ()),
    (
        "mails",
        Counter,
        "cadence_mails_sent",
        "Mails sent, by kind (invite, agenda, recap, ask).",
        ("kind",),
        (),
    ),
    (
        "calls",
        Counter,
        "cadence_provider_requests",
        "Calls to a provider's calendar or mail interface, by provider, method and result "
        "(ok, transient, permanent, cursor_expired, error); retries inside a call are counted as throttle waits.",
        ("provider", "method", "status"),
        (),
    ),
    (
        "call_seconds",
        Histogram,
        "cadence_provider_request_duration_seconds",
        "Wall time of a provider call, retries included.",
        ("provider", "method"),
        (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120),
    ),
    (
        "push_channels",
        Gauge,
        "cadence_push_channels",
        "Push channels (Google) and subscriptions (Graph, Exchange) by state "
        "(active, failed, missed, removed, refused).",
        ("state",),
        (),
    ),
    (
        "push_notifications",
        Counter,
        "cadence_push_notifications",
        "Notifications received, by provider and result (accepted, ignored, lifecycle, "
        "validation, rejected, limited).",
        ("provider", "result"),
        (),
    ),
    (
        "push_pulls",
        Counter,
        "cadence_push_pulls",
        "Exchange pull subscriptions asked for events, by result (quiet, changed, lost, failed).",
        ("result",),
        (),
    ),
    (
        "push_streams",
        Counter,
        "cadence_push_streams",
        "Exchange streaming connections ended, by result (closed: at its timeout, opened "
        "again; lost: a subscription was gone; failed; stopped).",
        ("result",),
        (),
    ),
    (
        "push_stream_connections",
        Gauge,
        "cadence_push_stream_connections",
        "Exchange streaming connections held open now.",
        (),
        (),
    ),
    (
        "push_delay",
        Histogram,
        "cadence_push_reaction_seconds",
        "From a calendar's first notification to the end of the actions it led to.",
        (),
        (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300),
    ),
    (
        "waits",
        Counter,
        "cadence_throttle_waits",
        "Pauses before a retry (throttling, 5xx, timeouts).",
        (),
        (),
    ),
    (
        "wait_seconds",
        Counter,
        "cadence_throttle_wait_seconds",
        "Seconds spent waiting before retries.",
        (),
        (),
    ),
)


class Metrics:
    """The counters, gauges and histograms Cadence exports (declared in ``_DECLARED``)."""

    ticks: Counter
    tick_seconds: Histogram
    last_tick: Gauge
    last_success: Gauge
    failures: Gauge
    actions: Counter
    lapsed: Gauge
    relationships: Gauge
    booked: Counter
    mails: Counter
    calls: Counter
    call_seconds: Histogram
    push_channels: Gauge
    push_notifications: Counter
    push_pulls: Counter
    push_streams: Counter
    push_stream_connections: Gauge
    push_delay: Histogram
    waits: Counter
    wait_seconds: Counter

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        for attr, kind, name, doc, labels, buckets in _DECLARED:
            metric = (
                Histogram(name, doc, labels, registry=self.registry, buckets=buckets)
                if buckets
                else kind(name, doc, labels, registry=self.registry)
            )
            setattr(self, attr, metric)

    def observe_wait(self, seconds: float) -> None:
        self.waits.inc()
        self.wait_seconds.inc(seconds)

    def observe_tick(self, report: Any, seconds: float, failures: int) -> None:
        """Count one finished tick from its :class:`~agent.tick.engine.TickReport`."""
        status = "ok" if report.ok else "partial"
        self.ticks.labels(status).inc()
        self.tick_seconds.observe(seconds)
        now = time.time()
        self.last_tick.set(now)
        if report.ok:
            self.last_success.set(now)
        self.failures.set(failures)
        for action in report.actions:
            self.actions.labels(action.kind, action.outcome).inc()
        self.booked.inc(report.count("book"))
        for kind in MAIL_KINDS:
            self.mails.labels(kind).inc(report.count(kind))
        self.lapsed.set(len({s.relationship.id for s in report.states if s.lapsed}))
        self.relationships.set(len({s.relationship.id for s in report.states}))

    def observe_failure(self, status: str, seconds: float, failures: int) -> None:
        """Count a tick that raised (``failed``) or could not take the lock (``busy``)."""
        self.ticks.labels(status).inc()
        self.tick_seconds.observe(seconds)
        self.last_tick.set(time.time())
        self.failures.set(failures)

    def exposition(self) -> bytes:
        return bytes(generate_latest(self.registry))


_active: Metrics | None = None


def activate() -> Metrics:
    """Start measuring in this process; return the registry's owner."""
    global _active
    if _active is None:
        _active = Metrics()
        retry.WAIT_LISTENERS.append(_active.observe_wait)
    return _active


def deactivate() -> None:
    global _active
    if _active is not None:
        retry.WAIT_LISTENERS.remove(_active.observe_wait)
    _active = None


def active() -> Metrics | None:
    return _active


class _Metered:
    """A calendar or mailer whose interface calls are counted; everything else passes through."""

    _METHODS = frozenset(
        {"changes", "busy", "create", "find", "move", "cancel", "send", "was_sent"}
    )

    def __init__(self, inner: Any, provider: str, metrics: Metrics) -> None:
        self._inner = inner
        self._provider = provider
        self._metrics = metrics

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._inner, name)
        if name not in self._METHODS or not callable(value):
            return value
        return self._wrap(name, value)

    def _wrap(self, method: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        m = self._metrics

        def call(*args: Any, **kwargs: Any) -> Any:
            start = time.monotonic()
            status = "ok"
            try:
                return fn(*args, **kwargs)
            except errors.TransientError:
                status = "transient"
                raise
            except errors.PermanentError:
                status = "permanent"
                raise
            except errors.CursorExpired:
                status = "cursor_expired"
                raise
            except Exception:
                status = "error"
                raise
            finally:
                m.calls.labels(self._provider, method, status).inc()
                m.call_seconds.labels(self._provider, method).observe(time.monotonic() - start)

        return call


def instrument(pair: tuple[Any, Any], provider: str) -> tuple[Any, Any]:
    """Wrap a (calendar, mailer) pair so its calls are counted while metrics are active."""
    metrics = _active
    if metrics is None:
        return pair
    calendar, mailer = pair
    return _metered(calendar, provider, metrics), _metered(mailer, provider, metrics)


def _forward(self: _Metered, name: str) -> Any:
    return self.__getattr__(name)


def _metered(inner: Any, provider: str, metrics: Metrics) -> _Metered:
    """Wrap ``inner`` in a class that declares the same capabilities: a protocol check
    does not look through ``__getattr__`` (Python 3.12 and later)."""
    declared = tuple(c for c in CAPABILITIES if isinstance(inner, c))
    if not declared:
        return _Metered(inner, provider, metrics)
    # the protocols' own members are stubs: each name must still reach the inner object
    names = {n for c in declared for n in vars(c) if not n.startswith("_")}
    passing = {n: property(functools.partial(_forward, name=n)) for n in names}
    cls = type(f"Metered{type(inner).__name__}", (_Metered, *declared), passing)
    metered: _Metered = cls(inner, provider, metrics)
    return metered
