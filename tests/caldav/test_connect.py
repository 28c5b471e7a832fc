"""Opening the provider from a YAML config, and the contract backend's behaviour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.connectors import Context, connect
from agent.connectors.base import SendsInvitations
from agent.connectors.caldav import CalDAVCalendar
from agent.connectors.smtp import SmtpMailer
from agent.core.errors import ConfigError, PermanentError
from agent.core.model import EventDraft, Interval, OutgoingMail
from agent.core.retry import RetryPolicy
from agent.settings import config
from tests.caldav.servers import Radicale, SmtpSink
from tests.connectors.backends.caldav import PASSWORD_ENV, backend, write_config

WINDOW = Interval(datetime(2026, 11, 1, tzinfo=UTC), datetime(2027, 1, 31, tzinfo=UTC))


def context(path: Path) -> Context:
    settings = config.load(path)
    return Context(
        name="team",
        account=settings.accounts["team"],
        settings=settings,
        people=list(settings.people.values()),
        retry=RetryPolicy.none(),
    )


def test_connect_opens_calendar_and_mailer_from_config(
    tmp_path: Path, radicale: Radicale, smtp: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    for user in ("ana", "ben", "chloe"):
        radicale.make_calendar(user)
    monkeypatch.setenv(PASSWORD_ENV, "pw")
    calendar, mailer = connect(context(write_config(tmp_path / "c.yaml", radicale, smtp)))
    try:
        assert isinstance(calendar, CalDAVCalendar) and isinstance(mailer, SmtpMailer)
        assert not isinstance(calendar, SendsInvitations)
        ana = next(p for p in calendar_people(tmp_path / "c.yaml") if p.email.startswith("ana"))
        assert calendar.changes(ana, None, WINDOW).full
        # the account's credentials go with every request (preemptive basic auth)
        assert radicale.requests[-1].method == "REPORT"
    finally:
        calendar.close()
        mailer.close()


def calendar_people(path: Path) -> list:  # type: ignore[type-arg]
    return list(config.load(path).people.values())


def test_missing_password_variable_is_a_config_error(
    tmp_path: Path, radicale: Radicale, smtp: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)
    with pytest.raises(ConfigError, match=PASSWORD_ENV):
        connect(context(write_config(tmp_path / "c.yaml", radicale, smtp)))


def test_account_without_smtp_is_a_config_error(
    tmp_path: Path, radicale: Radicale, smtp: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "pw")
    path = write_config(tmp_path / "c.yaml", radicale, smtp)
    path.write_text(
        "\n".join(line for line in path.read_text().splitlines() if "smtp:" not in line)
    )
    with pytest.raises(ConfigError, match="smtp"):
        connect(context(path))


def test_unknown_account_key_names_file_and_line(
    tmp_path: Path, radicale: Radicale, smtp: SmtpSink
) -> None:
    path = write_config(tmp_path / "c.yaml", radicale, smtp)
    path.write_text(path.read_text().replace("    username: cadence", "    usernme: cadence"))
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert "c.yaml:" in str(err.value) and "usernme" in str(err.value)


def test_contract_backend_round_trip(tmp_path: Path) -> None:
    """What the connector contract suite checks, run here against Radicale and aiosmtpd."""
    with backend(tmp_path) as b:
        ana, ben, _ = b.people
        start = datetime(2026, 12, 1, 13, tzinfo=UTC)
        ident = b.add_event(ana, "Planning", start, start + timedelta(hours=1), [ben])
        b.add_event(
            ana,
            "Off",
            ana.local(start + timedelta(days=1)).replace(hour=0),
            ana.local(start + timedelta(days=2)).replace(hour=0),
            all_day=True,
        )
        b.add_event(
            ana,
            "Free",
            start + timedelta(days=3),
            start + timedelta(days=3, hours=1),
            transparent=True,
        )
        b.add_event(
            ben, "Weekly", start, start + timedelta(minutes=30), rrule="FREQ=WEEKLY;COUNT=3"
        )

        first = b.calendar.changes(ana, None, WINDOW)
        assert ident in {e.id for e in first.events}
        assert b.calendar.changes(ana, first.cursor, WINDOW).quiet

        busy = b.calendar.busy([ana, ben], WINDOW)
        day = ana.local(start + timedelta(days=1)).replace(hour=0, minute=0)
        assert busy[ana.email][0] == Interval(start, start + timedelta(hours=1))
        # Radicale answers the all-day event as a UTC day; the connector widens it so
        # the whole of Ana's local day (UTC-3) is blocked
        assert busy[ana.email][1].contains(Interval(day, day + timedelta(days=1)))
        assert len(busy[ana.email]) == 2
        assert [i.start for i in busy[ben.email]] == [start + timedelta(weeks=w) for w in range(3)]

        draft = EventDraft(
            key="c" * 32,
            organizer=ana,
            attendees=(ben,),
            title="Development check-in: Ana & Ben",
            start=start + timedelta(days=7),
            end=start + timedelta(days=7, minutes=15),
            timezone=ana.timezone,
        )
        made = b.calendar.create(draft)
        assert b.calendar.create(draft) == made
        assert b.calendar.find(ana, draft.key) == made
        after = b.calendar.changes(ana, first.cursor, WINDOW)
        assert [e.key for e in after.events] == [draft.key]

        foreign = next(e for e in first.events if e.id == ident)
        with pytest.raises(PermanentError):
            b.calendar.cancel(ana, foreign)
        b.calendar.cancel(ana, made)
        found = b.calendar.find(ana, draft.key)
        assert found is not None and found.cancelled

        sent = b.mailer.send(
            OutgoingMail(
                key="m1",
                sender=ana.email,
                to=(ben.email,),
                subject="Agenda",
                text="t",
                html="<p>t</p>",
                message_id="<m1@cadence>",
            )
        )
        (delivered,) = b.delivered()
        assert delivered["Message-ID"] == sent.message_id == "<m1@cadence>"
