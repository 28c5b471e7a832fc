"""Agendas and recaps: content per stage and kind, text and HTML alike, escaping, overrides."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from shutil import rmtree

import pytest

from agent.app.demo import PLANS
from agent.core.model import Relationship
from agent.rules import messages, replies
from agent.settings import config
from agent.settings import idp as idp
from agent.settings import templates as template_files
from tests.factories import person, relationship

START = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)  # Tue 10:00 in Berlin
END = START + timedelta(hours=1)
TEMPLATES = template_files.packaged()


@pytest.fixture
def plan(tmp_path: Path) -> idp.Plan:
    path = tmp_path / "ana.yaml"
    path.write_text(PLANS["ana"], encoding="utf-8")
    return idp.load(path)


def mentor() -> Relationship:
    from agent.core.model import Program, Series

    one = Series("one_on_one", timedelta(days=30), timedelta(minutes=30), "Mentoring: x")
    return Relationship(person("ana"), person("chloe"), "mentor", Program("mentoring", (one,)))


def visible(html: str) -> str:
    """The words a reader sees in the HTML part."""
    import html as h

    text = re.sub(r"</?(strong|span|code|b|em)\b[^>]*>", "", html)
    text = re.sub(r"<[^>]+>", " ", text)
    return " ".join(h.unescape(text).split())


def words(text: str) -> str:
    return " ".join(text.split())


STAGES = {
    "align": (
        ["Feedback on strengths", "company's mission", "Gaps between"],
        ["Build data products", "curiosity", "statistical modelling", "leading a team"],
    ),
    "advance": (
        ["vision of success", "Accountability", "Clarify new goals"],
        ["write the platform proposal (by 2026-12-15)", "0 of 2 milestones done"],
    ),
    "amplify": (
        ["Barriers Ben can help knock down", "Resources needed", "Stretch thinking"],
        ["influencing without authority", "product discovery (practising)"],
    ),
    "advocate": (
        ["Stretch assignments", "Promotion", "Sponsorship", "how Ben can speak for it"],
        ["explaining results to non-specialists", "Python (expert)"],
    ),
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_deep_dive_agenda_follows_its_stage(stage: str, plan: idp.Plan) -> None:
    topics, quoted = STAGES[stage]
    content = messages.render(
        "agenda",
        relationship(),
        "deep_dive",
        stage,
        START,
        END,
        plan=plan,
        invested_hours=2.5,
        templates=TEMPLATES,
    )
    assert content.subject == f"Agenda: Development {stage.title()} with Ben, Tue 24 Nov 10:00"
    others = [t for s, (ts, _) in STAGES.items() if s != stage for t in ts]
    for part in (words(content.text), visible(content.html)):
        for phrase in [*topics, *quoted]:
            assert phrase in part, (stage, phrase)
        for phrase in others:
            assert phrase not in part, (stage, phrase)
        assert "draft the platform proposal" in part  # open action, from any stage
        assert "2.5 h" in part and "0.34 %" in part and "0.14 %" in part
        assert "Feedback: direct and written" in part  # the leader reads her preferences


def test_check_in_agenda_is_about_growth_not_status(plan: idp.Plan) -> None:
    content = messages.render(
        "agenda", relationship(), "check_in", None, START, END, plan=plan, templates=TEMPLATES
    )
    assert content.subject == "Agenda: Development check-in with Ben, Tue 24 Nov 10:00"
    for part in (words(content.text), visible(content.html)):
        assert "Performance against company goals (not project status)" in part
        assert "Feedback from peers and partners" in part
        assert "Actions until the next meeting" in part
        assert "Lead the forecasting platform (0 of 2 milestones done)" in part
        assert "Success:" not in part  # a check-in quotes goals briefly


def test_mentoring_agenda_differs_for_the_first_meeting(plan: idp.Plan) -> None:
    rel = mentor()
    first = messages.render(
        "agenda", rel, "one_on_one", None, START, END, plan=plan, first=True, templates=TEMPLATES
    )
    later = messages.render(
        "agenda", rel, "one_on_one", None, START, END, plan=plan, templates=TEMPLATES
    )
    assert first.subject == "Agenda: Mentoring with Chloe, Tue 24 Nov 10:00"
    for part in (words(first.text), visible(first.html)):
        assert "What success looks like for Ana" in part
        assert "How Ana would approach the goal" in part
        assert "Which milestones to work toward" in part
        assert "Success: the platform ships to three clinics" in part
        assert "Feedback: direct" not in part  # preferences are for the leader
    for part in (words(later.text), visible(later.html)):
        assert "Progress since the last session" in part
        assert "Blockers" in part and "Recalibrate" in part
        assert "What success looks like" not in part


def test_agenda_shows_actions_recorded_from_the_last_recap(plan: idp.Plan) -> None:
    recorded = [
        replies.Action("shadow Priya", None, date(2026, 11, 20), "open", "reply"),
        replies.Action("draft the platform proposal", None, None, "done", "reply"),
    ]
    content = messages.render(
        "agenda",
        relationship(),
        "check_in",
        None,
        START,
        END,
        plan=plan,
        actions=replies.merge(plan, recorded),
        templates=TEMPLATES,
    )
    text = content.text
    opened = text.split("Open actions")[1].split("Completed since the last recap")[0]
    assert "- [ ] shadow Priya (due 2026-11-20, overdue)" in opened
    assert "draft the platform proposal" not in opened
    assert "- [x] draft the platform proposal" in text.split("Completed since the last recap")[1]
    assert "overdue" in visible(content.html)


def test_recap_lists_topics_actions_and_next_meeting(plan: idp.Plan) -> None:
    content = messages.render(
        "recap",
        relationship(),
        "deep_dive",
        "align",
        START,
        END,
        plan=plan,
        next_meeting="check in: Wed 23 Dec 2026",
        templates=TEMPLATES,
    )
    assert content.subject == "Recap: Development Align with Ben, Tue 24 Nov 10:00"
    for part in (words(content.text), visible(content.html)):
        assert "What the agenda covered" in part and "company's mission" in part
        assert "draft the platform proposal" in part.split("Open actions")[1]
        assert "shadow an on-call week" in part.split("Completed")[1]
        assert "Next meeting" in part and "check in: Wed 23 Dec 2026" in part
    # the instructions can't be read back as actions when a reply quotes without ">"
    items, _, _ = replies.read_lines(content.text)
    assert {i.title for i in items} == {
        "draft the platform proposal",
        "ask Chloe for a reading list on mentoring",
        "shadow an on-call week",
    }


def test_text_and_html_say_the_same(plan: idp.Plan) -> None:
    for kind in ("agenda", "recap"):
        for series, stage in (("deep_dive", "amplify"), ("check_in", None)):
            content = messages.render(
                kind, relationship(), series, stage, START, END, plan=plan, templates=TEMPLATES
            )
            seen = visible(content.html)
            for line in content.text.splitlines():
                line = re.sub(r"^(\d+\.|-( \[[ x]\])?|\[[ x]\])\s*", "", line.strip())
                line = re.sub(r" \(goal: [^)]*\)", "", line).replace('"', "").strip()
                if len(line) > 3 and not line.startswith(("--", "When:", "Held:")):
                    core = line.split(" (")[0]
                    # "Next meeting: …" is a heading and a paragraph in HTML
                    assert all(piece in seen for piece in core.split(": ")), (kind, line)


def test_html_is_safe_for_mail_clients(plan: idp.Plan) -> None:
    for kind in ("agenda", "recap", "invitation", "pick"):
        html = messages.render(
            kind, relationship(), "deep_dive", "align", START, END, plan=plan, templates=TEMPLATES
        ).html
        assert "<script" not in html.lower()
        assert "<style" not in html.lower() and "<link" not in html.lower()
        assert not re.search(r"""src=["']?(https?:)?//""", html)
        assert "class=" not in html  # inline styles only
        assert html.startswith("<!DOCTYPE html>")


