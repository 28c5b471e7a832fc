"""``forget`` erases one person's rows, and never another's whose address contains it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from agent.store.directory import DirectoryRows
from agent.store.sqlite import Store

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def test_forget_erases_exactly_one_person(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    try:
        for key, rel, to in (
            ("a:recap", "ana@x.example/ben@x.example", "ana@x.example, ben@x.example"),
            ("d:recap", "diana@x.example/ben@x.example", "diana@x.example, ben@x.example"),
            ("o:note", "zed@x.example/ben@x.example", "zed@x.example, ana@x.example"),
        ):
            store.save_outbox(
                {"key": key, "meeting": key, "kind": "recap", "relationship": rel,
                 "status": "sent", "recipients": to, "sender": rel.split("/")[0]},
                NOW,
            )  # fmt: skip
        store.audit(None, NOW, "settings", "ana@x.example: time zone from the mailbox")
        store.audit(None, NOW, "settings", "diana@x.example: time zone from the mailbox")
        store.audit(None, NOW, "book", "booked", "diana@x.example/ben@x.example")
        rows = DirectoryRows(store)
        held = rows.export("ana@x.example")
        assert sorted(r["key"] for r in held["outbox"]) == ["a:recap", "o:note"]
        assert [r["message"] for r in held["audit"]] == [
            "ana@x.example: time zone from the mailbox"
        ]
        counts = rows.forget("ana@x.example", NOW)
        assert counts["outbox"] == 2 and counts["audit"] == 1
        assert [r["key"] for r in store.outbox_rows()] == ["d:recap"]
        assert len(store.audit_rows()) == 2
        assert not any(rows.export("ana@x.example").values())
        assert rows.forgotten("ana@x.example") == "2026-12-01T00:00:00Z"
        assert rows.export("diana@x.example")["outbox"]
    finally:
        store.close()
