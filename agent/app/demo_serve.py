"""``cadence demo --serve``: the demo workspace served by ``cadence serve`` with its web
app, and a sign-in link printed for an employee, a leader and an administrator."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer

from agent.settings import config as config_mod
from agent.web.base import Web
from agent.web.signin import link

ADMIN = "hr@acme.example"
EMPLOYEE = "emma@acme.example"
LEADER = "ben@acme.example"

WEB_SECTION = f"""
# The web app of `cadence serve` (added by `cadence demo --serve`).
web:
  admins: [{ADMIN}]
  secure_cookies: false   # the demo serves plain HTTP on this machine only
"""


def enable_web(path: Path, port: int | None) -> None:
    """Add the ``web:`` section (and ``service: {port}``) to the demo's config once."""
    text = path.read_text(encoding="utf-8")
    if "\nweb:" not in text:
        text += WEB_SECTION
    if port is not None and "\nservice:" not in text:
        text += f"\nservice:\n  port: {port}\n"
    path.write_text(text, encoding="utf-8")


def links(web: Web, now: datetime) -> list[tuple[str, str, str]]:
    """(who, address, one-time sign-in link) for an employee, a leader and an admin."""
    return [
        (label, email, link(web, email, now))
        for label, email in (("employee", EMPLOYEE), ("leader", LEADER), ("administrator", ADMIN))
    ]


def serve_demo(folder: Path, port: int | None) -> None:
    """Serve the demo workspace in ``folder`` (made by ``run_demo``) until stopped."""
    from agent.app.service import Service

    path = folder / "cadence.yaml"
    enable_web(path, port)
    settings = config_mod.load(path)
    if settings.service.port == 0:
        raise typer.BadParameter("service.port is 0 in the demo's config: give --port")
    web = Web(settings)
    typer.echo("")
    typer.echo(f"Web app: {web.base_url}/  (stop with Ctrl-C)")
    for label, email, url in links(web, datetime.now(UTC)):
        typer.echo(f"Sign in as the {label} ({email}): {url}")
    minutes = int(settings.web.link.total_seconds() // 60) if settings.web else 15
    typer.echo(
        f"Each link works once, for {minutes} minutes; later, ask for a new one on the "
        f"sign-in page: it lands in {folder}/outbox/."
    )
    Service(settings).run()
