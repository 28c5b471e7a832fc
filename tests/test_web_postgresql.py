"""The web app on a PostgreSQL store: sign-in links used once, the admin's log, and a
plan saved with its history, as on SQLite (``test_web.py``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from agent.settings import config
from agent.store.plans import PlanRows
from agent.store.sqlite import Store
from agent.web.app import Probes, create
from agent.web.base import Web
from tests.conftest import NOW
from tests.stores import use_store
from tests.test_web import BEN, EMMA, Clock, _plan_form, sign_in
from tests.web_helpers import ADMIN, web_workspace


@pytest.fixture
def pg_site(workspace: Path, postgres: str) -> Iterator[tuple[TestClient, Path, str]]:
    use_store(workspace, postgres)
    path = web_workspace(workspace, NOW.isoformat())
    settings = config.load(path)
    web = Web(settings, clock=Clock())
    probes = Probes(lambda: (True, {"status": "ok"}), lambda: b"", "text/plain")
    with TestClient(create(settings, probes, web), base_url="https://testserver") as client:
        yield client, path.parent, postgres


def test_the_web_app_on_postgresql(pg_site: tuple[TestClient, Path, str]) -> None:
    client, folder, url = pg_site
    sign_in(client, folder, ADMIN)
    log = client.get("/admin/log", params={"relationship": f"{EMMA}/{BEN}"})
    assert log.status_code == 200 and f"{EMMA}/{BEN}" in log.text
    sign_in(client, folder, EMMA)
    form = _plan_form(client)
    good = {**form, "purpose": "Lead a calm, learning mobile team.", "shared": "on"}
    saved = client.post("/me/plan", data=good, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    store = Store(url)
    try:
        stored = PlanRows(store).get(EMMA)
        assert stored is not None and stored.version == 1 and stored.shared
        assert PlanRows(store).history(EMMA)[0].how == "web"
        assert len(PlanRows(store).used("signin")) == 2
    finally:
        store.close()
    stale = client.post("/me/plan", data={**good, "purpose": "older"})
    assert stale.status_code == 422 and "changed since you opened it" in stale.text
