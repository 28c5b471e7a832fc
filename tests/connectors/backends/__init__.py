"""Backends for the connector contract suite (tests/connectors/test_contract.py).

Each module here is one provider's backend: it exposes ``backend(tmp_path)``, a context
manager yielding an object with the shape of :class:`Backend`, running the provider's
local server (Radicale, aiosmtpd, the fake Google or Graph server, ...) for the duration.
The contract suite is parametrised over every module in this package, so adding a
provider means adding one module here and nothing else.
"""

from __future__ import annotations

import email.message
import email.policy
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Protocol

from agent.connectors.base import Calendar, Mailer
from agent.core.model import Person


class Backend(Protocol):
    calendar: Calendar
    mailer: Mailer
    #: at least three people on the account, each with a calendar the connector can read
    people: Sequence[Person]

    def add_event(
        self,
        owner: Person,
        title: str,
        start: datetime,
        end: datetime,
        attendees: Sequence[Person] = (),
        *,
        all_day: bool = False,
        rrule: str | None = None,
        transparent: bool = False,
    ) -> str:
        """Put an event on ``owner``'s calendar the way a person would (not through the
        connector); return its provider id. ``rrule`` is an RFC 5545 RRULE value."""
        ...

    def delivered(self) -> list[email.message.EmailMessage]:
        """Every mail the provider has delivered or accepted for sending, parsed."""
        ...


def reparsed(sent: Iterable[email.message.Message]) -> list[email.message.EmailMessage]:
    """``sent`` as a mail client reads it: from its bytes, with the default policy, so a
    header the sender folded or encoded is checked as delivered, not as composed."""
    out = []
    for msg in sent:
        parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        out.append(parsed)
    return out
