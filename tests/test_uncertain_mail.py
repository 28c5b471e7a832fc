"""Mail that may not have gone out is shown by status, the report and /healthz, so that
a person can resend it: it is never sent again by Cadence, and never dropped silently."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from agent.app.cli import app
from agent.app.health import Health
from agent.settings import config
from agent.store.sqlite import Store
from agent.views.uncertain import describe, uncertain_mail
from tests.conftest import NOW
from tests.test_scheduling import _team, tick

SUBJECT = "Agenda: Development deep dive"


def _uncertain(path: Path) -> config.Settings:
    settings = config.load(path)
    tick(settings, NOW)
    store = Store(settings.store)
    try:
        for key, status in (("k-lost", "uncertain"), ("k-sent", "sent")):
            store.save_outbox(
                {
                    "key": key,
                    "meeting": f"m-{key}",
                    "kind": "agenda",
                    "relationship": settings.relationships[0].id,
                    "series": settings.relationships[0].program.series[0].name,
                    "status": status,
                    "message_id": f"<{key}@cadence>",
                    "sender": "r0@acme.example",
                    "recipients": "r0@acme.example, lead@acme.example",
                    "subject": SUBJECT,
                },
                NOW,
            )
    finally:
        store.close()
    return settings


def test_status_and_report_list_the_uncertain_mail(tmp_path: Path) -> None:
    path = _team(tmp_path, 1)
    settings = _uncertain(path)
    rel = settings.relationships[0]
    runner = CliRunner()
    base = ["--config", str(path), "--now", NOW.isoformat()]

    shown = runner.invoke(app, ["status", *base])
    assert shown.exit_code == 0, shown.output
    assert "1 mail(s) may not have gone out" in shown.output
    assert SUBJECT in shown.output and "<k-lost@cadence>" in shown.output
    assert "<k-sent@cadence>" not in shown.output

    rows = json.loads(runner.invoke(app, ["status", *base, "--json"]).output)
    [row] = [r for r in rows if r["uncertain_mail"]]
    assert row["relationship"] == rel.id and "<k-lost@cadence>" in row["uncertain_mail"][0]

    text = runner.invoke(app, ["report", *base])
    assert text.exit_code == 0, text.output
    assert "may not have gone out" in text.output and "<k-lost@cadence>" in text.output
    data = json.loads(runner.invoke(app, ["report", *base, "--format", "json"]).output)
    assert [m["key"] for m in data["uncertain_mail"]] == ["k-lost"]


def test_healthz_is_degraded_while_mail_is_uncertain(tmp_path: Path) -> None:
    settings = _uncertain(_team(tmp_path, 1))
    store = Store(settings.store)
    try:
        lines = [describe(m) for m in uncertain_mail(store)]
    finally:
        store.close()
    health = Health(interval=60, clock=lambda: 0.0)
    health.record(1, True)
    health.note_uncertain(lines)
    healthy, body = health.check()
    assert healthy and body["status"] == "degraded"
    assert body["uncertain_mail"] == lines and "<k-lost@cadence>" in lines[0]
    health.note_uncertain([])
    assert health.check()[1]["status"] == "ok"
