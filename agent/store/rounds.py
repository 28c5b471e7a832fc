"""The guard across a round of the task queue: one tally in the store per round.

``cadence serve`` counts a whole tick's plan against ``guard:`` at once. In the task
queue each unit's task plans its own unit, so the limits count across the round
instead: before acting, a task adds its bookings, moves and mails (and the
relationships they are for) to its round's tally, in one transaction that holds the
tally's row, and acts only if the round stays within the limits. Past them it takes
its share back and holds, and so does every unit after it: the hold is kept in the
store (``meta`` row ``guard_hold``) for every later round too, until a full
``cadence run --once`` is within the limits or confirmed (``--confirm``), or the limits
are raised past those it tripped on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from agent.core.model import Guard
from agent.core.timestamps import to_store
from agent.rules import guard
from agent.store.sqlite import Store

HOLD = "guard_hold"
#: how long a round's tally is kept (the chores delete older ones)
KEEP = timedelta(days=2)


def hold(store: Store) -> dict[str, object] | None:
    """The standing hold (when, why, the limits it tripped on), or None."""
    rows = store.db.execute("SELECT value FROM meta WHERE name = ?", [HOLD]).rows
    return dict(json.loads(rows[0][0])) if rows else None


def release(store: Store) -> bool:
    """End the standing hold; whether there was one."""
    with store.atomic():
        done = store.db.execute("DELETE FROM meta WHERE name = ?", [HOLD])
    return done.rowcount > 0


def _raised(held: dict[str, object], guard: Guard) -> bool:
    """Whether ``guard`` is looser than the limits the hold tripped on."""
    for name in ("max_actions", "max_share"):
        was, now = held.get(name), getattr(guard, name)
        if was is not None and (now is None or float(now) > float(str(was))):
            return True
    return False


def reserve(
    store: Store,
    round_id: str,
    actions: int,
    relationships: int,
    check: Callable[[int, int], str | None],
    guard: Guard,
    now: datetime,
) -> str | None:
    """Add a unit's ``actions`` for ``relationships`` to the round's tally, unless the
    round (or an earlier one) is past the limits; return why it holds, or None."""
    with store.atomic():
        held = hold(store)
        if held is not None and _raised(held, guard):
            store.db.execute("DELETE FROM meta WHERE name = ?", [HOLD])
            held = None
        if held is not None:
            return f"{held['reason']} (held since {held['at']})"
        totals = store.db.execute(
            "INSERT INTO guard_rounds (round, actions, relationships, created_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (round) DO UPDATE SET "
            "actions = guard_rounds.actions + excluded.actions, "
            "relationships = guard_rounds.relationships + excluded.relationships "
            "RETURNING actions, relationships",
            [round_id, actions, relationships, to_store(now)],
        ).rows[0]
        why = check(int(totals[0]), int(totals[1]))
        if why is None:
            return None
        store.db.execute(
            "UPDATE guard_rounds SET actions = actions - ?, relationships = relationships - ? "
            "WHERE round = ?",
            [actions, relationships, round_id],
        )
        reason = f"round {round_id}: {why}"
        value = {
            "at": to_store(now),
            "reason": reason,
            "max_actions": guard.max_actions,
            "max_share": guard.max_share,
        }
        store.db.table("meta").upsert({"name": HOLD, "value": json.dumps(value)})
        return reason


def unit(store: Store, round_id: str, scale: guard.Count, limits: Guard) -> str | None:
    """Count a unit's planned ``scale`` against its round's tally; why it holds, or
    None (a unit that does nothing counts nothing)."""
    if not scale.actions:
        return None

    def check(actions: int, relationships: int) -> str | None:
        return guard.exceeded(guard.Count(actions, relationships, scale.of), limits)

    now = datetime.now(UTC)
    return reserve(store, round_id, scale.actions, scale.relationships, check, limits, now)


def forget_old(store: Store, now: datetime) -> None:
    """Delete the tallies of rounds older than ``KEEP``."""
    with store.atomic():
        store.db.execute("DELETE FROM guard_rounds WHERE created_at < ?", [to_store(now - KEEP)])


def window(now: datetime, tick: timedelta) -> str:
    """The round of a unit's task the scheduler named none for (a push's sync enqueued
    it): the tick interval it falls in."""
    seconds = max(1, int(tick.total_seconds()))
    return f"window:{int(now.timestamp()) // seconds}"
