"""Shared helpers of the web app's tests: a ticked demo workspace with ``web:`` on, and
the sign-in link read back from the outbox as a person would."""

from __future__ import annotations

import email
import re
from email import policy
from pathlib import Path

from typer.testing import CliRunner

from agent.app.cli import app

ADMIN = "hr@acme.example"
WEB_SECTION = f"""
web:
  admins: [{ADMIN}]
  secret: var/web.secret
"""


def web_workspace(workspace: Path, now: str, extra: str = "") -> Path:
    """The demo workspace with the web app configured, after one tick at ``now``."""
    workspace.write_text(workspace.read_text() + WEB_SECTION + extra)
    result = CliRunner().invoke(app, ["run", "--once", "--config", str(workspace), "--now", now])
    assert result.exit_code == 0, result.output
    return workspace


LINK = re.compile(r"(https?://\S+/signin/link\?t=[A-Za-z0-9_.\-]+)")


def signin_links(outbox: Path, to: str) -> list[str]:
    """The sign-in links mailed to ``to``, oldest first."""
    found = []
    for path in sorted(outbox.glob("signin-*.eml"), key=lambda p: p.stat().st_mtime_ns):
        msg = email.message_from_bytes(path.read_bytes(), policy=policy.default)
        if msg["To"] != to:
            continue
        body = msg.get_body(("plain",))
        assert body is not None
        match = LINK.search(body.get_content())
        assert match, body.get_content()
        found.append(match.group(1))
    return found


CSRF = re.compile(r'name="csrf" value="([0-9a-f]+)"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, html
    return match.group(1)
