"""The web app in each person's language: every page drawn in every shipped language
(``<html lang>``, a translated sentence, dates as Babel writes them in the reader's zone),
the browser's ``Accept-Language`` before sign-in, and the sign-in mail, refusals, form
errors and the pick-a-time page in the reader's language."""

from __future__ import annotations

import email
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from email import policy
from html import unescape
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
from starlette.testclient import TestClient

from agent.core import locales
from agent.core.timestamps import to_store
from agent.settings import config, idp
from agent.store.plans import PlanRows
from agent.store.sqlite import Store
from agent.tick.picks import nonce
from agent.web import i18n
from agent.web.app import Probes, create
from agent.web.base import Web
from tests.conftest import NOW
from tests.web_helpers import ADMIN, csrf_of, signin_links, web_workspace

BEN, EMMA, FARID = (f"{n}@acme.example" for n in ("ben", "emma", "farid"))
BERLIN, LONDON = ZoneInfo("Europe/Berlin"), ZoneInfo("Europe/London")
LANG = re.compile(r'<html lang="([^"]+)">')
TIME = re.compile(r'<time datetime="([^"]+)">([^<]+)</time>')

#: the navigation's "My team" as each catalogue writes it (hard-coded: a catalogue that
#: lost the entry, or a page that skipped the catalogue, fails here)
MY_TEAM = {
    "en": "My team",
    "de": "Mein Team",
    "es": "Mi equipo",
    "fr": "Mon équipe",
    "pt_BR": "Minha equipe",
    "ja": "自分のチーム",
}


def open_site(path: Path) -> tuple[TestClient, Web]:
    settings = config.load(path)
    web = Web(settings, clock=lambda: NOW)
    probes = Probes(lambda: (True, {"status": "ok"}), lambda: b"", "text/plain")
    return TestClient(create(settings, probes, web), base_url="https://testserver"), web


@pytest.fixture
def emma_site(workspace: Path, request: pytest.FixtureRequest) -> Iterator[tuple[TestClient, Web]]:
    """The demo with ``language:`` set globally: Emma names none, so it is hers."""
    path = web_workspace(workspace, NOW.isoformat(), f"language: {request.param}\n")
    client, web = open_site(path)
    with client:
        yield client, web


def sign_in(client: TestClient, web: Web, who: str, headers: dict[str, str] | None = None) -> str:
    """Sign ``who`` in by the mailed link; the sign-in mail's subject."""
    client.cookies.clear()
    page = client.get("/signin", headers=headers)
    assert (
        client.post("/signin", data={"email": who, "csrf": csrf_of(page.text)}).status_code == 200
    )
    outbox = web.settings.base / "outbox"
    link = urlsplit(signin_links(outbox, who)[-1])
    confirm = client.get(f"{link.path}?{link.query}", headers=headers)
    assert confirm.status_code == 200
    done = client.post(
        "/signin/link",
        data={"t": link.query.removeprefix("t="), "csrf": csrf_of(confirm.text)},
        follow_redirects=False,
    )
    assert done.status_code == 303
    mails = sorted(outbox.glob("signin-*.eml"), key=lambda p: p.stat().st_mtime_ns)
    sent = email.message_from_bytes(mails[-1].read_bytes(), policy=policy.default)
    return str(sent["Subject"])


def assert_in(page: str, language: str, *messages: str, gettext: object) -> None:
    """The page is in ``language``: its lang attribute, and each message translated (and,
    in another language than English, the English source gone)."""
    page = unescape(page)
    assert LANG.search(page) and LANG.search(page).group(1) == locales.tag(language)  # type: ignore[union-attr]
    for message in messages:
        translated = gettext(message)  # type: ignore[operator]
        assert translated in page, f"{language}: {translated!r} not on the page"
        if language != locales.SOURCE:
            assert translated != message, f"{language}: {message!r} is not translated"
            assert f">{message}<" not in page, f"{language}: {message!r} left in English"


