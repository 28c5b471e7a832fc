"""The demo's directory: an HR export as CSV, read twice to show what a directory does.

The first read (twenty days before the demo's "now") brings in two people the YAML does
not list: Gia, who joins Ben's team, and Hugo, who reports to Chloe. The second (the day
before) is HR's next export, where Hugo has moved to Ben. The demo's tick then books
Gia's first Align within ``first_within`` and sends Ben the hand-over of Hugo.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import typer

from agent.settings.config import Settings
from agent.store.sqlite import Store
from agent.tick import directory

HEADER = "Work Email,Preferred Name,Manager Email,Time Zone,Country,Language,Development Program\n"
ROWS = {
    "ben": "Ben Ortiz,,Europe/Berlin,DE,de-DE,no",
    "chloe": "Chloe Park,,America/New_York,US,en-US,no",
    "ana": "Ana Lima,ben@acme.example,America/Sao_Paulo,BR,pt-BR,yes",
    "dev": "Dev Patel,ben@acme.example,Asia/Kolkata,IN,en-IN,yes",
    "emma": "Emma Clarke,ben@acme.example,Europe/London,GB,en-GB,yes",
    "farid": "Farid Haddad,ben@acme.example,Europe/Berlin,DE,de-DE,yes",
    "gia": "Gia Rossi,ben@acme.example,Europe/Rome,IT,it-IT,yes",
    "hugo": "Hugo Martin,chloe@acme.example,America/Toronto,CA,fr-CA,yes",
}
#: HR's next export: Hugo now reports to Ben
MOVED = {**ROWS, "hugo": "Hugo Martin,ben@acme.example,America/Toronto,CA,fr-CA,yes"}

SECTION = """
directory:
  source:
    kind: csv
    path: directory.csv       # an HR export; the columns are named below
    columns: {email: Work Email, name: Preferred Name, manager: Manager Email,
              timezone: Time Zone, country: Country, language: Language}
    members: {column: Development Program, values: ["yes"]}
  program: leader-cycle
  first_within: 30d
  plans: plans
"""

HUGO_PLAN = """\
# Hugo's individual development plan
purpose: Make the checkout fast for everyone, everywhere.
goals:
  - title: Own the payments latency budget
    milestones:
      - {title: Publish the p99 dashboard, due: 2027-01-15}
actions:
  - {title: Shadow the on-call rotation for two weeks, due: 2027-01-31}
share_with_new_leader: true
"""


def write_export(folder: Path, rows: dict[str, str]) -> None:
    lines = "".join(f"{who}@acme.example,{rest}\n" for who, rest in rows.items())
    (folder / "directory.csv").write_text(HEADER + lines, encoding="utf-8")


def create(folder: Path) -> None:
    """Write the first export and Hugo's plan into a new demo workspace."""
    write_export(folder, ROWS)
    (folder / "plans").mkdir(exist_ok=True)
    (folder / "plans" / "hugo@acme.example.yaml").write_text(HUGO_PLAN, encoding="utf-8")


def replay(folder: Path, settings: Settings, now: datetime) -> None:
    """Apply the two exports as HR sent them, and print what each changed."""
    store = Store(settings.store_at)
    try:
        for when, rows, label in (
            (now - timedelta(days=20), ROWS, "HR's export, 20 days ago"),
            (now - timedelta(days=1), MOVED, "HR's export, yesterday"),
        ):
            write_export(folder, rows)
            out = directory.sync(settings, store, when)
            typer.echo(f"Directory: {label} ({folder.name}/directory.csv)")
            shown = [
                line
                for line in out.diff.lines()
                if not line.startswith("joins: ") or "gia" in line or "hugo" in line
            ]
            for line in shown:
                typer.echo(f"  {line}")
            if len(out.diff.joined) > 2:
                typer.echo(f"  (and {len(out.diff.joined) - 2} people the YAML already lists)")
    finally:
        store.close()
