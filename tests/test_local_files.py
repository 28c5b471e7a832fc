"""The local provider's files under hostile conditions: other encodings, binary and
broken files, very long UIDs, a missing calendars folder, file modes and full disks."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.app.cli import app
from agent.connectors import local
from agent.connectors.local import LocalCalendar, OutboxMailer
from agent.core.errors import PermanentError
from agent.core.model import Interval, OutgoingMail
from agent.formats import ical
from agent.settings import config
from agent.store.sqlite import Store
from agent.tick.engine import Engine
from tests.factories import at
from tests.test_local_provider import ANA, BEN, HAND_MADE, WINDOW, draft

ANA_FILE = "ana@acme.example.ics"
CAFE = HAND_MADE.replace("SUMMARY:Focus", "SUMMARY:Café Müller")


def titles(folder: Path) -> set[str]:
    changes = LocalCalendar(folder, [ANA]).changes(ANA, None, WINDOW)
    assert not [s for s in changes.skipped if s.ref != "broken"]
    return {e.title for e in changes.events}


@pytest.mark.parametrize(
    ("codec", "bom"),
    [
        ("utf-8", b""),
        ("utf-8", b"\xef\xbb\xbf"),
        ("utf-16-le", b"\xff\xfe"),
        ("utf-16-be", b"\xfe\xff"),
        ("utf-16-le", b""),  # no mark: told by its zero bytes
        ("utf-32-le", b"\xff\xfe\x00\x00"),
        ("latin-1", b""),
    ],
)
def test_other_encodings_are_read_and_written_back_as_they_were(
    tmp_path: Path, codec: str, bom: bytes
) -> None:
    path = tmp_path / ANA_FILE
    path.write_bytes(bom + CAFE.encode(codec))
    assert {"Café Müller", "Standup", "Offsite"} <= titles(tmp_path)
    cal = LocalCalendar(tmp_path, [ANA, BEN])
    event = cal.create(draft())
    assert event.title == "Development Align: Ana & Ben"
    data = path.read_bytes()
    assert data.startswith(bom) and data[len(bom) :].decode(codec).count("BEGIN:VEVENT") == 9
    assert "Development Align: Ana & Ben" in titles(tmp_path)
    moved = cal.move(
        ANA, event, Interval(at("2026-04-15T08:00:00+00:00"), at("2026-04-15T09:00:00+00:00"))
    )
    assert moved.sequence == 1 and path.read_bytes().startswith(bom)
    assert "Café Müller" in titles(tmp_path)


def test_a_latin1_file_that_cannot_hold_the_booking_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / ANA_FILE
    path.write_bytes(CAFE.encode("latin-1"))
    before = path.read_bytes()
    named = draft()
    named = named.__class__(**{**named.__dict__, "title": "Development Align: Łukasz"})
    with pytest.raises(PermanentError) as caught:
        LocalCalendar(tmp_path, [ANA, BEN]).create(named)
    message = str(caught.value)
    assert str(path) in message and "LATIN-1" in message and "\n" not in message
    assert path.read_bytes() == before
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x01\x02\x03binary\x00" * 50,
        b"\xff\xfe not even text",  # a UTF-16 mark, then an odd number of bytes
        b"BEGIN:VCALENDAR\r\n\x00\x00\x07\x1b[31m\r\nEND:VCALENDAR\r\n",
        bytes(range(256)) * 4,
    ],
)
def test_binary_files_are_refused_in_one_line_reading_and_writing(
    tmp_path: Path, data: bytes
) -> None:
    path = tmp_path / ANA_FILE
    path.write_bytes(data)
    changes = LocalCalendar(tmp_path, [ANA]).changes(ANA, None, WINDOW)
    assert changes.events == () and len(changes.skipped) == 1
    assert changes.skipped[0].reason.startswith("unreadable: ")
    assert "\n" not in changes.skipped[0].reason
    with pytest.raises(PermanentError) as caught:
        LocalCalendar(tmp_path, [ANA, BEN]).create(draft())
    assert str(path) in str(caught.value) and "not writing into it" in str(caught.value)
    assert path.read_bytes() == data


BROKEN = [
    (
        "no END:VCALENDAR",
        HAND_MADE.replace("END:VCALENDAR\r\n", ""),
        "BEGIN:VCALENDAR is never closed",
    ),
    (
        "an unclosed event",
        HAND_MADE.replace(
            "SUMMARY:Focus\r\nTRANSP:TRANSPARENT\r\nEND:VEVENT\r\n", "SUMMARY:Focus\r\n"
        ),
        "END:VCALENDAR closes BEGIN:VEVENT",
    ),
    (
        "an END that closes nothing",
        HAND_MADE.replace("BEGIN:VTODO\r\n", ""),
        "END:VTODO closes BEGIN:VCALENDAR",
    ),
    (
        "a component never closed",
        HAND_MADE.replace("END:VCALENDAR\r\n", "BEGIN:VEVENT\r\nUID:x\r\nEND:VCALENDAR\r\n"),
        "END:VCALENDAR closes BEGIN:VEVENT",
    ),
]


@pytest.mark.parametrize(("what", "text", "problem"), BROKEN, ids=[b[0] for b in BROKEN])
def test_a_file_that_cannot_be_safely_rewritten_is_refused(
    tmp_path: Path, what: str, text: str, problem: str
) -> None:
    path = tmp_path / ANA_FILE
    path.write_bytes(text.encode())
    with pytest.raises(PermanentError) as caught:
        LocalCalendar(tmp_path, [ANA, BEN]).create(draft())
    message = str(caught.value)
    assert str(path) in message and problem in message and "\n" not in message
    assert path.read_bytes() == text.encode()


def test_changing_an_event_in_a_broken_file_is_refused_not_a_value_error(tmp_path: Path) -> None:
    cal = LocalCalendar(tmp_path, [ANA, BEN])
    event = cal.create(draft())
    path = tmp_path / ANA_FILE
    path.write_bytes(path.read_bytes().replace(b"END:VCALENDAR", b"END:VCALENDAR\r\nBEGIN:VEVENT"))
    with pytest.raises(PermanentError) as caught:
        cal.cancel(ANA, event)
    assert str(path) in str(caught.value)
    path.write_bytes(b"\x00garbage")
    with pytest.raises(PermanentError):
        cal.cancel(ANA, event)
    with pytest.raises(PermanentError):
        cal.find(ANA, event.key or "")


# --- long UIDs ------------------------------------------------------------------------


def mail(key: str) -> OutgoingMail:
    return OutgoingMail(
        key=key,
        sender="ana@acme.example",
        to=("ana@acme.example",),
        subject="Agenda",
        text="plain",
        html="<p>html</p>",
        message_id="<m@cadence>",
    )


def test_any_uid_gives_a_file_name_the_system_takes(tmp_path: Path) -> None:
    mailer = OutboxMailer(tmp_path)
    keys = [f"{'u' * 300}@x.example-20261124T1400:agenda", f"{'é/' * 200}:agenda", "é" * 2000]
    keys.append(keys[0].replace("agenda", "recap"))
    names = set()
    for key in keys:
        sent = mailer.send(mail(key))
        assert not sent.already and mailer.was_sent(mail(key))
        assert mailer.send(mail(key)).already
        path = Path(sent.where)
        assert path.parent == tmp_path and len(path.name.encode()) <= 255
        names.add(path.name)
    assert len(names) == len(keys)


def test_short_outbox_names_stay_as_they_were(tmp_path: Path) -> None:
    """An outbox written before bounded names still holds: nothing is sent twice."""
    key = "9f86d081884c7d659a2feaa0c55ad015@cadence-20261124T1400:agenda"
    assert OutboxMailer(tmp_path).path(mail(key)).name == (
        "9f86d081884c7d659a2feaa0c55ad015@cadence-20261124T1400-agenda.eml"
    )


# --- a missing calendars folder -------------------------------------------------------


def test_a_missing_calendars_folder_is_an_error_not_a_fresh_start(
    workspace: Path, tmp_path: Path
) -> None:
    settings = config.load(workspace)
    calendars = settings.base / "calendars"
    for path in calendars.iterdir():
        path.unlink()
    calendars.rmdir()
    store = Store(tmp_path / "t.db")
    with Engine(settings, store=store) as engine:
        report = engine.tick(at("2026-11-23T14:00:00+00:00"))
    assert report.count("book") == 0 and not calendars.exists()
    assert not list((settings.base / "outbox").glob("*.eml"))
    errors = [r["message"] for r in store.audit_rows(kind="error")]
    assert errors and all(f"calendars folder {calendars} does not exist" in m for m in errors)
    result = CliRunner().invoke(app, ["check", "--config", str(workspace)])
    assert result.exit_code == 2
    assert f"{workspace}:" in result.output and "accounts." in result.output
    assert f"calendars folder {calendars} does not exist" in result.output


def test_check_passes_on_the_demo_workspace(workspace: Path) -> None:
    result = CliRunner().invoke(app, ["check", "--config", str(workspace)])
    assert result.exit_code == 0, result.output


# --- modes and temporary files --------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_writing_never_widens_a_calendar_files_mode(tmp_path: Path) -> None:
    path = tmp_path / ANA_FILE
    path.write_text(HAND_MADE, newline="")
    path.chmod(0o600)
    (tmp_path / "ben@acme.example.ics").write_text(HAND_MADE, newline="")
    (tmp_path / "ben@acme.example.ics").chmod(0o640)
    cal = LocalCalendar(tmp_path, [ANA, BEN])
    event = cal.create(draft())
    assert mode(path) == 0o600 and mode(tmp_path / "ben@acme.example.ics") == 0o640
    cal.cancel(ANA, event)
    assert mode(path) == 0o600 and mode(tmp_path / "ben@acme.example.ics") == 0o640


def test_new_files_and_folders_are_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        LocalCalendar(tmp_path, [ANA, BEN]).create(draft())  # neither has a file yet
        outbox = tmp_path / "deep" / "outbox"
        local.make_folder(outbox)
        sent = OutboxMailer(outbox).send(mail("k1:invite"))
    finally:
        os.umask(old)
    assert mode(tmp_path / ANA_FILE) == 0o600 and mode(tmp_path / "ben@acme.example.ics") == 0o600
    assert mode(outbox) == 0o700 and mode(tmp_path / "deep") == 0o700
    assert mode(Path(sent.where)) == 0o600
    assert mode(tmp_path / ".cadence.lock") == 0o600 and mode(outbox / ".cadence.lock") == 0o600
    existing = tmp_path / "open"
    existing.mkdir(mode=0o755)
    existing.chmod(0o755)
    local.make_folder(existing)
    assert mode(existing) == 0o755  # a folder the user made keeps its mode


def test_a_failed_write_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / ANA_FILE
    path.write_text(HAND_MADE, newline="")

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(local.os, "write", full)
    with pytest.raises(OSError, match="No space left"):
        local.atomic_write(path, b"new")
    with pytest.raises(OSError, match="No space left"):
        OutboxMailer(tmp_path).send(mail("k1:invite"))
    monkeypatch.undo()
    assert (
        path.read_text() == HAND_MADE.replace("\r\n", "\n")
        or path.read_bytes() == HAND_MADE.encode()
    )
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == [] and not list(tmp_path.glob("*.eml"))


def test_a_failed_rename_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(src: object, dst: object) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(local.os, "replace", refused)
    with pytest.raises(OSError):
        local.atomic_write(tmp_path / "x.ics", b"data")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_the_reader_decodes_by_mark_and_refuses_binary() -> None:
    assert ical.decode("Ä".encode("utf-16")).text == "Ä"
    assert ical.decode(b"caf\xe9").text == "café"
    with pytest.raises(ValueError, match="binary"):
        ical.decode(b"a\x00b")
