from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.connectors.exchange import Ews, ExchangeCalendar, ExchangeMailer
from agent.core.model import Person
from tests.exchange import fixtures
from tests.exchange.server import EwsServer


@pytest.fixture
def staff() -> list[Person]:
    return fixtures.people()


@pytest.fixture
def server(staff: list[Person]) -> Iterator[EwsServer]:
    with fixtures.server_for(staff) as s:
        yield s


@pytest.fixture
def ca(server: EwsServer, tmp_path: Path) -> Path:
    return server.write_ca(tmp_path / "ews-ca.pem")


@pytest.fixture
def ews(server: EwsServer, ca: Path) -> Iterator[Ews]:
    connection = fixtures.ews(server, ca)
    yield connection
    connection.close()


@pytest.fixture
def cal(ews: Ews, staff: list[Person]) -> ExchangeCalendar:
    return ExchangeCalendar(ews, staff)


@pytest.fixture
def mailer(ews: Ews) -> ExchangeMailer:
    return ExchangeMailer(ews)
