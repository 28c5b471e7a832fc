"""Throttling, quota, credentials and validation: errors translated at the boundary."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from agent.connectors import google
from agent.core.errors import ConfigError, PermanentError, TransientError
from agent.core.model import Interval
from agent.core.retry import RetryPolicy
from tests.google.harness import Workspace, workspace, write_secret

T = datetime(2026, 12, 1, 13, tzinfo=UTC)
WINDOW = Interval(T, T + timedelta(days=7))
LIST = "calendar.events.list"


def recording_policy(sleeps: list[float], attempts: int = 5) -> RetryPolicy:
    return RetryPolicy(attempts=attempts, sleep=sleeps.append, rand=lambda: 0.0, base=0.5)


@pytest.mark.parametrize(
    ("code", "reason", "domain"),
    [
        (403, "rateLimitExceeded", "usageLimits"),
        (403, "userRateLimitExceeded", "usageLimits"),
        (429, "rateLimitExceeded", "usageLimits"),
        (500, "backendError", "global"),
        (503, "backendError", "global"),
    ],
)
def test_throttling_and_server_errors_are_retried(
    ws: Workspace, code: int, reason: str, domain: str
) -> None:
    sleeps: list[float] = []
    cal, _ = ws.connect(recording_policy(sleeps))
    ws.server.state.fail(LIST, code, reason, domain=domain, times=2)
    changes = cal.changes(ws.person("ana"), None, WINDOW)
    cal.close()
    assert changes.full
    assert ws.server.state.counts[LIST] == 3
    assert sleeps == [0.25, 0.5]  # exponential backoff (jitter pinned to its floor)


def test_retry_after_is_honoured(ws: Workspace) -> None:
    sleeps: list[float] = []
    cal, _ = ws.connect(recording_policy(sleeps))
    ws.server.state.fail(LIST, 429, "rateLimitExceeded", retry_after="7")
    cal.changes(ws.person("ana"), None, WINDOW)
    cal.close()
    assert sleeps == [7.0]


def test_without_retries_throttling_surfaces_as_transient(ws: Workspace) -> None:
    cal, _ = ws.connect()
    ws.server.state.fail(LIST, 429, "rateLimitExceeded", retry_after="12")
    with pytest.raises(TransientError) as caught:
        cal.changes(ws.person("ana"), None, WINDOW)
    cal.close()
    assert caught.value.retry_after == 12.0


def test_retries_are_bounded(ws: Workspace) -> None:
    sleeps: list[float] = []
    cal, _ = ws.connect(recording_policy(sleeps, attempts=3))
    ws.server.state.fail(LIST, 503, "backendError", times=10)
    with pytest.raises(TransientError):
        cal.changes(ws.person("ana"), None, WINDOW)
    cal.close()
    assert ws.server.state.counts[LIST] == 3


def test_quota_exceeded_stops_the_account_without_hammering(ws: Workspace) -> None:
    sleeps: list[float] = []
    cal, _ = ws.connect(recording_policy(sleeps))
    ws.server.state.fail(
        LIST, 403, "quotaExceeded", domain="usageLimits", message="Calendar usage limits exceeded."
    )
    with pytest.raises(PermanentError, match="usage limits"):
        cal.changes(ws.person("ana"), None, WINDOW)
    with pytest.raises(PermanentError, match="paused"):
        cal.changes(ws.person("ben"), None, WINDOW)
    with pytest.raises(PermanentError, match="paused"):
        cal.busy(ws.people, WINDOW)
    cal.close()
    assert ws.server.state.counts[LIST] == 1 and sleeps == []
    assert ws.server.state.counts["calendar.freebusy.query"] == 0


@pytest.mark.parametrize(
    ("code", "reason"), [(400, "badRequest"), (403, "forbidden"), (404, "notFound")]
)
def test_refusals_are_permanent_and_not_retried(ws: Workspace, code: int, reason: str) -> None:
    sleeps: list[float] = []
    cal, _ = ws.connect(recording_policy(sleeps))
    ws.server.state.fail(LIST, code, reason)
    with pytest.raises(PermanentError, match=reason):
        cal.changes(ws.person("ana"), None, WINDOW)
    cal.close()
    assert ws.server.state.counts[LIST] == 1 and sleeps == []


def test_unreachable_server_is_transient(ws: Workspace) -> None:
    cal, _ = ws.connect()
    ws.server.httpd.server_close()  # nobody listens on the port any more
    with pytest.raises(TransientError):
        cal.changes(ws.person("ana"), None, WINDOW)
    cal.close()


def test_an_answer_held_past_the_configured_timeout_is_transient(tmp_path: Path) -> None:
    with workspace(tmp_path, account_extra="    timeout: 0.3\n") as space:
        cal, _ = space.connect()
        space.server.state.chaos(1.0, seed=0, kinds=("timeout",))  # answers held for 5 s
        began = time.monotonic()
        with pytest.raises(TransientError, match="timed out") as caught:
            cal.changes(space.person("ana"), None, WINDOW)
        cal.close()
    assert time.monotonic() - began < 2
    assert caught.value.maybe_done


# --- credentials ------------------------------------------------------------------------


def test_credentials_readable_by_others_are_refused(ws: Workspace) -> None:
    key = ws.settings.resolve("key.json")
    key.chmod(0o644)
    with pytest.raises(ConfigError, match=f"chmod 600 {key}"):
        ws.connect()


def test_missing_credentials_file_is_a_config_error(ws: Workspace) -> None:
    ws.settings.resolve("key.json").unlink()
    with pytest.raises(ConfigError, match="not found"):
        ws.connect()


def test_a_key_signed_by_someone_else_gets_no_token(ws: Workspace) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    path = ws.settings.resolve("key.json")
    info = json.loads(path.read_text())
    sa = ws.server.state.service_accounts[info["client_email"]]
    ws.server.state.service_accounts[info["client_email"]] = type(sa)(
        sa.email,
        sa.key_id,
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        sa.delegated,
    )
    cal, _ = ws.connect()
    with pytest.raises(PermanentError, match="Invalid JWT Signature"):
        cal.changes(ws.person("ana"), None, WINDOW)
    cal.close()
    assert ws.server.state.counts[LIST] == 0


def test_each_person_is_acted_as_through_delegation(ws: Workspace) -> None:
    cal, _ = ws.connect()
    for person in ws.people:
        cal.changes(person, None, WINDOW)
    cal.close()
    users = sorted(g.user or "" for g in ws.server.state.tokens.values())
    assert users == sorted(p.email for p in ws.people)
    assert ws.server.state.counts["token"] == 3
    # a calendar can only be read as its owner: the subject really is per person
    assert all(
        g.scopes == frozenset(google.scopes_for(False)) for g in ws.server.state.tokens.values()
    )


def test_least_scopes_are_enough_and_missing_delegation_is_explained(tmp_path: Path) -> None:
    narrow = [google.SCOPE_EVENTS, google.SCOPE_SEND]  # the admin forgot calendar.freebusy
    with workspace(tmp_path, delegated=narrow) as ws:
        cal, _ = ws.connect()
        with pytest.raises(PermanentError, match=r"domain-wide delegation.*calendar\.freebusy"):
            cal.changes(ws.person("ana"), None, WINDOW)
        cal.close()


def test_collecting_replies_adds_the_read_scope_only_then(tmp_path: Path) -> None:
    rest = (
        "programs:\n  p:\n    series:\n      check_in: {every: 30d, duration: 15m, title: x}\n"
        "    recap: {collect_replies: true}\n"
    )
    with workspace(tmp_path, rest=rest) as ws:
        cal, _ = ws.connect()
        cal.changes(ws.person("ana"), None, WINDOW)
        cal.close()
        (grant,) = ws.server.state.tokens.values()
    assert grant.scopes == frozenset(google.scopes_for(True))
    assert google.SCOPE_READ in grant.scopes


def test_authorized_user_token_is_refreshed_and_saved_0600(tmp_path: Path) -> None:
    with workspace(tmp_path) as ws:
        user = ws.server.state.add_user("ana@acme.example", set(google.scopes_for(False)))
        token = write_secret(
            tmp_path / "token.json",
            {
                "type": "authorized_user",
                "client_id": user.client_id,
                "client_secret": user.client_secret,
                "refresh_token": user.refresh_token,
                "token_uri": ws.server.token_uri,
                "scopes": google.scopes_for(False),
            },
        )
        ws.path.write_text(
            ws.path.read_text().replace("credentials: key.json", "credentials: token.json")
        )
        from agent.settings import config

        ws.settings = config.load(ws.path)
        cal, _ = ws.connect()
        cal.changes(ws.person("ana"), None, WINDOW)
        cal.close()
        saved = json.loads(token.read_text())
        assert (
            saved["token"] in ws.server.state.tokens
            and saved["refresh_token"] == user.refresh_token
        )
        assert os.stat(token).st_mode & 0o777 == 0o600
        # the next run reuses the saved access token: no token request
        cal, _ = ws.connect()
        cal.changes(ws.person("ana"), None, WINDOW)
        cal.close()
        assert ws.server.state.counts["token"] == 1
        # a calendar not shared with the user stays out of reach
        cal, _ = ws.connect()
        with pytest.raises(PermanentError, match="404"):
            cal.changes(ws.person("ben"), None, WINDOW)
        ws.server.state.calendars["ben@acme.example"].readers.add("ana@acme.example")
        assert cal.changes(ws.person("ben"), None, WINDOW).full
        cal.close()


def test_revoked_user_token_says_how_to_fix_it(tmp_path: Path) -> None:
    with workspace(tmp_path) as ws:
        write_secret(
            tmp_path / "token.json",
            {
                "type": "authorized_user",
                "client_id": "x",
                "client_secret": "y",
                "refresh_token": "revoked",
                "token_uri": ws.server.token_uri,
            },
        )
        ws.path.write_text(
            ws.path.read_text().replace("credentials: key.json", "credentials: token.json")
        )
        from agent.settings import config

        ws.settings = config.load(ws.path)
        cal, _ = ws.connect()
        with pytest.raises(PermanentError, match="cadence auth google"):
            cal.changes(ws.person("ana"), None, WINDOW)
        cal.close()


# --- the fake server's own strictness ---------------------------------------------------


def _raw(ws: Workspace, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    token = next(iter(ws.server.state.tokens))
    request = urllib.request.Request(
        ws.server.url + path,
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.loads(exc.read())


def test_server_refuses_parameters_and_fields_the_discovery_document_lacks(ws: Workspace) -> None:
    cal, _ = ws.connect()
    cal.changes(ws.person("ana"), None, WINDOW)  # obtains a token for ana
    cal.close()
    base = "calendar/v3/calendars/ana%40acme.example/events"
    assert _raw(ws, "GET", base + "?singleEvents=true")[0] == 200
    status, body = _raw(ws, "GET", base + "?singleEvent=true")
    assert status == 400 and "singleEvent" in body["error"]["message"]
    assert _raw(ws, "GET", base + "?singleEvents=yes")[0] == 400
    assert _raw(ws, "GET", base + "?timeMin=2026-12-01T10:00:00")[0] == 400  # no offset
    assert _raw(ws, "GET", base + "?syncToken=x&timeMin=2026-12-01T10:00:00Z")[0] == 400
    good = {
        "summary": "x",
        "start": {"dateTime": "2026-12-01T10:00:00Z"},
        "end": {"dateTime": "2026-12-01T11:00:00Z"},
    }
    assert _raw(ws, "POST", base + "?sendUpdates=all", good)[0] == 200
    status, body = _raw(ws, "POST", base, {**good, "colour": "red"})
    assert status == 400 and "colour" in body["error"]["message"]
    nested = {**good, "start": {"dateTime": "2026-12-01T10:00:00Z", "tz": "UTC"}}
    assert _raw(ws, "POST", base, nested)[0] == 400
    assert _raw(ws, "POST", base + "?sendUpdates=some", good)[0] == 400
    assert _raw(ws, "POST", base, {**good, "id": "UPPERCASE1"})[0] == 400
    assert _raw(ws, "POST", base, {**good, "id": "abcde12345"})[0] == 200
    status, body = _raw(ws, "POST", base, {**good, "id": "abcde12345"})
    assert status == 409 and body["error"]["errors"][0]["reason"] == "duplicate"
    assert _raw(ws, "GET", "calendar/v3/calendars/ben%40acme.example/events")[0] == 404
    assert (
        _raw(
            ws,
            "POST",
            "calendar/v3/freeBusy",
            {
                "timeMin": "2026-12-01T00:00:00Z",
                "timeMax": "2026-12-02T00:00:00Z",
                "items": [{"id": "a"}],
                "extra": 1,
            },
        )[0]
        == 400
    )


def test_a_throttled_part_of_a_batch_is_retried_alone(tmp_path: Path) -> None:
    people = tuple((f"p{n:03}@acme.example", f"Person {n}", "UTC") for n in range(75))
    with workspace(tmp_path, people=people) as ws:
        sleeps: list[float] = []
        cal, _ = ws.connect(recording_policy(sleeps))
        ws.server.state.fail(
            "calendar.freebusy.query",
            403,
            "userRateLimitExceeded",
            domain="usageLimits",
            retry_after="3",
        )
        busy = cal.busy(ws.people, WINDOW)
        cal.close()
        counts = ws.server.state.counts
    assert len(busy) == 75 and sleeps == [3.0]
    # 2 parts in one batch; then only the throttled part, after its Retry-After
    assert (counts["batch"], counts["calendar.freebusy.query"]) == (2, 3)
    assert all(busy[p.email] == [] for p in ws.people)


def test_a_retried_part_keeps_its_place_and_the_answered_parts_are_not_asked_again(
    tmp_path: Path,
) -> None:
    people = tuple((f"p{n:03}@acme.example", f"Person {n}", "UTC") for n in range(120))
    with workspace(tmp_path, people=people) as ws:
        sleeps: list[float] = []
        cal, _ = ws.connect(recording_policy(sleeps))
        first, late = ws.people[0], ws.people[110]  # the first and the third part
        meeting = Interval(T + timedelta(hours=1), T + timedelta(hours=2))
        ws.server.add_event(first.email, "Mine", meeting.start, meeting.end)
        ws.server.add_event(late.email, "Late", meeting.start, meeting.end)
        ws.server.state.fail("calendar.freebusy.query", 503, "backendError", retry_after="2")
        busy = cal.busy(ws.people, WINDOW)
        cal.close()
        counts = ws.server.state.counts
    assert sleeps == [2.0]
    assert (counts["batch"], counts["calendar.freebusy.query"]) == (2, 4)  # 3 parts + 1
    assert busy[first.email] == [meeting] and busy[late.email] == [meeting]
    assert sum(1 for times in busy.values() if times) == 2


def test_a_batch_waits_for_the_longest_retry_after_of_its_parts(tmp_path: Path) -> None:
    people = tuple((f"p{n:03}@acme.example", f"Person {n}", "UTC") for n in range(75))
    with workspace(tmp_path, people=people) as ws:
        sleeps: list[float] = []
        cal, _ = ws.connect(recording_policy(sleeps))
        state = ws.server.state
        state.fail("calendar.freebusy.query", 403, "rateLimitExceeded", domain="usageLimits")
        state.fail("calendar.freebusy.query", 429, "rateLimitExceeded", retry_after="7")
        cal.busy(ws.people, WINDOW)
        cal.close()
    assert sleeps == [7.0]  # the whole batch goes again: not before the second part may


def test_retry_after_as_an_http_date() -> None:
    from email.utils import format_datetime

    later = datetime.now(UTC) + timedelta(seconds=30)
    assert 25 <= google.client._retry_after(format_datetime(later)) <= 30
    assert google.client._retry_after("soon") is None and google.client._retry_after("5") == 5.0


@pytest.mark.parametrize("kind", ["500", "502", "lost", "drop", "timeout"])
def test_a_token_not_issued_fails_the_send_as_never_made(tmp_path: Path, kind: str) -> None:
    """Google's token endpoint answers an error, a gateway's page, or nothing: the send
    it was for was never made (``maybe_done`` False: the outbox sends it again later,
    never marks it uncertain); once the endpoint answers, it goes out once."""
    from tests.google.test_mail import AGENDA

    with workspace(tmp_path, account_extra="    timeout: 0.5\n") as ws:
        _, mailer = ws.connect(RetryPolicy.none())
        ws.server.state.chaos(1.0, seed=0, kinds=(), token=(kind,))
        with pytest.raises(TransientError) as caught:
            mailer.send(AGENDA)
        state = ws.server.state
        assert not caught.value.maybe_done, caught.value
        assert state.token_faults[kind] >= 1 and state.sent == []
        state.chaos_rate = 0.0
        mailer.send(AGENDA)
        mailer.close()
    assert len(state.sent) == 1 and state.counts["gmail.users.messages.send"] == 1
