"""`cadence init-plan`, plan validation in `cadence check`, and `cadence review-packet`."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path

from typer.testing import CliRunner

from agent.app.cli import app
from agent.app.demo import write_reply
from agent.core.timestamps import to_store
from agent.rules.mailplan import message_id
from agent.settings import config
from agent.settings import idp as idp
from agent.store.sqlite import Store
from agent.tick.engine import Engine
from tests.conftest import NOW

runner = CliRunner()


def cadence(*args: str):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_init_plan_writes_a_starter_that_check_accepts(workspace: Path) -> None:
    result = cadence("init-plan", "dev@acme.example", "--config", str(workspace))
    assert result.exit_code == 0, result.output
    path = workspace.parent / "plans" / "dev@acme.example.yaml"
    assert f"wrote {path}" in result.output
    text = path.read_text()
    assert "# Development plan (IDP) of Dev Patel <dev@acme.example>" in text
    assert "Ben Ortiz reads it" in text
    for key in ("purpose", "values", "strengths", "growth_areas", "skills", "preferences"):
        assert f"\n{key}:" in text
    plan = idp.load(path)
    assert len(plan.goals) == 1 and all(m.due > date.today() for m in plan.goals[0].milestones)
    assert plan.actions[0].goal == plan.goals[0].title
    # found at plans/<email>.yaml without a plan: key, and validated by check
    assert cadence("check", "--config", str(workspace)).exit_code == 0
    path.write_text(text.replace("level: practising", "level: guru"))
    result = cadence("check", "--config", str(workspace))
    assert result.exit_code == 2
    assert "dev@acme.example.yaml:" in result.output and "skills[0].level" in result.output


def test_init_plan_never_overwrites(workspace: Path) -> None:
    existing = workspace.parent / "plans" / "ana.yaml"
    before = existing.read_text()
    result = cadence("init-plan", "ana@acme.example", "--config", str(workspace))
    assert result.exit_code == 1 and "never overwrites" in result.output
    assert existing.read_text() == before
    assert cadence("init-plan", "nobody@acme.example", "--config", str(workspace)).exit_code == 2


def test_init_plan_writes_where_the_config_points(workspace: Path) -> None:
    workspace.write_text(
        workspace.read_text().replace(
            'country: IN,\n     working_hours: {mon-fri: "10:00-18:30"}',
            'country: IN,\n     working_hours: {mon-fri: "10:00-18:30"}, plan: idp/dev.yaml',
        )
    )
    settings = config.load(workspace)  # a missing plan is a warning, not an error
    assert any("idp/dev.yaml not found" in w for w in settings.warnings)
    result = cadence("check", "--config", str(workspace))
    assert result.exit_code == 2 and "dev.yaml:1: (file): not found" in result.output
    assert cadence("init-plan", "DEV@acme.example", "-c", str(workspace)).exit_code == 0
    assert (workspace.parent / "idp" / "dev.yaml").exists()
    assert cadence("check", "--config", str(workspace)).exit_code == 0


def test_check_names_file_line_and_key_of_plan_errors(workspace: Path) -> None:
    plan = workspace.parent / "plans" / "farid.yaml"
    good = plan.read_text()
    plan.write_text(good + "colour: blue\ngoals_extra: []\n")
    result = cadence("check", "--config", str(workspace))
    assert result.exit_code == 2
    assert "farid.yaml:10: colour: unknown key" in result.output
    assert "farid.yaml:11: goals_extra: unknown key" in result.output
    plan.write_text(good.replace("goal: Become a staff engineer", "goal: Become CTO"))
    result = cadence("check", "--config", str(workspace))
    assert result.exit_code == 2
    assert "farid.yaml:9: actions[0].goal: no goal 'Become CTO'" in result.output
    plan.write_text("purpose: still thinking\n")
    result = cadence("check", "--config", str(workspace))
    assert "farid.yaml:1: goals: at least one goal" in result.output
    plan.write_text(good.replace(", due: 2027-03-01}", "}"))
    result = cadence("check", "--config", str(workspace))
    assert "farid.yaml:7: goals[0].milestones[0].due: required key is missing" in result.output


def test_review_packet_in_markdown_and_html(workspace: Path, tmp_path: Path) -> None:
    settings = config.load(workspace)
    with Engine(settings) as engine:
        engine.tick(NOW)
        recap = next(r for r in Store(settings.store).outbox_rows() if r["kind"] == "recap")
        write_reply(settings.base / "inbox", Path(recap["location"]), NOW)
        engine.tick(NOW + timedelta(minutes=10))
    common = ["emma@acme.example", "--since", "2026-01-01", "-c", str(workspace)]
    md = cadence("review-packet", *common, "--now", NOW.isoformat())
    assert md.exit_code == 0, md.output
    out = md.output
    assert out.startswith("# Development review packet: Emma Clarke")
    assert "2026-01-01 to 2026-11-23" in out
    assert "Deep dives by stage: Align: 1, Advance: 1" in out
    assert "| Development Advance | Ben Ortiz (leader) | 1 |" in out
    assert "### Move into engineering management" in out
    assert "Progress: 1 of 3 milestones done." in out
    assert "- [x] ask two peers for feedback on the retros" in out.split("## Actions completed")[1]
    assert "- [ ] draft a budget for the mobile team" in out.split("## Actions open")[1]
    assert "want fewer action items" in out.split("## Feedback captured")[1]
    assert "2.0 h in 2 development conversations" in out and "0.34 %" in out

    target = tmp_path / "packet.html"
    html = cadence("review-packet", *common, "--format", "html", "-o", str(target))
    assert html.exit_code == 0 and target.exists()
    page = target.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<script" not in page
    assert "Move into engineering management" in page and "1 of 3 milestones done" in page

    later = cadence("review-packet", *common[:1], "--since", "2026-11-01", "-c", str(workspace))
    assert "Align: 1" not in later.output and "Advance: 1" in later.output

    assert cadence("review-packet", *common, "--format", "pdf").exit_code == 2
    assert (
        cadence(
            "review-packet", "emma@acme.example", "--since", "Jan", "-c", str(workspace)
        ).exit_code
        == 2
    )
    assert (
        cadence(
            "review-packet", "x@acme.example", "--since", "2026-01-01", "-c", str(workspace)
        ).exit_code
        == 2
    )


def test_demo_answers_a_recap_and_says_where_everything_is(tmp_path: Path) -> None:
    folder = tmp_path / "demo"
    first = cadence("demo", str(folder), "--now", NOW.isoformat())
    assert first.exit_code == 0, first.output
    out = first.output
    assert f"Emma answered her recap: {folder}/inbox/re-recap-emma.eml" in out
    assert "→ reply read: done: ask two peers for feedback on the retros" in out
    assert "→ updated recap sent: Recap updated: Development Advance with Ben" in out
    for label, path in (
        ("Agenda:", folder / "preview" / "agenda.html"),
        ("Recap:", folder / "preview" / "recap.html"),
        ("Review packet (html):", folder / "review-packet-emma.html"),
        ("Review packet (md):", folder / "review-packet-emma.md"),
    ):
        assert label in out and path.exists() and str(path) in out
    assert "ask two peers" in (folder / "review-packet-emma.md").read_text()
    # three languages at least: Ben and Farid read German, Ana Brazilian Portuguese, Hugo
    # French (from the directory), the others English
    assert (
        "Farid Haddad (Europe/Berlin) with mentor Emma Clarke (Europe/London), mentoring; mail in de"
        in out
    )
    for lang, word in (("de", "Themen"), ("pt-BR", "Convite"), ("fr", "entretiens")):
        page = folder / "preview"
        shown = [p for p in page.glob(f"*-{lang}.html") if str(p) in out]
        assert shown and f'<html lang="{lang}">' in shown[0].read_text(), lang
        assert word in shown[0].read_text() or word in out, (lang, word)
    again = cadence("demo", str(folder), "--now", NOW.isoformat())
    assert "Emma answered" not in again.output and "updated recap sent" not in again.output
    assert len(list((folder / "outbox").glob("*update*.eml"))) == 1


def test_review_packet_escapes_plan_and_reply_text(workspace: Path) -> None:
    from datetime import UTC, datetime

    from agent.views import packet

    plan = workspace.parent / "plans" / "farid.yaml"
    plan.write_text(plan.read_text().replace("Become a staff engineer", "Staff <script>x</script>"))
    settings = config.load(workspace)
    store = Store(settings.store)
    store.save_reply(
        {
            "message_id": "<r@x>",
            "employee": "farid@acme.example",
            "sender": "ben@acme.example",
            "received_at": "2026-11-20T10:00:00Z",
            "status": "recorded",
            "notes": "<img src=http://evil.example/t.png>",
        },
        [],
        NOW,
    )
    data = packet.collect(
        settings, store, "farid@acme.example", date(2026, 1, 1), datetime(2026, 11, 23, tzinfo=UTC)
    )
    store.close()
    html = packet.render(data, "html")
    assert "<script>x" not in html and "Staff &lt;script&gt;x&lt;/script&gt;" in html
    assert "<img" not in html and "&lt;img src=http://evil.example/t.png&gt;" in html
    assert "Ben Ortiz, 2026-11-20" in html


def test_run_once_does_exactly_what_plan_printed(workspace: Path) -> None:
    """The same planner drives both: a run at the plan's instant makes its bookings, at
    its slots, and sends its mails, and nothing else."""
    at = NOW.isoformat()
    shown = cadence("plan", "--config", str(workspace), "--now", at, "--json")
    assert shown.exit_code == 0, shown.output
    planned = [a for a in json.loads(shown.stdout) if a["acts"]]
    books = {a["key"]: (a["start"], a["end"]) for a in planned if a["kind"] == "book"}
    mails = {a["key"]: a["message_id"] for a in planned if a["kind"] != "book"}
    assert books and mails  # the demo has lapsed relationships and meetings to announce
    settings = config.load(workspace)
    store = Store(settings.store)
    assert not store.bookings() and not store.outbox_rows()  # planning did nothing
    # the ids are keyed by the store's secret, made once: run gives the same ones
    assert mails == {k: message_id(k, store.mail_secret) for k in mails}
    store.close()

    done = cadence("run", "--once", "--config", str(workspace), "--now", at)
    assert done.exit_code == 0, done.output
    store = Store(settings.store)
    made = {
        b.key: (to_store(b.start), to_store(b.end)) for b in store.bookings() if b.start and b.end
    }
    sent = {r["key"]: r["message_id"] for r in store.outbox_rows() if r["status"] == "sent"}
    store.close()
    assert made == books
    assert sent == mails
    again = cadence("plan", "--config", str(workspace), "--now", at, "--json")
    assert [a for a in json.loads(again.stdout) if a["acts"]] == []


def test_the_guard_holds_a_plan_past_its_limit_until_confirmed(workspace: Path) -> None:
    """A tick that would do more than ``guard.max_actions`` books and sends nothing,
    says so, and waits for ``run --once --confirm``."""
    config_file = workspace
    config_file.write_text(config_file.read_text() + "\nguard: {max_actions: 2}\n")
    at = NOW.isoformat()
    shown = cadence("plan", "--config", str(workspace), "--now", at)
    assert "the guard would hold this plan" in shown.stdout
    assert "more than guard.max_actions (2)" in shown.stdout and "In all: " in shown.stdout

    held = cadence("run", "--once", "--config", str(workspace), "--now", at)
    assert held.exit_code == 0, held.output
    assert "Held by the guard: nothing was booked or sent" in held.stdout
    settings = config.load(workspace)
    store = Store(settings.store)
    try:
        assert store.bookings() == [] and store.outbox_rows() == []
        assert store.audit_rows(kind="guard")
        assert store.last_tick()["status"] == "held"  # type: ignore[index]
    finally:
        store.close()

    done = cadence("run", "--once", "--config", str(workspace), "--now", at, "--confirm")
    assert done.exit_code == 0, done.output
    store = Store(settings.store)
    try:
        assert len(store.bookings()) > 2
        assert store.last_tick()["status"] == "ok"  # type: ignore[index]
    finally:
        store.close()
    quiet = cadence("run", "--once", "--config", str(workspace), "--now", at)
    assert "Nothing new to book or send" in quiet.stdout
