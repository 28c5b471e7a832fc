"""Mail in each person's language: the catalogue check, every mail kind rendered and
parsed in every shipped language, locale dates, localized replies, per-language overrides
and where a person's language comes from."""

from __future__ import annotations

import email
import re
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from email import policy
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from agent.app.demo import PLANS
from agent.core import locales
from agent.core.directory import Line
from agent.core.errors import ConfigError
from agent.core.model import OutgoingMail, Program, Relationship
from agent.core.plan import ActionItem, Goal, Plan
from agent.formats import mime
from agent.rules import handover, mailplan, messages, replies
from agent.settings import config
from agent.settings import idp as idp
from agent.settings import templates as template_files
from tests.factories import person, relationship

ROOT = Path(__file__).resolve().parents[1]
LOCALE = ROOT / "agent" / "locale"
TEMPLATES = template_files.packaged()
START = datetime(2026, 12, 7, 13, 0, tzinfo=UTC)  # Mon 14:00 in Berlin, 22:00 in Tokyo
END = START + timedelta(hours=1)
TRANSLATED = [lang for lang in locales.SHIPPED if lang != locales.SOURCE]
PLACEHOLDER = re.compile(r"%\([a-z_]+\)s|%%")


# --- the catalogue check ---------------------------------------------------------------


def extracted() -> dict[tuple[str | None, str], str]:
    """Every message the code and templates hold now, as ``pybabel extract`` sees them."""
    templates = ("agent/templates/**.j2", "agent/web/templates/**.j2")
    mapping = [("agent/**.py", "python"), *((t, "jinja2") for t in templates)]
    options = {t: {"extensions": "jinja2.ext.i18n"} for t in templates}
    found: dict[tuple[str | None, str], str] = {}
    for filename, _, message, _, context in extract_from_dir(
        str(ROOT), method_map=mapping, options_map=options
    ):
        assert isinstance(message, str), f"{filename}: plural messages are not used here"
        found[(context, message)] = filename
    return found


def catalogue(path: Path) -> dict[tuple[str | None, str], tuple[str, bool]]:
    with path.open("rb") as f:
        cat = read_po(f)
    return {(m.context, str(m.id)): (str(m.string), m.fuzzy) for m in cat if m.id}


def test_the_template_holds_every_message_of_the_code_and_no_other() -> None:
    code = extracted()
    pot = catalogue(LOCALE / "messages.pot")
    missing = sorted(f"{code[k]}: {k[1]!r}" for k in code.keys() - pot.keys())
    stale = sorted(k[1] for k in pot.keys() - code.keys())
    assert not missing, f"not in messages.pot (run `make messages`): {missing}"
    assert not stale, f"in messages.pot but no longer in the code: {stale}"


@pytest.mark.parametrize("language", TRANSLATED)
def test_every_message_is_translated_with_its_placeholders(language: str) -> None:
    pot = catalogue(LOCALE / "messages.pot")
    po = catalogue(LOCALE / language / "LC_MESSAGES" / "messages.po")
    assert po.keys() == pot.keys(), f"{language}: run `make messages` to merge messages.pot"
    for (context, msgid), (msgstr, fuzzy) in po.items():
        assert msgstr and not fuzzy, f"{language}: untranslated {msgid!r}"
        wanted = set(PLACEHOLDER.findall(msgid))
        assert set(PLACEHOLDER.findall(msgstr)) == wanted, f"{language}: {msgid!r}"
        assert "%" not in PLACEHOLDER.sub("", msgstr), f"{language}: a stray % in {msgstr!r}"
        if context == "stage":  # the practice's terms are kept (docs/CONTENT.md)
            assert msgstr == msgid


def test_every_shipped_catalogue_compiles_and_is_packaged() -> None:
    assert set(TEMPLATES.catalogues) == set(TRANSLATED)
    de = TEMPLATES.translations("de")
    assert de.gettext("Topics") == "Themen"
    assert de.pgettext("stage", "Align") == "Align"
    assert TEMPLATES.translations("en").gettext("Topics") == "Topics"


