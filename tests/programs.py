"""The config the Graph and EWS whole-tick tests run from, as ``str.format`` templates.

Three people at contoso.example, Ana and Chloe each in a leader cycle with Ben. A
provider's test supplies its account's keys (with its own placeholders for its server)
and fills ``{title}`` with :data:`TITLE`, the deep dive's title template; literal braces
are doubled.
"""

from __future__ import annotations

from pathlib import Path

TITLE = "Development {{ stage | title }}: {{ employee.first_name }} & {{ partner.first_name }}"

CONTOSO_PEOPLE = """\
people:
  - {{email: ana@contoso.example, name: Ana Lima, timezone: Europe/Berlin}}
  - {{email: ben@contoso.example, name: Ben Ortiz, timezone: Europe/Berlin}}
  - {{email: chloe@contoso.example, name: Chloe Park, timezone: America/New_York}}
"""
CONTOSO = (
    CONTOSO_PEOPLE
    + """\
relationships:
  - {{employee: ana@contoso.example, partner: ben@contoso.example, program: leader-cycle}}
  - {{employee: chloe@contoso.example, partner: ben@contoso.example, program: leader-cycle}}
"""
)


_LEADER_CYCLE = """\
programs:
  leader-cycle:
    organizer: employee
    series:
      deep_dive:
        every: 90d
        duration: 60m
        stages: [align, advance, amplify, advocate]
        title: "{title}"
        match: '(?i)\\b(align|advance|amplify|advocate|deep dive)\\b'
    lapse_grace: 7d
    booking: {{horizon: 14d, lead_time: 2d, window: "10:00-16:00", buffer: 10m@CONFERENCE@}}
    agenda: {{before: 24h}}
"""


def leader_cycle(*, conference: bool = True, recap: str | None = None) -> str:
    """The deep-dive program, booked with a video link unless ``conference`` is false;
    ``recap`` is the recap setting's flow mapping, braces doubled."""
    text = _LEADER_CYCLE.replace("@CONFERENCE@", ", conference: auto" if conference else "")
    if recap is not None:
        text += f"    recap: {recap}\n"
    return text


def config(account: str, settings: str, programs: str | None = None) -> str:
    """The whole file: one account, ``account``, with ``settings`` (its keys, indented four
    spaces) as everyone's default, weekday hours 9 to 5, the contoso people and
    ``programs`` (the leader cycle unless given)."""
    return (
        "timezone: Europe/Berlin\n"
        "store: var/cadence.db\n"
        "accounts:\n"
        f"  {account}:\n"
        f"{settings}"
        "defaults:\n"
        f"  account: {account}\n"
        '  working_hours: {{mon-fri: "09:00-17:00"}}\n'
        f"{CONTOSO}"
        f"{leader_cycle() if programs is None else programs}"
    )


def write_config(folder: Path, template: str, **values: str) -> Path:
    """Write ``folder/cadence.yaml``: ``template`` filled with ``values`` and TITLE."""
    path = folder / "cadence.yaml"
    path.write_text(template.format(title=TITLE, **values))
    return path
