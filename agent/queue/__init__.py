"""Cadence past one machine: a Celery app whose workers sync calendars and plan and act
on scheduling units, a scheduler that enqueues them, and the limits and leases every
process shares (Redis, PostgreSQL). Used only when the configuration has ``queue:``."""
