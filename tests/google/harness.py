"""A Google Workspace for tests: the fake server, a service-account key, a config file."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from agent.connectors import Context
from agent.connectors import google as connector
from agent.core.model import Person
from agent.core.retry import RetryPolicy
from agent.settings import config
from agent.settings.config import Settings
from tests.environ import clean_environ
from tests.google.server import GoogleServer

SERVICE_ACCOUNT = "cadence@cadence-test.iam.gserviceaccount.com"
PEOPLE = (
    ("ana@acme.example", "Ana Lima", "America/Sao_Paulo"),
    ("ben@acme.example", "Ben Ortiz", "Europe/Berlin"),
    ("chloe@acme.example", "Chloe Park", "Europe/Berlin"),
)

#: Ana led by Ben in a leader cycle: the programs of the whole-tick and crash tests
PROGRAMS = """\
relationships:
  - {employee: ana@acme.example, partner: ben@acme.example, role: leader, program: leader-cycle}
programs:
  leader-cycle:
    organizer: employee
    series:
      deep_dive:
        every: 90d
        duration: 60m
        stages: [align, advance, amplify, advocate]
        title: "Deep dive {{ stage | title }}: {{ employee.first_name }} & {{ partner.first_name }}"
        match: '(?i)\\b(align|advance|amplify|advocate|deep dive)\\b'
      check_in:
        every: 30d
        duration: 15m
        skip_near: deep_dive
        title: "Development check-in: {{ employee.first_name }} & {{ partner.first_name }}"
        match: '(?i)\\bcheck-?in\\b'
    lapse_grace: 7d
    booking: {horizon: 14d, lead_time: 2d, window: "10:00-16:00", buffer: 10m, conference: auto}
    agenda: {before: 24h}
    recap: {after: 2h}
"""


@cache
def rsa_key() -> rsa.RSAPrivateKey:
    """One RSA key per test run: generating one takes a noticeable moment."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def write_secret(path: Path, data: dict[str, object]) -> Path:
    path.write_text(json.dumps(data))
    path.chmod(0o600)
    return path


@dataclass
class Workspace:
    server: GoogleServer
    settings: Settings
    path: Path

    @property
    def people(self) -> list[Person]:
        return list(self.settings.people.values())

    def person(self, prefix: str) -> Person:
        return next(p for p in self.people if p.email.startswith(prefix))

    def context(self, retry: RetryPolicy | None = None) -> Context:
        return Context(
            name="acme",
            account=self.settings.accounts["acme"],
            settings=self.settings,
            people=self.people,
            retry=retry or RetryPolicy.none(),
        )

    def connect(
        self, retry: RetryPolicy | None = None
    ) -> tuple[connector.GoogleCalendar, connector.GoogleMailer]:
        return connector.connect(self.context(retry))


def account_yaml(server: GoogleServer, credentials: str, extra: str = "") -> str:
    return (
        "accounts:\n"
        "  acme:\n"
        "    provider: google\n"
        f"    credentials: {credentials}\n"
        "    endpoints:\n"
        f"      calendar: {server.endpoints['calendar']}\n"
        f"      gmail: {server.endpoints['gmail']}\n"
        f"{extra}"
    )


def people_yaml(people: tuple[tuple[str, str, str], ...] = PEOPLE) -> str:
    lines = ["people:"]
    for email_address, name, zone in people:
        lines.append(f"  - {{email: {email_address}, name: {name}, timezone: {zone}}}")
    return "\n".join(lines) + "\n"


@contextmanager
def workspace(
    tmp_path: Path,
    *,
    people: tuple[tuple[str, str, str], ...] = PEOPLE,
    delegated: list[str] | None = None,
    rest: str = "",
    account_extra: str = "",
    tls: ssl.SSLContext | None = None,
    threaded: bool = False,
) -> Iterator[Workspace]:
    """Run the fake Google with a calendar per person and a delegated service account
    (``threaded``: a thread per connection, with keep-alive)."""
    with clean_environ(), GoogleServer(tls, threaded=threaded) as server:
        for email_address, _, zone in people:
            server.state.add_calendar(email_address, zone)
        sa = server.state.add_service_account(
            SERVICE_ACCOUNT, set(delegated or connector.scopes_for(True)), rsa_key()
        )
        write_secret(tmp_path / "key.json", sa.key_file(server.token_uri))
        path = tmp_path / "cadence.yaml"
        path.write_text(
            "timezone: Europe/Berlin\nstore: cadence.db\n"
            + account_yaml(server, "key.json", account_extra)
            + people_yaml(people)
            + rest
        )
        yield Workspace(server, config.load(path), path)