def test_plan_calendar_and_reply_text_is_escaped_in_html(tmp_path: Path) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(
        "purpose: '<img src=x onerror=alert(1)>'\n"
        "strengths: ['</li><script>alert(2)</script>']\n"
        "goals:\n  - title: 'A & B <i>'\n    success: '\"quoted\" <b>'\n"
        "actions:\n  - {title: '<a href=javascript:x>go</a>', goal: 'A & B <i>'}\n"
    )
    plan = idp.load(path)
    rel = relationship()
    rel = replace(rel, employee=replace(rel.employee, name="Ana <b>Lima</b>"))
    update = messages.Update("Ben <script>", "today", (replies.Item("<u>x</u>", True),), "<hr>")
    for kind in ("agenda", "recap"):
        content = messages.render(
            kind,
            rel,
            "deep_dive",
            "align",
            START,
            END,
            plan=plan,
            next_meeting="<blink>soon</blink>",
            update=update if kind == "recap" else None,
            templates=TEMPLATES,
        )
        html = content.html
        for raw in ("<img", "<script", "<i>", "<b>", "<a href", "<blink>", "<u>", "<hr>"):
            assert raw not in html, (kind, raw)
        assert "A &amp; B &lt;i&gt;" in html  # the action's goal
        assert "Ana &lt;b&gt;Lima&lt;/b&gt;" in html
        if kind == "agenda":  # the recap quotes no purpose
            assert "&lt;img src=x onerror=alert(1)&gt;" in html
            assert "<img src=x onerror=alert(1)>" in content.text  # text stays as written
        else:
            assert "Ben &lt;script&gt;" in html and "&lt;hr&gt;" in html