# --- every mail kind in every language -------------------------------------------------


class Strict(HTMLParser):
    """A well-formedness check: every element closed in order, nothing left open."""

    VOID = frozenset({"br", "meta", "img", "hr", "link", "input", "col", "wbr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.lang: str | None = None
        self.doctype = False

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl.lower() == "doctype html"

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "html":
            self.lang = dict(attrs).get("lang")
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()


def valid_html(html: str) -> Strict:
    parser = Strict()
    parser.feed(html)
    parser.close()
    assert parser.doctype and not parser.stack, parser.stack
    return parser


def plan(tmp_path: Path) -> idp.Plan:
    path = tmp_path / "ana.yaml"
    path.write_text(PLANS["ana"], encoding="utf-8")
    return idp.load(path)


def in_language(language: str):  # type: ignore[no-untyped-def]
    rel = relationship(person("ana", language=language), person("ben", tz="Asia/Tokyo"))
    return rel


KINDS = ["agenda", "recap", "invitation", "pick", "update"]


def rendered(kind: str, language: str, tmp_path: Path) -> messages.Content:
    rel = in_language(language)
    stage = None if kind == "pick" else "advance"
    extra: dict[str, object] = {}
    if kind == "update":
        item = replies.Item("draft the proposal", False, date(2026, 12, 15))
        extra["update"] = messages.Update("Ben", "Mon 7 Dec", (item,), "good talk")
    if kind == "pick":
        extra["proposals"] = ("Tue 8 Dec 2026, 10:00–11:00 CET (Europe/Berlin)",)
        extra["reason"] = "declined"
    return messages.render(
        "recap" if kind == "update" else kind,
        rel,
        "check_in" if kind == "pick" else "deep_dive",
        stage,
        START,
        END,
        plan=plan(tmp_path),
        templates=TEMPLATES,
        language=language,
        invested_hours=2.5,
        **extra,  # type: ignore[arg-type]
    )


def sent(content: messages.Content) -> EmailMessage:
    """The mail as the providers send it, read back from its bytes."""
    mail = OutgoingMail(
        key="k",
        sender="ana@acme.example",
        sender_name="Ana Lima",
        to=("ana@acme.example", "ben@acme.example"),
        subject=content.subject,
        text=content.text,
        html=content.html,
        message_id="<k@cadence>",
    )
    raw = mime.build(mail).as_bytes()
    assert all(len(line) <= 998 for line in raw.split(b"\r\n")), "a line over 998 octets"
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii(), "headers must be encoded words, not raw UTF-8"
    parsed = email.message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


@pytest.mark.parametrize("language", locales.SHIPPED)
@pytest.mark.parametrize("kind", KINDS)
def test_every_mail_kind_renders_and_parses_in_every_language(
    kind: str, language: str, tmp_path: Path
) -> None:
    content = rendered(kind, language, tmp_path)
    parsed = sent(content)
    assert str(parsed["Subject"]) == content.subject
    text = parsed.get_body(("plain",))
    html = parsed.get_body(("html",))
    assert text is not None and html is not None
    body = text.get_content().replace("\r\n", "\n").rstrip("\n")
    assert body == content.text.replace("\r\n", "\n").rstrip("\n")
    assert valid_html(html.get_content()).lang == locales.tag(language)
    english = rendered(kind, "en", tmp_path)
    if language != "en":  # translated throughout: no English heading is left
        assert content.subject != english.subject
        for heading in ("Topics", "Open actions", "Completed", "Goals", "When:", "Held:"):
            assert f"\n{heading}\n" not in content.text


@pytest.mark.parametrize("language", locales.SHIPPED)
def test_pages_about_people_render_in_every_language(language: str) -> None:
    ana = person("ana", language=language)
    lea, max_ = person("lea"), person("max")
    line = Line(ana.email, lea.email, START - timedelta(days=200), START, "new leader", max_.email)
    shared = Plan(
        goals=[Goal(title="Lead the platform")],
        actions=[ActionItem(title="draft the proposal", due=date(2026, 12, 15))],
        share_with_new_leader=True,
    )
    ctx = mailplan.MailContext(START, (), b"s" * 32, plans={ana.email: shared}, templates=TEMPLATES)
    ending = handover.Ending(line, ana, lea, max_, (), last="Align", first_by=START)
    everyone = frozenset({ana.email, lea.email, max_.email})
    mails = [a for a in handover.plan([ending], ctx, everyone) if hasattr(a, "mail")]
    assert {a.kind for a in mails} == {"ended", "handover"}  # type: ignore[attr-defined]
    for action in mails:
        out = action.mail  # type: ignore[attr-defined]
        parsed = sent(messages.Content(out.subject, out.text, out.html))
        html = parsed.get_body(("html",))
        assert html is not None and valid_html(html.get_content()).lang == locales.tag(language)
    if language == "de":
        subjects = sorted(a.mail.subject for a in mails)  # type: ignore[attr-defined]
        assert subjects == [
            "Die Entwicklungsgespräche mit Lea sind beendet",
            "Übergabe der Entwicklung: Ana",
        ]


# --- dates, times, zones and numbers ---------------------------------------------------


def test_dates_times_and_zones_follow_the_language() -> None:
    berlin = datetime(2026, 12, 7, 14, 0, tzinfo=ZoneInfo("Europe/Berlin"))
    line = f"{locales.full_day(berlin, 'de')}, {locales.clock(berlin, 'de')} {locales.zone_name(berlin, 'de')}"
    assert line == "Mo., 7. Dez. 2026, 14:00 MEZ"
    assert locales.full_day(berlin, "en") == "Mon 7 Dec 2026"
    tokyo = berlin.astimezone(ZoneInfo("Asia/Tokyo"))
    assert locales.full_day(tokyo, "ja") == "2026年12月7日(月)"
    assert locales.zone_name(tokyo, "ja") == "JST"
    assert locales.zone_name(berlin.astimezone(ZoneInfo("America/Sao_Paulo")), "pt_BR") == "BRT"
    assert locales.number(6.5, "de") == "6,5" and locales.number(6.5, "en") == "6.5"
    assert locales.number(1234.5, "fr", 2) == "1\u202f234,50"


def test_a_german_agenda_reads_german_dates_and_numbers(tmp_path: Path) -> None:
    content = rendered("agenda", "de", tmp_path)
    assert content.subject == "Agenda: Entwicklungsgespräch Advance mit Ben, Mo., 7. Dez., 14:00"
    assert "Wann: Mo., 7. Dez. 2026, 14:00–15:00 MEZ (Europe/Berlin)" in content.text
    assert "Di., 8. Dez. 2026, 07:00–08:00 JST (Asia/Tokyo)" not in content.text
    assert "Mo., 7. Dez. 2026, 22:00–23:00 JST (Asia/Tokyo)" in content.text
    assert "2,5 Std. (0,14 % der Arbeitszeit" in content.text


def test_english_is_unchanged_by_the_catalogues(tmp_path: Path) -> None:
    content = rendered("agenda", "en", tmp_path)
    assert content.subject == "Agenda: Development Advance with Ben, Mon 7 Dec 14:00"
    assert "When: Mon 7 Dec 2026, 14:00–15:00 CET (Europe/Berlin)" in content.text
    assert "2.5 h (0.14 % of working time" in content.text


# --- replies in the person's language ---------------------------------------------------


@pytest.mark.parametrize("language", locales.SHIPPED)
def test_the_recaps_own_example_lines_read_back_in_every_language(
    language: str, tmp_path: Path
) -> None:
    text = rendered("recap", language, tmp_path).text
    examples = [line.strip().strip('"') for line in text.splitlines() if '"- [' in line]
    assert len(examples) == 2, text
    items, _, problems = replies.read_lines("\n".join(examples))
    assert not problems
    assert [(i.done, i.due) for i in items] == [(False, date(2026, 12, 15)), (True, None)]


@pytest.mark.parametrize(
    ("line", "title", "done", "due", "goal"),
    [
        (
            "- [ ] Angebot entwerfen (fällig 15.12.2026)",
            "Angebot entwerfen",
            False,
            date(2026, 12, 15),
            None,
        ),
        (
            "- [ ] Angebot (fällig am 2026-12-15) (Ziel: Plattform)",
            "Angebot",
            False,
            date(2026, 12, 15),
            "Plattform",
        ),
        (
            "- [ ] redactar la propuesta (hasta 15/12/2026)",
            "redactar la propuesta",
            False,
            date(2026, 12, 15),
            None,
        ),
        (
            "- [ ] hablar con el equipo (para el cliente)",
            "hablar con el equipo (para el cliente)",
            False,
            None,
            None,
        ),
        (
            "- [ ] rédiger (échéance 15/12/2026) (objectif : plateforme)",
            "rédiger",
            False,
            date(2026, 12, 15),
            "plateforme",
        ),
        (
            "- [x] redigir a proposta (prazo 2026-12-15)",
            "redigir a proposta",
            True,
            date(2026, 12, 15),
            None,
        ),
        (
            "・［ ］提案書を書く（期限 2026年12月15日）（目標：基盤）",
            "提案書を書く",
            False,
            date(2026, 12, 15),
            "基盤",
        ),
        ("- ［ｘ］オンコールに同行する", "オンコールに同行する", True, None, None),
        ("- erledigt: Angebot entwerfen", "Angebot entwerfen", True, None, None),
        ("- 完了：提案書を書く", "提案書を書く", True, None, None),
        ("- offen: Lesen (bis 31.01.2027)", "Lesen", False, date(2027, 1, 31), None),
    ],
)
def test_localized_action_lines(
    line: str, title: str, done: bool, due: date | None, goal: str | None
) -> None:
    items, notes, problems = replies.read_lines(line)
    assert not problems and not notes
    assert items == [replies.Item(title, done, due, goal)]


# --- where the language comes from ------------------------------------------------------


def test_the_employees_language_then_the_programs_then_the_global_one() -> None:
    rel = relationship(person("ana", language="ja"), person("ben", language="de"))
    assert rel.language("en") == "ja"
    assert rel.organizer_language("en") == "ja"
    partner_organizes = replace(rel, program=replace(rel.program, organizer="partner"))
    assert partner_organizes.organizer_language("en") == "de"  # the invitation is Ben's
    assert partner_organizes.language("en") == "ja"  # agendas and recaps stay Ana's
    plain = relationship()
    assert plain.language("fr") == "fr"
    program: Program = replace(plain.program, language="es")
    assert replace(plain, program=program).language("fr") == "es"


@pytest.mark.parametrize(
    ("code", "shipped"),
    [("de-DE", "de"), ("pt-BR", "pt_BR"), ("pt", "pt_BR"), ("ja_JP", "ja"), ("en-GB", "en"),
     ("fr-CA", "fr"), ("es-419", "es"), ("nl", None), ("Klingon", None), ("", None)],
)  # fmt: skip
def test_directory_codes_map_to_shipped_catalogues(code: str, shipped: str | None) -> None:
    assert locales.normalize(code) == shipped


CONFIG = """\
language: fr
accounts: {local: {provider: local}}
defaults: {account: local}
people:
  - {email: ana@acme.example, language: pt-br}
  - {email: ben@acme.example}
relationships:
  - {employee: ana@acme.example, partner: ben@acme.example, program: p}
  - {employee: ben@acme.example, partner: ana@acme.example, program: q}
programs:
  p: {series: {check_in: {every: 30d, duration: 15m, title: x}}}
  q: {language: ja-JP, series: {check_in: {every: 30d, duration: 15m, title: x}}}
"""


def test_config_names_a_language_globally_per_person_and_per_program(tmp_path: Path) -> None:
    path = tmp_path / "cadence.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    settings = config.load(path)
    assert settings.language == "fr"
    assert settings.people["ana@acme.example"].language == "pt_BR"
    assert settings.people["ben@acme.example"].language is None
    ana, ben = settings.relationships
    assert (ana.language(settings.language), ben.language(settings.language)) == ("pt_BR", "ja")


def test_a_language_without_a_catalogue_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "cadence.yaml"
    path.write_text(CONFIG.replace("language: pt-br", "language: nl"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"people.*language.*no catalogue for language 'nl'"):
        config.load(path)


# --- overrides per language -------------------------------------------------------------


def test_a_template_can_be_overridden_for_one_language(tmp_path: Path) -> None:
    folder = tmp_path / "templates"
    (folder / "de" / "agenda").mkdir(parents=True)
    (folder / "de" / "agenda" / "align.j2").write_text(
        '{% set heading = "Ausrichten" %}{% set purpose = "Eigener Text." %}'
        '{% set topics = ["Eins"] %}{% set quote = [] %}',
        encoding="utf-8",
    )
    loaded = template_files.load(folder)
    rel = relationship()

    def agenda(language: str) -> str:
        return messages.render(
            "agenda", rel, "deep_dive", "align", START, END, templates=loaded, language=language
        ).text

    assert "Ausrichten: Ana & Ben" in agenda("de") and "Eigener Text." in agenda("de")
    assert "Align: Ana & Ben" in agenda("en") and "Eigener Text." not in agenda("en")
    assert "Align: Ana & Ben" in agenda("fr")


# --- the screenshots in docs/CONTENT.md (`make screenshots`) ----------------------------

#: the sample plans of the screenshots, written in each person's own language
SAMPLE_PLANS = {
    "de": """\
purpose: Software bauen, auf die sich Pflegekräfte jeden Tag verlassen können.
values: [Neugier, Offenheit, Sorgfalt]
strengths: [verteilte Systeme, klare Design-Dokumente]
growth_areas: [ein Team führen, Einfluss ohne Weisungsbefugnis]
skills:
  - {name: Go, level: expert}
  - {name: Moderation, level: learning}
goals:
  - title: Staff Engineer werden
    success: leitet die Plattform-Roadmap für zwei Teams
    milestones:
      - {title: Architektur-Review der Abrechnung leiten, due: 2026-12-18, done: true}
      - {title: Roadmap 2027 vorstellen, due: 2027-02-15}
actions:
  - {title: Entwurf der Roadmap an Ben schicken, goal: Staff Engineer werden, due: 2026-12-04, status: open}
  - {title: Mentoring-Runde mit Lea vereinbaren, due: 2026-12-20, status: open}
""",
    "ja": """\
purpose: 現場の看護師が毎日安心して使えるプロダクトをつくる。
values: [好奇心, 誠実さ, ていねいな仕事]
strengths: [データ分析, 専門外の人へのわかりやすい説明]
growth_areas: [チームを率いること, 権限によらない影響力]
skills:
  - {name: Python, level: expert}
  - {name: プロダクトディスカバリー, level: practising}
goals:
  - title: 需要予測基盤をリードする
    success: 3 つの病院に基盤を導入し、テックリードを務める
    milestones:
      - {title: 基盤の提案書を書く, due: 2026-12-15}
      - {title: 最初の設計レビューを行う, due: 2027-02-01}
actions:
  - {title: 提案書の草案を Ben さんに送る, goal: 需要予測基盤をリードする, due: 2026-12-15, status: open}
  - {title: オンコール当番に 1 週間同行する, goal: 需要予測基盤をリードする, status: done}
""",
}
#: who reads each screenshot: the employee, their zone, and the leader
SAMPLE_PEOPLE = {
    "de": (("farid", "Farid Haddad", "Europe/Berlin"), ("ben", "Ben Ortiz", "Europe/Berlin")),
    "ja": (("yui", "Yui Sato", "Asia/Tokyo"), ("ben", "Ben Ortiz", "Europe/Berlin")),
}


def sample_agenda(language: str, folder: Path) -> str:
    """The Align agenda of a screenshot, as HTML."""
    (emp, emp_name, emp_tz), (lead, lead_name, lead_tz) = SAMPLE_PEOPLE[language]
    path = folder / f"{emp}.yaml"
    path.write_text(SAMPLE_PLANS[language], encoding="utf-8")
    rel = relationship(
        replace(person(emp, tz=emp_tz, language=language), name=emp_name),
        replace(person(lead, tz=lead_tz), name=lead_name),
    )
    return messages.render(
        "agenda",
        rel,
        "deep_dive",
        "align",
        START,
        END,
        plan=idp.load(path),
        templates=TEMPLATES,
        language=language,
        invested_hours=4.5,
    ).html


def main() -> None:  # pragma: no cover - `make screenshots`
    """Write docs/screenshots/agenda-de.png and agenda-ja.png with headless Chromium."""
    import subprocess
    import sys
    import tempfile

    from tests.test_report import chromium

    browser = chromium()
    if browser is None:
        sys.exit("no Chromium: install it (make test-servers does, as root)")
    target = ROOT / "docs" / "screenshots"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for language in ("de", "ja"):
            html = work / f"agenda-{language}.html"
            html.write_text(sample_agenda(language, work), encoding="utf-8")
            png = target / f"agenda-{language}.png"
            subprocess.run(
                [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                 "--no-first-run", f"--user-data-dir={work / 'profile'}",
                 "--window-size=700,1280", f"--screenshot={png}", html.as_uri()],
                capture_output=True, timeout=90, check=True,
            )  # fmt: skip
            print(f"wrote {png}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    main()


@pytest.mark.parametrize("language", locales.SHIPPED)
def test_text_and_html_say_the_same_in_every_language(language: str, tmp_path: Path) -> None:
    from tests.test_content import visible

    for kind in ("agenda", "recap", "invitation", "pick", "update"):
        content = rendered(kind, language, tmp_path)
        seen = visible(content.html)
        for line in content.text.splitlines():
            line = re.sub(r"^(\d+\.|-( \[[ x]\])?|\[[ x]\])\s*", "", line.strip()).strip('"')
            if line.startswith("--") or line.startswith(("- [", '"- [')):
                continue
            core = re.split(r" \(|（", line)[0]
            for piece in re.split(r" ?: |：", core):
                piece = piece.strip(" ,、")
                if len(piece) > 3:
                    assert piece in seen, (kind, language, piece)


def test_the_directory_supplies_languages_the_yaml_leaves_out(tmp_path: Path) -> None:
    from agent.app.demo import create_workspace
    from agent.core.directory import Entry
    from agent.settings import directory

    settings = config.load(create_workspace(tmp_path / "demo", START))
    entries = {
        e.email: e
        for e in (
            Entry("ana@acme.example", "Ana Lima", language="de-DE"),  # the YAML says pt-BR
            Entry("emma@acme.example", "Emma Clarke", language="ja-JP"),  # the YAML says none
            Entry("gia@acme.example", "Gia Rossi", language="it-IT"),  # no catalogue
            Entry("hugo@acme.example", "Hugo Martin", language="fr-CA"),
        )
    }
    people = directory.merge(settings, entries, []).people
    assert people["ana@acme.example"].language == "pt_BR"
    assert people["emma@acme.example"].language == "ja"
    assert people["gia@acme.example"].language is None
    assert people["hugo@acme.example"].language == "fr"
    assert people["dev@acme.example"].language is None


@pytest.mark.parametrize("language", locales.SHIPPED)
def test_the_review_packet_in_every_language(language: str, tmp_path: Path) -> None:
    from agent.views import packet

    held = packet.HeldMeeting(
        date(2026, 11, 3), "x", "Ben Ortiz", "leader", "deep dive", "align", 1.0
    )
    data = packet.Packet(
        person=person("ana", language=language),
        since=date(2026, 1, 1),
        until=date(2026, 12, 7),
        plan=plan(tmp_path),
        plan_problem=None,
        meetings=(held,),
        by_series={},
        by_stage={"Align": 1},
        completed=(replies.Action("shadow an on-call week", status="done"),),
        open=(replies.Action("draft the proposal", due=date(2026, 12, 1)),),
        feedback=(),
        hours=1.5,
        share=0.09,
        language=language,
    )
    html = packet.render(data, "html", TEMPLATES)
    assert valid_html(html).lang == locales.tag(language)
    md = packet.render(data, "md", TEMPLATES)
    heading = TEMPLATES.translations(language).gettext("Actions open")
    assert f"## {heading}" in md and heading in html
    if language == "de":
        assert "1,5 Std. in 1 Entwicklungsgespr" in md and "(Führungskraft)" in md


def test_the_invitation_is_the_organizers_and_the_agenda_the_employees() -> None:
    from agent.rules.classify import Meeting, Own, Status

    rel = relationship(person("ana", language="ja"), person("ben", language="de"))
    rel = replace(rel, program=replace(rel.program, organizer="partner"))
    start = START + timedelta(hours=20)
    meeting = Meeting("m1", rel.id, "deep_dive", "t", start, start + timedelta(hours=1),
                      Status.SCHEDULED, stage="align", key="k1")  # fmt: skip
    ctx = mailplan.MailContext(
        START, (rel,), b"s" * 32, invites={rel.organizer.account: True}, templates=TEMPLATES
    )
    sends = mailplan.due(ctx, rel, [meeting], [], {"k1": Own(rel.id, "deep_dive", "align")})
    subjects = {s.kind: s.mail.subject for s in sends}
    assert subjects["invite"].startswith("Einladung: Entwicklungsgespräch Align mit Ben")
    assert subjects["agenda"].startswith("アジェンダ：Benさんとのキャリア面談（Align）")


WHAT_TITLE = "{{ what }}: {{ employee.first_name }} & {{ partner.first_name }}"


def _titled(rel: Relationship, title: str, organizer: str = "employee") -> Relationship:
    series = tuple(replace(s, title=title) for s in rel.program.series)
    return replace(rel, program=replace(rel.program, series=series, organizer=organizer))


def test_the_event_title_follows_the_organizers_language() -> None:
    from agent.rules.classify import Meeting, Own, Status

    ana, ben = person("ana", language="ja"), person("ben", language="de")
    rel = _titled(relationship(ana, ben), WHAT_TITLE)
    title = messages.event_title
    assert title(rel, "deep_dive", "align", TEMPLATES) == "キャリア面談（Align）: Ana & Ben"
    assert title(rel, "check_in", None, TEMPLATES) == "成長チェックイン: Ana & Ben"
    by_ben = _titled(relationship(ana, ben), WHAT_TITLE, organizer="partner")
    assert title(by_ben, "deep_dive", "align", TEMPLATES) == "Entwicklungsgespräch Align: Ana & Ben"
    assert title(by_ben, "check_in", None, TEMPLATES) == "Entwicklungs-Check-in: Ana & Ben"
    # nobody names a language: the global one; English reads as the stock titles always did
    nobody = _titled(relationship(), WHAT_TITLE)
    assert title(nobody, "deep_dive", "advance", TEMPLATES, "fr").startswith(
        "Entretien de développement Advance: "
    )
    assert title(nobody, "deep_dive", "align", TEMPLATES) == "Development Align: Ana & Ben"
    assert title(nobody, "check_in", None, TEMPLATES) == "Development check-in: Ana & Ben"
    # a title written out in words stays as written; ``language`` lets a template choose
    assert title(relationship(ana, ben), "deep_dive", "align", TEMPLATES) == (
        "Development Align: Ana & Ben"
    )
    own = _titled(relationship(ana, ben), "{{ 'Gespräch' if language == 'de' else 'Talk' }}")
    assert title(own, "deep_dive", "align", TEMPLATES) == "Talk"
    assert title(_titled(relationship(ana, ben), own.program.series[0].title, "partner"),
                 "deep_dive", "align", TEMPLATES) == "Gespräch"  # fmt: skip

    # the invitation Ben sends carries his title, in the ICS and in the subject
    start = START + timedelta(hours=20)
    meeting = Meeting("m1", by_ben.id, "deep_dive", "t", start, start + timedelta(hours=1),
                      Status.SCHEDULED, stage="align", key="k1")  # fmt: skip
    ctx = mailplan.MailContext(
        START, (by_ben,), b"s" * 32, invites={ben.account: True}, templates=TEMPLATES
    )
    sends = mailplan.due(ctx, by_ben, [meeting], [], {"k1": Own(by_ben.id, "deep_dive", "align")})
    invite = next(s.mail for s in sends if s.kind == "invite")
    assert invite.invitation is not None
    assert "SUMMARY:Entwicklungsgespräch Align: Ana & Ben" in invite.invitation.ics


def test_the_pick_a_time_mail_says_why_in_the_readers_language() -> None:
    ana, ben = person("ana"), person("ben")
    reason = "declined by ben@acme.example; already moved 1 time(s): asking ana@acme.example to pick a time"
    de = TEMPLATES.translations("de").gettext
    assert mailplan.why(reason, "de", de, (ana, ben)) == "Ben hat abgesagt."
    assert mailplan.why("cancelled; not moved", "de", de) == "Der Termin wurde abgesagt."
    assert mailplan.why(reason, "en", de, (ana, ben)) == reason  # English keeps the detail


@pytest.mark.parametrize("language", locales.SHIPPED)
def test_every_provider_sends_the_subject_as_written(language: str, tmp_path: Path) -> None:
    from agent.connectors.google.mail import build_message as gmail_message
    from agent.connectors.microsoft.mail import build_mime
    from agent.connectors.smtp.send import build_message as smtp_message

    content = rendered("update", language, tmp_path)
    out = OutgoingMail(
        key="k",
        sender="ana@acme.example",
        sender_name="Ana Lima",
        to=("ana@acme.example",),
        subject=content.subject + " " + content.subject,  # long enough to fold
        text=content.text,
        html=content.html,
        message_id="<k@cadence>",
    )
    for built in (
        smtp_message(out),
        gmail_message(out, "ana@acme.example"),
        build_mime(out, "ana@acme.example"),
    ):
        raw = built.as_bytes()
        assert raw.split(b"\n\n", 1)[0].split(b"\r\n\r\n", 1)[0].isascii()
        parsed = email.message_from_bytes(raw, policy=policy.default)
        assert str(parsed["Subject"]) == out.subject


def test_the_tick_summary_speaks_the_global_language(workspace: Path) -> None:
    """``cadence run`` prints its lines about people in the config's ``language:``."""
    from typer.testing import CliRunner

    from agent.app.cli import app
    from tests.conftest import NOW

    workspace.write_text(workspace.read_text() + "language: de\n")
    run = ["run", "--once", "--config", str(workspace), "--now", NOW.isoformat()]
    out = CliRunner().invoke(app, run).output
    assert f"Lauf um {NOW:%Y-%m-%d %H:%M} UTC (ausgeführt)" in out
    assert "Emma Clarke (Europe/London) mit Führungskraft Ben Ortiz (Europe/Berlin)" in out
    assert "Ana Lima (America/Sao_Paulo) mit Führungskraft Ben Ortiz" in out
    assert "; Mail auf pt-BR" in out  # Ana's own language, named in the operator's
    assert "Termin gebucht" not in out and "  → gebucht: " in out
    assert "zuletzt 20" in out or "noch nie" in out
    assert re.search(r"^Erledigt: \d+ gebucht, \d+ Mails\.$", out, re.M), out
    assert "booked" not in out.replace("Booked by", "")