@pytest.mark.parametrize("emma_site", locales.SHIPPED, indirect=True)
def test_every_page_in_every_shipped_language(emma_site) -> None:  # type: ignore[no-untyped-def]
    client, web = emma_site
    language = web.settings.language
    _ = web.gettext(language)
    tag = {"Accept-Language": locales.tag(language)}

    signin = client.get("/signin", headers=tag)
    assert signin.headers["content-language"] == locales.tag(language)
    assert "Accept-Language" in signin.headers["vary"]
    assert_in(signin.text, language, "Sign in", "Mail me a sign-in link", gettext=_)

    subject = sign_in(client, web, EMMA)
    assert subject == _("Your Cadence sign-in link")
    home = client.get("/")
    assert_in(home.text, language, "My cadence", "the people I lead or mentor", gettext=_)
    assert MY_TEAM[language] in home.text

    me = client.get("/me")
    assert_in(me.text, language, "Upcoming meetings", "My open actions", "Leave", gettext=_)
    # every date and time on it in Emma's zone and as her language writes them
    times = TIME.findall(me.text)
    assert len(times) >= 3
    for stamp, text in times:
        dt = datetime.fromisoformat(stamp)
        assert text in (
            i18n.moment(dt, LONDON, language=language, _=_),
            i18n.day(dt, LONDON, language=language),
        ), (stamp, text)

    plan = client.get("/me/plan")
    assert_in(plan.text, language, "My development plan", "Others who may read my plan", gettext=_)

    team = client.get("/team")  # Emma mentors Farid
    assert_in(team.text, language, "My load", "Week of", gettext=_)
    assert _("mentor") in unescape(team.text)

    rel = client.get(f"/relationships/{EMMA}/{BEN}")
    assert_in(rel.text, language, "Upcoming meetings", gettext=_)

    # Farid shares his plan: Emma, his mentor, reads it
    store = Store(web.settings.store)
    try:
        farid = idp.load(web.settings.resolve("plans/farid.yaml"))
        PlanRows(store).save(FARID, farid, by=FARID, how="web", now=NOW, shared=True)
    finally:
        store.close()
    shared = client.get(f"/plans/{FARID}")
    assert shared.status_code == 200
    assert_in(shared.text, language, "Strengths", "Open actions", gettext=_)

    # the pick-a-time page of a mail to Emma, in her language
    start = NOW + timedelta(days=3)
    data = {"r": f"{EMMA}/{BEN}", "k": "k9", "m": 1, "s": to_store(start),
            "e": to_store(start + timedelta(hours=1))}  # fmt: skip
    token = web.keys.pick.make(data, NOW, web.conf.pick, nonce("k9", 1))
    pick = client.get(f"/pick?t={token}")
    assert_in(pick.text, language, "Pick a time", "Pick this time", gettext=_)
    assert i18n.span(start.astimezone(LONDON), (start + timedelta(hours=1)).astimezone(LONDON),
                     language=language, _=_) in unescape(pick.text)  # fmt: skip

    refused = client.get("/admin")
    assert refused.status_code == 403
    assert_in(refused.text, language, "Not available", gettext=_)
    assert _("only administrators and HR see this") in unescape(refused.text)
    missing = client.get("/nowhere")
    assert missing.status_code == 404 and _("no such page") in unescape(missing.text)

    # HR is no person of the config: the global language (no Accept-Language sent)
    sign_in(client, web, ADMIN)
    admin = client.get("/admin")
    assert_in(admin.text, language, "Health", "Last ticks", gettext=_)
    store = Store(web.settings.store)
    try:
        started = store.ticks(1)[0]["started_at"]
    finally:
        store.close()
    assert i18n.moment(started, BERLIN, language=language, _=_) in admin.text
    log = client.get("/admin/log")
    assert_in(log.text, language, "Audit log", "Filter", gettext=_)


def test_accept_language_is_negotiated_against_the_shipped_languages() -> None:
    assert i18n.accepted("fr-CA,fr;q=0.9, en;q=0.5, *;q=0.1") == ["fr_CA", "fr", "en"]
    assert i18n.accepted("en;q=0.2, ja") == ["ja", "en"]
    assert i18n.accepted("de;q=0, es;q=x") == []
    assert i18n.negotiate("de-AT,de;q=0.9,en;q=0.5") == "de"
    assert i18n.negotiate("it, pt-BR;q=0.8") == "pt_BR"
    assert i18n.negotiate("it, pt;q=0.8") == "pt_BR"
    assert i18n.negotiate("pt-PT") == "pt_BR"  # the nearest catalogue
    assert i18n.negotiate("zh-CN, it") is None
    assert i18n.negotiate("") is None and i18n.negotiate(None) is None


def test_pages_before_sign_in_follow_the_browser_and_people_their_own(workspace: Path) -> None:
    client, web = open_site(web_workspace(workspace, NOW.isoformat()))
    with client:
        for header, lang in (
            ("ja-JP,ja;q=0.9,en;q=0.8", "ja"),
            ("it-IT, es;q=0.7", "es"),
            ("zh-CN", "en"),  # none shipped: the global language
        ):
            page = client.get("/signin", headers={"Accept-Language": header})
            assert LANG.search(page.text).group(1) == lang  # type: ignore[union-attr]
        # Ben reads German (language: de): pages and his sign-in mail, whatever the browser says
        english = {"Accept-Language": "en-GB,en"}
        assert sign_in(client, web, BEN, english) == "Dein Anmeldelink für Cadence"
        team = client.get("/team", headers=english)
        assert 'lang="de"' in team.text and "Mein Team" in team.text and "Woche ab" in team.text
        # a plan form error in his language, next to its field
        page = client.get("/me/plan")
        assert page.status_code == 403 and "du hast selbst keine Entwicklungsbeziehung" in page.text
        sign_in(client, web, FARID, english)  # German too; he is Ben's employee
        page = client.get("/me/plan")
        form = {"csrf": csrf_of(page.text), "version": "0", "goals-0-title": "Führen lernen"}
        form["goals-0-milestones"] = "2027-03-31"
        bad = client.post("/me/plan", data=form)
        assert bad.status_code == 422
        assert "Der Plan wurde nicht gespeichert" in bad.text
        assert "Zeile 1: erst ein Datum (JJJJ-MM-TT), dann den Meilenstein" in bad.text


def test_the_pick_page_is_in_the_employees_language(workspace: Path) -> None:
    client, web = open_site(web_workspace(workspace, NOW.isoformat()))
    ana = "ana@acme.example"  # reads Brazilian Portuguese
    start = NOW + timedelta(days=3)
    data = {
        "r": f"{ana}/{BEN}",
        "k": "k1",
        "m": 1,
        "s": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "e": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    token = web.keys.pick.make(data, NOW, web.conf.pick, nonce("k1", 1))
    with client:
        page = client.get(f"/pick?t={token}", headers={"Accept-Language": "en"})
        assert page.status_code == 200 and 'lang="pt-BR"' in page.text
        assert "Escolher este horário" in page.text
        local = start.astimezone(ZoneInfo("America/Sao_Paulo"))
        assert locales.full_day(local, "pt_BR") in page.text
        wrong = client.get(f"/pick?t={token[:-3]}xyz", headers={"Accept-Language": "fr"})
        assert wrong.status_code == 403 and "ce lien n'est pas valide" in unescape(wrong.text)
