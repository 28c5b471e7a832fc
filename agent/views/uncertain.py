"""Mail that may or may not have gone out: shown by ``status``, ``report`` and /healthz.

An agenda or recap whose send failed without an answer, and which the provider could not
confirm, is never sent again (it must never arrive twice); a person decides whether to
resend it. Listing it everywhere a person looks keeps it from being dropped silently.
"""

from __future__ import annotations

from typing import Any

from agent.store.sqlite import Store

FIELDS = ("key", "kind", "relationship", "series", "subject", "sender", "recipients")


def uncertain_mail(store: Store) -> list[dict[str, Any]]:
    """The outbox rows marked ``uncertain``, oldest first, with what a person needs to
    find or resend the mail."""
    return [
        {f: row.get(f) for f in (*FIELDS, "message_id", "created_at")}
        for row in store.outbox_rows()
        if row.get("status") == "uncertain"
    ]


def describe(row: dict[str, Any]) -> str:
    """One line: which mail, from whom to whom, and for which relationship."""
    return (
        f"{row['kind']} {row['subject']!r} from {row['sender']} to {row['recipients']} "
        f"({row['relationship']} {row['series']}; Message-ID {row['message_id']})"
    )


def advice(rows: list[dict[str, Any]]) -> list[str]:
    """The lines a text view prints after its table, nothing when all is known."""
    if not rows:
        return []
    return [
        "",
        f"{len(rows)} mail(s) may not have gone out (not sent again, to never send twice; "
        "check the sender's Sent folder and resend if missing):",
        *(f"  {describe(r)}" for r in rows),
    ]
