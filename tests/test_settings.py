"""The configuration is resolved once: typed settings, and one answer to where replies arrive."""

from __future__ import annotations

import ast
from pathlib import Path

from agent.settings import config

CONFIG = """\
read_only: true
sync: {concurrency: 3, rate: 5}
service: {port: 0, unhealthy_after: 4}
accounts:
  north: {provider: local, calendars: north}
  south: {provider: local, calendars: south}
defaults: {account: north}
people:
  - {email: Ana@acme.example}
  - {email: ben@acme.example}
  - {email: cleo@acme.example, account: south, calendar: work, username: cleo}
  - {email: dan@acme.example, account: south}
relationships:
  - {employee: ana@acme.example, partner: ben@acme.example, program: replied}
  - {employee: cleo@acme.example, partner: ben@acme.example, program: replied}
  - {employee: dan@acme.example, partner: ben@acme.example, program: quiet}
  - {employee: ben@acme.example, partner: dan@acme.example, program: quiet}
programs:
  replied:
    series: {check_in: {every: 30d, duration: 15m, title: x}}
    recap: {collect_replies: true}
  quiet:
    series: {check_in: {every: 30d, duration: 15m, title: x}}
"""


def load(tmp_path: Path, text: str = CONFIG) -> config.Settings:
    path = tmp_path / "cadence.yaml"
    path.write_text(text, encoding="utf-8")
    return config.load(path)


def test_settings_hold_every_section_resolved(tmp_path: Path) -> None:
    settings = load(tmp_path)
    assert settings.read_only is True and settings.language == "en"
    assert (settings.sync.concurrency, settings.sync.rate, settings.sync.burst) == (3, 5.0, 10)
    assert (settings.service.port, settings.service.unhealthy_after) == (0, 4)
    assert settings.service.host == "127.0.0.1"
    cleo = settings.people["cleo@acme.example"]
    assert (cleo.calendar, cleo.username) == ("work", "cleo")
    assert settings.programs["replied"].collect_replies is True
    assert settings.programs["quiet"].collect_replies is False


def test_replies_are_read_from_the_employees_whose_program_collects_them(tmp_path: Path) -> None:
    settings = load(tmp_path)
    # dan's program does not collect; ben is no employee of a collecting program
    assert settings.reply_accounts == {
        "north": ("ana@acme.example",),
        "south": ("cleo@acme.example",),
    }
    assert settings.collects_replies


def test_no_program_collecting_means_no_mailbox_is_read(tmp_path: Path) -> None:
    settings = load(tmp_path, CONFIG.replace("    recap: {collect_replies: true}\n", ""))
    assert settings.reply_accounts == {}
    assert not settings.collects_replies


def test_a_collecting_program_nobody_follows_reads_no_mailbox(tmp_path: Path) -> None:
    text = CONFIG.replace("program: replied}", "program: quiet}")
    settings = load(tmp_path, text)
    assert settings.reply_accounts == {}
    assert settings.collects_replies  # sign-in still asks for the read scope


def _reads_the_file(node: ast.AST) -> bool:
    if not (isinstance(node, ast.Attribute) and node.attr == "file"):
        return False
    owner = node.value
    if isinstance(owner, ast.Call):  # load_settings(config).file
        owner = owner.func
    name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
    return name in ("settings", "load_settings", "load")


def test_no_code_reads_the_raw_file_after_loading() -> None:
    root = Path(__file__).resolve().parents[1]
    readers: dict[str, list[int]] = {}
    for path in sorted((root / "agent").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        lines = [n.lineno for n in ast.walk(tree) if _reads_the_file(n)]
        if lines:
            readers[path.relative_to(root).as_posix()] = sorted(lines)
    assert not readers, f"read the resolved Settings fields, not settings.file: {readers}"
    assert "file" not in config.Settings.__dataclass_fields__


def test_the_guard_reads_a_share_as_a_percentage_or_a_fraction(tmp_path: Path) -> None:
    settings = load(tmp_path, CONFIG + "guard: {max_share: 25%, max_actions: 40}\n")
    assert settings.guard.max_share == 0.25 and settings.guard.max_actions == 40
    assert load(tmp_path, CONFIG + "guard: {max_share: 0.1}\n").guard.max_share == 0.1
    assert load(tmp_path).guard.max_actions is None and load(tmp_path).guard.max_share is None


def test_a_guard_share_that_is_no_percentage_names_file_line_and_key(tmp_path: Path) -> None:
    import pytest

    from agent.core.errors import ConfigError

    lines = CONFIG.count("\n")
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, CONFIG + "guard: {max_share: lots}\n")
    message = str(caught.value)
    assert f"cadence.yaml:{lines + 1}:" in message and "guard.max_share" in message