def test_subject_for_a_user_defined_series_and_a_pick() -> None:
    rel = relationship()
    assert messages.what(rel, "skip_level", None) == "Skip level"
    assert messages.subject("pick", rel, "check_in", None, START) == (
        "Please pick a time: Development check-in with Ben"
    )
    assert messages.subject("update", rel, "deep_dive", "align", START).startswith(
        "Recap updated: Development Align with Ben, Tue"
    )


def test_templates_are_overridable_from_the_config_folder(tmp_path: Path) -> None:
    (tmp_path / "agenda").mkdir()
    (tmp_path / "agenda" / "align.j2").write_text(
        '{% set heading = "Our Align" %}{% set purpose = "House style." %}'
        '{% set topics = ["Our own topic for " ~ employee.first_name] %}{% set quote = [] %}'
    )
    content = messages.render(
        "agenda",
        relationship(),
        "deep_dive",
        "align",
        START,
        END,
        templates=template_files.load(tmp_path),
    )
    assert "Our own topic for Ana" in content.text and "Our own topic for Ana" in content.html
    assert "company's mission" not in content.text
    other = messages.render(
        "agenda", relationship(), "deep_dive", "advance", START, END, templates=TEMPLATES
    )
    assert "vision of success" in other.text  # the rest still comes from the defaults


def test_language_sets_the_html_lang() -> None:
    content = messages.render(
        "agenda",
        relationship(),
        "deep_dive",
        "align",
        START,
        END,
        language="en",
        templates=TEMPLATES,
    )
    assert '<html lang="en">' in content.html


def test_agenda_shows_only_actions_completed_since_the_previous_meeting(plan: idp.Plan) -> None:
    recorded = [
        replies.Action("old win", None, None, "done", "reply", "2026-09-01T10:00:00Z"),
        replies.Action("new win", None, None, "done", "reply", "2026-11-20T10:00:00Z"),
    ]
    content = messages.render(
        "agenda",
        relationship(),
        "check_in",
        None,
        START,
        END,
        plan=plan,
        actions=replies.merge(plan, recorded),
        since=datetime(2026, 11, 1, tzinfo=UTC),
        templates=TEMPLATES,
    )
    completed = content.text.split("Completed since the last recap")[1]
    assert "new win" in completed and "old win" not in completed


def test_invitation_and_pick_say_what_and_when() -> None:
    invite = messages.render(
        "invitation",
        relationship(),
        "deep_dive",
        "align",
        START,
        END,
        reason="lapsed",
        templates=TEMPLATES,
    )
    assert invite.subject == "Invitation: Development Align with Ben, Tue 24 Nov 10:00"
    for part in (words(invite.text), visible(invite.html)):
        assert "Cadence booked your next Development Align:" in part
        assert "Tue 24 Nov 2026, 10:00–11:00 CET (Europe/Berlin)" in part
    pick = messages.render(
        "pick", mentor(), "one_on_one", None, START, END, proposals=("Wed",), templates=TEMPLATES
    )
    assert pick.subject == "Please pick a time: Mentoring with Chloe"
    for part in (words(pick.text), visible(pick.html)):
        assert "Your Mentoring session with Chloe needs a new time" in part


def test_the_config_folder_is_read_once_when_the_settings_load(workspace: Path) -> None:
    folder = workspace.parent / "my-templates"
    (folder / "agenda").mkdir(parents=True)
    (folder / "agenda" / "align.j2").write_text(
        '{% set heading = "Our Align" %}{% set purpose = "House style." %}'
        '{% set topics = ["Ours"] %}{% set quote = [] %}'
    )
    path = workspace
    path.write_text(path.read_text() + "templates: my-templates\n")
    settings = config.load(path)
    assert settings.templates.sources["agenda/align.j2"].startswith('{% set heading = "Our')
    assert (
        settings.templates.sources["agenda/advance.j2"]
        == (template_files.packaged().sources["agenda/advance.j2"])
    )
    rmtree(folder)  # rendering reads the loaded value, not the folder
    content = messages.render(
        "agenda", relationship(), "deep_dive", "align", START, END, templates=settings.templates
    )
    assert "Ours" in content.text


def test_a_missing_templates_folder_is_a_warning(workspace: Path) -> None:
    workspace.write_text(workspace.read_text() + "templates: nowhere\n")
    settings = config.load(workspace)
    assert settings.templates is template_files.packaged()
    assert any("no folder nowhere" in w for w in settings.warnings)
