"""Pick-a-time links in the mail, and the picks made with them, for the planner.

With the web app on (``web:``), each time a pick-a-time mail proposes has a signed link
to the web app's ``/pick`` page, valid for ``web.pick``. The links of one mail share
their nonce, so the first pick uses them all up. A pick is recorded in the store; the
next tick moves (or books) the meeting to it while the time is still ahead and free.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from agent.core.model import Interval
from agent.core.timestamps import from_store, to_store
from agent.core.tokens import load_key, pick_signer
from agent.settings.config import Settings
from agent.store.plans import PlanRows
from agent.store.sqlite import Store


def nonce(key: str, moves: int) -> str:
    """The nonce all links of one pick-a-time mail share."""
    return f"pick:{key}:{moves}"


def linker(settings: Settings, now: datetime) -> Callable[[str, str, int, Interval], str] | None:
    """Make the link that picks ``slot`` for the booking ``key`` of a relationship; None
    without ``web:``."""
    web = settings.web
    if web is None or (settings.service.port == 0 and not web.url):
        return None
    signer = pick_signer(load_key(settings.resolve(web.secret)))
    base = (web.url or f"http://{settings.service.host}:{settings.service.port}").rstrip("/")

    def link(rel_id: str, key: str, moves: int, slot: Interval) -> str:
        data = {
            "r": rel_id,
            "k": key,
            "m": moves,
            "s": to_store(slot.start),
            "e": to_store(slot.end),
        }
        return f"{base}/pick?t={signer.make(data, now, web.pick, nonce(key, moves))}"

    return link


def recorded(store: Store, keys: Sequence[str] | None = None) -> dict[str, tuple[int, Interval]]:
    """The picks made on the web, by booking key (the last one per key); of these
    bookings' keys (a worker's unit), or None: of every booking."""
    out: dict[str, tuple[int, Interval]] = {}
    if keys is None:
        rows = PlanRows(store).used("pick")
    else:
        wanted = sorted({nonce(k, 0).rsplit(":", 1)[0] + ":" for k in keys})
        rows = [
            r
            for i in range(0, len(wanted), 100)
            for r in PlanRows(store).used("pick", wanted[i : i + 100])
        ]
        rows.sort(key=lambda r: str(r["used_at"]))
    for row in rows:
        data = row["data"] or {}
        try:
            slot = Interval(from_store(data["start"]), from_store(data["end"]))
            out[str(data["key"])] = (int(data["moves"]), slot)
        except (KeyError, TypeError, ValueError):
            continue
    return out
