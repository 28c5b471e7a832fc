"""An employee names, one by one, who may read their plan: the form, its checks and CSRF,
and the denials around it (anyone not named gets 403 and none of the plan)."""

from __future__ import annotations

import re

from agent.settings import config, idp
from agent.store.directory import DirectoryRows
from agent.store.plans import PlanRows
from agent.store.readers import ReaderRows
from agent.store.sqlite import Store
from tests.conftest import NOW
from tests.test_web import ANA, BEN, DEV, EMMA, sign_in, site  # noqa: F401
from tests.web_helpers import ADMIN, csrf_of

SECRET = "forecasting"  # in Ana's plan


def _store_ana_plan(folder) -> None:  # type: ignore[no-untyped-def]
    settings = config.load(folder / "cadence.yaml")
    store = Store(folder / "var" / "cadence.db")
    plan = idp.load(settings.resolve("plans/ana.yaml"))
    PlanRows(store).save(ANA, plan, by=ANA, how="web", now=NOW, shared=False)
    store.close()


def _readers(folder) -> list[str]:  # type: ignore[no-untyped-def]
    store = Store(folder / "var" / "cadence.db")
    try:
        return [r.email for r in ReaderRows(store).of(ANA)]
    finally:
        store.close()


def _choose(client, text: str):  # type: ignore[no-untyped-def]
    page = client.get("/me/plan")
    assert page.status_code == 200 and 'action="/me/readers"' in page.text
    return client.post(
        "/me/readers", data={"readers": text, "csrf": csrf_of(page.text)}, follow_redirects=False
    )


def _refused(client, path: str) -> None:  # type: ignore[no-untyped-def]
    got = client.get(path)
    assert got.status_code == 403, path
    assert SECRET not in got.text and "Purpose" not in got.text, path


def test_a_chosen_reader_reads_the_plan_and_nothing_else(site) -> None:  # noqa: F811  # type: ignore[no-untyped-def]
    client, _, _, folder = site
    _store_ana_plan(folder)
    sign_in(client, folder, EMMA)
    _refused(client, f"/plans/{ANA}")  # a peer, not chosen

    sign_in(client, folder, ANA)
    done = _choose(client, f"  {EMMA.upper()}\n\n")
    assert done.status_code == 303 and done.headers["location"] == "/me/plan?readers=1#readers"
    assert _readers(folder) == [EMMA]
    page = client.get("/me/plan?readers=1")
    assert "Salvo: quem pode ler seu plano." in page.text  # Ana reads Brazilian Portuguese
    assert re.search(rf">{re.escape(EMMA)}</textarea>", page.text)

    sign_in(client, folder, EMMA)
    home = client.get("/")
    assert f'href="/plans/{ANA}">Ana Lima</a>' in home.text
    plan = client.get(f"/plans/{ANA}")
    assert plan.status_code == 200 and SECRET in plan.text
    # the plan only: not Ana's meetings, her cadence or her relationships
    _refused(client, f"/relationships/{ANA}/{BEN}")

    for other in (DEV, BEN):  # a peer not chosen; her leader, since she does not share it
        sign_in(client, folder, other)
        _refused(client, f"/plans/{ANA}")
        assert f'href="/plans/{ANA}"' not in client.get("/").text
    sign_in(client, folder, ADMIN)
    _refused(client, f"/plans/{ANA}")

    sign_in(client, folder, ANA)
    assert _choose(client, "").status_code == 303  # no one any more
    assert _readers(folder) == []
    sign_in(client, folder, EMMA)
    _refused(client, f"/plans/{ANA}")


def test_readers_must_be_people_cadence_knows(site) -> None:  # noqa: F811  # type: ignore[no-untyped-def]
    client, _, _, folder = site
    _store_ana_plan(folder)
    sign_in(client, folder, ANA)
    got = _choose(client, f"{EMMA}\nstranger@elsewhere.example\n{ANA}")
    assert got.status_code == 422
    # in Ana's Brazilian Portuguese: "line 2: … is not someone Cadence knows", "… is you"
    assert "linha 2: o Cadence não conhece stranger@elsewhere.example" in got.text
    assert "linha 3: ana@acme.example é você" in got.text
    assert "stranger@elsewhere.example" in re.search(
        r"<textarea[^>]*f-readers.*?</textarea>", got.text, re.S
    ).group(0)  # type: ignore[union-attr]
    assert _readers(folder) == []  # nothing saved, not even the good line


def test_choosing_readers_needs_the_csrf_token_and_a_plan_of_ones_own(site) -> None:  # noqa: F811  # type: ignore[no-untyped-def]
    client, _, _, folder = site
    sign_in(client, folder, ANA)
    client.get("/me/plan")
    assert client.post("/me/readers", data={"readers": EMMA}).status_code == 403
    forged = {"readers": EMMA, "csrf": "0" * 64}
    assert client.post("/me/readers", data=forged).status_code == 403
    assert _readers(folder) == []
    sign_in(client, folder, ADMIN)  # no relationship of their own: no plan to share
    page = client.get("/")
    got = client.post("/me/readers", data={"readers": EMMA, "csrf": csrf_of(page.text)})
    assert got.status_code == 403
    assert _readers(folder) == []


def test_forget_erases_the_readers_both_ways(site) -> None:  # noqa: F811  # type: ignore[no-untyped-def]
    _, _, _, folder = site
    store = Store(folder / "var" / "cadence.db")
    rows = ReaderRows(store)
    rows.choose(ANA, {EMMA, DEV}, ANA, NOW)
    rows.choose(DEV, {ANA}, DEV, NOW)
    assert DirectoryRows(store).export(EMMA)["plan_readers"][0]["employee"] == ANA
    counts = DirectoryRows(store).forget(ANA, NOW)
    assert counts["plan_readers"] == 3
    assert rows.of(ANA) == [] and rows.of(DEV) == [] and rows.plans_for(EMMA) == []
    store.close()
