"""``cadence scheduler`` and ``cadence worker``: Cadence past one machine (``queue:``)."""

from __future__ import annotations

import os

import typer

from agent.app.clitools import (
    ConfigOption,
    LogFormatOption,
    LogLevelOption,
    fail,
    load_settings,
    setup_logging,
)
from agent.settings.config import Settings


def _queued(config: str | None) -> Settings:
    settings = load_settings(config)
    if settings.queue is None:
        fail(
            f"{settings.path}: no queue: section; without one `cadence serve` does the work "
            "in one process",
            2,
        )
    return settings


def scheduler(
    config: str | None = ConfigOption,
    log_level: str | None = LogLevelOption,
    log_format: str = LogFormatOption,
) -> None:
    """Enqueue every scheduling unit's work on the tick interval (one scheduler is active;
    others stand by and take over when it dies)."""
    from agent.queue import metrics
    from agent.queue.app import Cadence
    from agent.queue.scheduler import Scheduler
    from agent.tick import metrics as tick_metrics

    setup_logging(True, log_level, log_format)
    settings = _queued(config)
    assert settings.queue is not None
    registry = tick_metrics.activate().registry
    app = Cadence(settings)
    app.metrics = metrics.QueueMetrics(registry, depth=app.depth)
    try:
        metrics.serve(registry, settings.queue.metrics_port, settings.service.host)
    except OSError as exc:
        fail(f"cannot listen on port {settings.queue.metrics_port}: {exc.strerror or exc}", 1)
    Scheduler(settings, app).run()


def worker(
    config: str | None = ConfigOption,
    concurrency: int = typer.Option(
        1, "--concurrency", "-c", min=1, help="Tasks this worker runs at once (threads)."
    ),
    metrics_port: int | None = typer.Option(
        None, "--metrics-port", help="Serve /metrics here (default: queue.metrics_port)."
    ),
    log_level: str | None = LogLevelOption,
    log_format: str = LogFormatOption,
) -> None:
    """Run the queue's tasks (a Celery worker) until SIGTERM; a SIGKILL loses nothing."""
    from agent.queue import metrics
    from agent.queue.app import Cadence
    from agent.tick import metrics as tick_metrics

    setup_logging(True, log_level, log_format)
    settings = _queued(config)
    assert settings.queue is not None
    registry = tick_metrics.activate().registry
    app = Cadence(settings, metrics.QueueMetrics(registry))
    port = settings.queue.metrics_port if metrics_port is None else metrics_port
    try:
        metrics.serve(registry, port, settings.service.host)
    except OSError as exc:
        fail(f"cannot listen on port {port}: {exc.strerror or exc}", 1)
    app.worker_setup()
    app.celery.worker_main(
        [
            "worker",
            "--pool=threads",
            # a name of its own: several workers on one host must not share one
            f"--hostname=cadence-{os.getpid()}@%h",
            f"--concurrency={concurrency}",
            f"--queues={settings.queue.name}",
            f"--loglevel={(log_level or 'info').upper()}",
            "--without-gossip",
            "--without-mingle",
        ]
    )
