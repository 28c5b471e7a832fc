from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.connectors.microsoft import Graph, MicrosoftCalendar, MicrosoftMailer
from agent.core.model import Person
from tests.microsoft import fixtures
from tests.microsoft.server import GraphServer

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture
def staff() -> list[Person]:
    return fixtures.people()


@pytest.fixture
def server(staff: list[Person]) -> Iterator[GraphServer]:
    with GraphServer([p.email for p in staff]) as s:
        yield s


@pytest.fixture
def ca(server: GraphServer, tmp_path: Path) -> Path:
    return server.write_ca(tmp_path / "graph-ca.pem")


@pytest.fixture
def graph(server: GraphServer, ca: Path) -> Iterator[Graph]:
    g = fixtures.graph(server, ca)
    yield g
    g.close()


@pytest.fixture
def cal(graph: Graph, staff: list[Person]) -> MicrosoftCalendar:
    return MicrosoftCalendar(graph, staff)


@pytest.fixture
def mailer(graph: Graph) -> MicrosoftMailer:
    return MicrosoftMailer(graph)
