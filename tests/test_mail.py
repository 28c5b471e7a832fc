from __future__ import annotations

import email
from datetime import timedelta
from email import policy
from pathlib import Path

from agent.rules import messages
from agent.settings import config
from agent.settings import templates as template_files
from agent.store.sqlite import Store
from agent.tick.engine import Engine
from tests.conftest import NOW
from tests.factories import relationship

TEMPLATES = template_files.packaged()


def read(path: str) -> email.message.EmailMessage:
    return email.message_from_bytes(Path(path).read_bytes(), policy=policy.default)  # type: ignore[return-value]


def body(msg: email.message.EmailMessage, kind: str) -> str:
    part = msg.get_body(preferencelist=(kind,))
    assert part is not None
    return str(part.get_content())


def test_agenda_follows_the_stage_and_quotes_the_plan(workspace: Path) -> None:
    from agent.settings import idp as idp

    rel = relationship()
    plan = idp.load(workspace.parent / "plans" / "ana.yaml")
    content = messages.render(
        "agenda",
        rel,
        "deep_dive",
        "amplify",
        NOW,
        NOW + timedelta(hours=1),
        plan=plan,
        invested_hours=1.5,
        templates=TEMPLATES,
    )
    assert content.subject == "Agenda: Development Amplify with Ben, Mon 23 Nov 15:00"
    for text in (content.text, content.html):
        assert "Barriers Ben can help knock down" in text
        assert "Lead the forecasting platform" in text
        assert "draft the platform proposal" in text
        assert "shadow an on-call week" not in text.split("Open actions")[1]
        assert "1.5 h" in text and "0.34 %" in text
    check = messages.render(
        "agenda", rel, "check_in", None, NOW, NOW + timedelta(minutes=15), templates=TEMPLATES
    )
    assert "not project status" in check.text


def test_calendar_and_plan_text_is_escaped_in_html(tmp_path: Path) -> None:
    from agent.settings import idp as idp

    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(
        "goals:\n  - title: '<script>alert(1)</script> {{ 7 * 7 }}'\n"
        "actions:\n  - {title: '<b>bold</b>', status: open}\n"
    )
    plan = idp.load(plan_file)
    content = messages.render(
        "agenda", relationship(), "deep_dive", "align", NOW, NOW, plan=plan, templates=TEMPLATES
    )
    assert "<script>" not in content.html and "&lt;script&gt;" in content.html
    assert "<b>bold</b>" not in content.html
    assert "{{ 7 * 7 }}" in content.text and "49" not in content.text  # data, never a template


def test_recap_threads_to_the_agenda(settings: config.Settings, tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db")
    with Engine(settings, store=store) as engine:
        engine.tick(NOW)  # sends the agenda for tomorrow's mentoring session
        agenda = next(r for r in store.outbox_rows() if r["kind"] == "agenda")
        meeting = next(m for m in store.meetings() if m["id"] == agenda["meeting"])
        later = NOW + timedelta(hours=24)  # the session ended, the recap is due
        report = engine.tick(later)
        assert meeting["start"]
    recap = next(
        r for r in store.outbox_rows() if r["kind"] == "recap" and r["meeting"] == agenda["meeting"]
    )
    assert any(a.kind == "recap" and a.outcome == "done" for a in report.actions)
    msg = read(recap["location"])
    assert msg["In-Reply-To"] == agenda["message_id"]
    assert agenda["message_id"] in msg["References"]
    assert msg["Subject"].startswith("Protokoll: Mentoring mit Emma, ")  # Farid reads German
    assert "Farid" in body(msg, "plain") and "<!DOCTYPE html>" in body(msg, "html")
    assert msg["To"] == "farid@acme.example, emma@acme.example"


def test_hostile_calendar_titles_never_reach_headers(
    settings: config.Settings, tmp_path: Path
) -> None:
    ics = settings.base / "calendars" / "farid@acme.example.ics"
    text = ics.read_text()
    text = text.replace(
        "SUMMARY:Mentoring: Farid & Emma",
        "SUMMARY:Mentoring: Farid & Emma\\r\\nBcc: x@evil.example <script>",
        1,
    )
    ics.write_text(text)
    with Engine(settings, store=Store(tmp_path / "t.db")) as engine:
        engine.tick(NOW)
    for path in (settings.base / "outbox").glob("*.eml"):
        msg = read(str(path))
        assert msg["Bcc"] is None
        for value in msg.values():
            assert "\n" not in value.replace("\r\n ", "").replace("\n ", "").replace("\r\n\t", "")
