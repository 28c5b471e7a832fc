"""``cadence demo``: a small team on the local provider, with history relative to now.

Six people in five time zones and three languages (Ana reads Brazilian Portuguese,
Ben and Farid German, the others English), six relationships on two programs: lapsed deep dives,
a check-in coming due, a lapsed mentoring series, a recap owed for yesterday's deep
dive, an agenda owed for tomorrow's mentoring session, declined and cancelled meetings,
and ordinary busy time (a recurring standup with an exception and a moved instance,
an all-day out-of-office, a transparent focus block).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import icalendar
import typer

from agent.app import demo_directory
from agent.app.lock import TickLock
from agent.settings import config as config_mod
from agent.tick.engine import Engine
from agent.views.summary import print_report

DOMAIN = "acme.example"

PEOPLE = {
    "ben": ("Ben Ortiz", "Europe/Berlin", "DE", "09:00-17:00"),
    "ana": ("Ana Lima", "America/Sao_Paulo", "BR", "08:00-16:00"),
    "dev": ("Dev Patel", "Asia/Kolkata", "IN", "10:00-18:30"),
    "emma": ("Emma Clarke", "Europe/London", "GB", "09:00-17:30"),
    "chloe": ("Chloe Park", "America/New_York", "US", "09:00-17:00"),
    "farid": ("Farid Haddad", "Europe/Berlin", "DE", "08:30-16:30"),
}

#: the mail language of those who read another than English (``language:``); Hugo's
#: (French) and Gia's (Italian: no catalogue, so English) come from the directory
LANGUAGES = {"ana": "pt-BR", "ben": "de", "farid": "de"}

CONFIG = """\
# Cadence demo workspace: the local provider, calendars as ICS files, mail as .eml files.
timezone: Europe/Berlin
store: var/cadence.db
tick: 10m

accounts:
  demo:
    provider: local
    calendars: calendars      # <email>.ics per person
    outbox: outbox            # mail lands here as .eml
    inbox: inbox              # replies to recaps are read from here (.eml)

defaults:
  account: demo
  working_hours: {{mon-fri: "09:00-17:00"}}

people:
{people}
relationships:
  - {{employee: ana@{d}, partner: ben@{d}, role: leader, program: leader-cycle}}
  - {{employee: dev@{d}, partner: ben@{d}, role: leader, program: leader-cycle}}
  - {{employee: emma@{d}, partner: ben@{d}, role: leader, program: leader-cycle}}
  - {{employee: farid@{d}, partner: ben@{d}, role: leader, program: leader-cycle}}
  - {{employee: ana@{d}, partner: chloe@{d}, role: mentor, program: mentoring}}
  - {{employee: farid@{d}, partner: emma@{d}, role: mentor, program: mentoring}}

programs:
  leader-cycle:
    organizer: employee
    series:
      deep_dive:
        every: 90d
        duration: 60m
        stages: [align, advance, amplify, advocate]
        title: "{{{{ what }}}}: {{{{ employee.first_name }}}} & {{{{ partner.first_name }}}}"
        match: '(?i)\\b(align|advance|amplify|advocate|deep dive)\\b'
      check_in:
        every: 30d
        duration: 15m
        skip_near: deep_dive
        title: "{{{{ what }}}}: {{{{ employee.first_name }}}} & {{{{ partner.first_name }}}}"
        match: '(?i)\\bcheck-?in\\b'
    lapse_grace: 7d
    booking: {{horizon: 14d, lead_time: 2d, window: "10:00-16:00", buffer: 10m, conference: auto}}
    agenda: {{before: 24h}}
    # backfill: the first tick also recaps a meeting of the last day, held before
    # Cadence started watching (without it, recaps start with what Cadence watched)
    recap: {{after: 2h, collect_replies: true, backfill: 1d}}
  mentoring:
    series:
      one_on_one:
        every: 30d
        duration: 30m
        match: '(?i)\\bmentoring\\b'
        title: "{{{{ what }}}}: {{{{ employee.first_name }}}} & {{{{ partner.first_name }}}}"
    booking: {{horizon: 14d, lead_time: 2d, buffer: 10m}}
"""

PLANS = {
    "ana": """\
# Ana's individual development plan
purpose: Build data products that people in clinics trust and use every day.
values: [curiosity, candour, craft]
strengths: [statistical modelling, explaining results to non-specialists]
growth_areas: [leading a team, influencing without authority]
skills:
  - {name: Python, level: expert}
  - {name: product discovery, level: practising}
preferences:
  feedback: direct and written, with examples
  communication: async first, a call for anything sensitive
goals:
  - title: Lead the forecasting platform
    success: the platform ships to three clinics with Ana as tech lead
    milestones:
      - {title: write the platform proposal, due: 2026-12-15}
      - {title: run the first design review, due: 2027-02-01}
  - title: Grow as a mentor
    success: two juniors say Ana helped them grow
    milestones:
      - {title: take on a first mentee, due: 2027-01-31}
actions:
  - {title: draft the platform proposal, goal: Lead the forecasting platform, due: 2026-12-15, status: open}
  - {title: shadow an on-call week, goal: Lead the forecasting platform, status: done}
  - {title: ask Chloe for a reading list on mentoring, goal: Grow as a mentor, status: open}
""",
    "emma": """\
# Emma's individual development plan
purpose: Help teams ship calmly, with fewer surprises and more learning.
values: [ownership, kindness, clarity]
strengths: [running incident reviews, writing clear design docs]
growth_areas: [managing people, budgeting]
skills:
  - {name: Kotlin, level: proficient}
  - {name: coaching, level: learning}
preferences:
  feedback: in the moment, spoken, then a short written note
  communication: Slack for quick things, a call for anything with feelings in it
goals:
  - title: Move into engineering management
    success: leads the mobile team of five by Q3, with good team survey results
    milestones:
      - {title: run the team's retrospectives for a quarter, due: 2026-12-31, done: true}
      - {title: complete the new-manager course, due: 2027-03-31}
      - {title: cover for Ben during his leave, due: 2027-06-30}
actions:
  - {title: ask two peers for feedback on the retros, goal: Move into engineering management, due: 2026-12-04, status: open}
  - {title: sign up for the new-manager course, goal: Move into engineering management, status: open}
""",
    "farid": """\
purpose: Make the payments backend boring, in the best sense.
strengths: [incident handling, careful code review]
goals:
  - title: Become a staff engineer
    success: leads a cross-team design and is promoted within 18 months
    milestones:
      - {title: own the ledger migration design, due: 2027-03-01}
actions:
  - {title: write up the Q3 incident review, goal: Become a staff engineer, due: 2026-12-05, status: open}
""",
}


def email(who: str) -> str:
    return f"{who}@{DOMAIN}"


class _Calendars:
    """Builds one VCALENDAR per person; shared meetings go into both files."""

    def __init__(self) -> None:
        self.cals: dict[str, icalendar.Calendar] = {}
        self.tzids: dict[str, set[str]] = {}
        self.counter = 0

    def cal(self, who: str) -> icalendar.Calendar:
        if who not in self.cals:
            cal = icalendar.Calendar()
            cal.add("prodid", "-//Demo Corp//Calendar export//EN")
            cal.add("version", "2.0")
            self.cals[who] = cal
            self.tzids[who] = set()
        return self.cals[who]

    def add(
        self,
        owners: list[str],
        title: str,
        start: datetime,
        minutes: int,
        *,
        organizer: str | None = None,
        attendees: dict[str, str] | None = None,
        status: str | None = None,
        rrule: dict[str, object] | None = None,
        exdates: list[datetime] | None = None,
        transparent: bool = False,
        uid: str | None = None,
    ) -> str:
        self.counter += 1
        uid = uid or f"demo-{self.counter:04d}@{DOMAIN}"
        for owner in owners:
            ev = icalendar.Event()
            ev.add("uid", uid)
            ev.add("dtstamp", datetime(2026, 1, 1, tzinfo=UTC))
            ev.add("dtstart", start)
            ev.add("dtend", start + timedelta(minutes=minutes))
            ev.add("summary", title)
            if organizer:
                ev.add("organizer", f"mailto:{email(organizer)}")
            for who, partstat in (attendees or {}).items():
                ev.add("attendee", f"mailto:{email(who)}", parameters={"PARTSTAT": partstat})
            if status:
                ev.add("status", status)
            if rrule:
                ev.add("rrule", rrule)
            for ex in exdates or []:
                ev.add("exdate", ex)
            if transparent:
                ev.add("transp", "TRANSPARENT")
            self.cal(owner).add_component(ev)
            if start.tzinfo is not None and str(start.tzinfo) != "UTC":
                self.tzids[owner].add(str(start.tzinfo))
        return uid

    def add_override(
        self, owner: str, uid: str, original: datetime, start: datetime, title: str
    ) -> None:
        ev = icalendar.Event()
        ev.add("uid", uid)
        ev.add("dtstamp", datetime(2026, 1, 1, tzinfo=UTC))
        ev.add("recurrence-id", original)
        ev.add("dtstart", start)
        ev.add("dtend", start + timedelta(minutes=15))
        ev.add("summary", title)
        self.cal(owner).add_component(ev)

    def add_all_day(self, owner: str, title: str, first: date, days: int, oof: bool) -> None:
        self.counter += 1
        ev = icalendar.Event()
        ev.add("uid", f"demo-{self.counter:04d}@{DOMAIN}")
        ev.add("dtstamp", datetime(2026, 1, 1, tzinfo=UTC))
        ev.add("dtstart", first)
        ev.add("dtend", first + timedelta(days=days))
        ev.add("summary", title)
        if oof:
            ev.add("X-MICROSOFT-CDO-BUSYSTATUS", "OOF")
        self.cal(owner).add_component(ev)

    def write(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        for who, cal in self.cals.items():
            for tzid in sorted(self.tzids[who]):
                cal.add_component(icalendar.Timezone.from_tzid(tzid))
            (folder / f"{email(who)}.ics").write_bytes(cal.to_ical())


def _weekday_before(d: date) -> date:
    while d.weekday() >= 5:
        d -= timedelta(days=1)
    return d


def _local(who: str, day: date, at: time) -> datetime:
    return datetime.combine(day, at, tzinfo=ZoneInfo(PEOPLE[who][1]))


def build_calendars(now: datetime) -> _Calendars:
    cals = _Calendars()
    today = now.astimezone(ZoneInfo("Europe/Berlin")).date()

    def ago(days: int) -> date:
        return _weekday_before(today - timedelta(days=days))

    def meeting(
        emp: str,
        partner: str,
        title: str,
        start: datetime,
        minutes: int,
        attendees: dict[str, str] | None = None,
        status: str | None = None,
    ) -> None:
        cals.add(
            [emp, partner],
            title,
            start,
            minutes,
            organizer=emp,
            attendees=attendees or {emp: "ACCEPTED", partner: "ACCEPTED"},
            status=status,
        )

    # Ana and Ben: deep dive lapsed (last held about 140 days ago); check-ins healthy.
    meeting("ana", "ben", "Development Align: Ana & Ben", _local("ana", ago(230), time(10)), 60)
    meeting("ana", "ben", "Development Advance: Ana & Ben", _local("ana", ago(140), time(10)), 60)
    meeting("ana", "ben", "Development check-in: Ana & Ben", _local("ana", ago(10), time(11)), 15)
    # Dev and Ben: deep dive 40 days ago, a check-in now due.
    meeting("dev", "ben", "Development Amplify: Dev & Ben", _local("dev", ago(40), time(15)), 60)
    meeting(
        "dev", "ben", "Development check-in: Dev & Ben", _local("dev", ago(33), time(14, 30)), 15
    )
    # Emma and Ben: deep dive earlier today, a recap is owed.
    held = (now - timedelta(hours=5)).replace(minute=0, second=0, microsecond=0)
    meeting("emma", "ben", "Development Advance: Emma & Ben", held, 60)
    meeting("emma", "ben", "Development Align: Emma & Ben", _local("emma", ago(95), time(11)), 60)
    # Farid and Ben: last held 200 days ago; since then one declined by Ben, one cancelled.
    meeting(
        "farid", "ben", "Development Align: Farid & Ben", _local("farid", ago(200), time(9)), 60
    )
    meeting(
        "farid",
        "ben",
        "Development Advance: Farid & Ben",
        _local("farid", ago(110), time(9)),
        60,
        attendees={"farid": "ACCEPTED", "ben": "DECLINED"},
    )
    meeting(
        "farid",
        "ben",
        "Development Advance: Farid & Ben",
        _local("farid", ago(104), time(9)),
        60,
        status="CANCELLED",
    )
    meeting(
        "farid", "ben", "Development check-in: Farid & Ben", _local("farid", ago(20), time(10)), 15
    )
    # Ana and Chloe: mentoring lapsed (45 days).
    meeting("ana", "chloe", "Mentoring: Ana & Chloe", _local("ana", ago(45), time(13)), 30)
    # Farid and Emma: mentoring tomorrow, an agenda is owed.
    meeting("farid", "emma", "Mentoring: Farid & Emma", _local("farid", ago(28), time(10)), 30)
    soon = (now + timedelta(hours=20)).replace(minute=0, second=0, microsecond=0)
    meeting("farid", "emma", "Mentoring: Farid & Emma", soon, 30)

    # Ordinary busy time on Ben's calendar.
    first = _local("ben", ago(60), time(9, 30))
    skip = _local("ben", _weekday_before(today + timedelta(days=3)), time(9, 30))
    moved = _local("ben", _weekday_before(today + timedelta(days=4)), time(9, 30))
    uid = cals.add(
        ["ben"],
        "Team standup",
        first,
        15,
        rrule={"FREQ": "DAILY", "BYDAY": ["MO", "TU", "WE", "TH", "FR"]},
        exdates=[skip],
    )
    cals.add_override("ben", uid, moved, moved + timedelta(hours=5), "Team standup (moved)")
    monday = today + timedelta(days=(7 - today.weekday()) % 7 or 7)
    cals.add_all_day("ben", "Out of office: offsite", monday, 2, oof=True)
    for offset in range(2, 16):
        day = today + timedelta(days=offset)
        if day.weekday() < 5 and offset % 3 == 0:
            cals.add(["ben"], "Hiring panel", _local("ben", day, time(14)), 90)
    cals.add(
        ["ben"],
        "Focus time",
        _local("ben", today + timedelta(days=2), time(10)),
        120,
        transparent=True,
    )
    cals.add(
        ["chloe"], "Quarterly planning", _local("chloe", today + timedelta(days=3), time(9)), 480
    )
    cals.add_all_day("dev", "Diwali holiday (personal)", today + timedelta(days=4), 1, oof=True)
    for who in ("ana", "dev", "emma", "farid", "chloe"):
        cals.cal(who)
    return cals


def create_workspace(folder: Path, now: datetime) -> Path:
    """Write the demo's config, plans and calendars into ``folder``; return the config path."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for who, (name, tz, country, hours) in PEOPLE.items():
        plan = f", plan: plans/{who}.yaml" if who in PLANS else ""
        language = f", language: {LANGUAGES[who]}" if who in LANGUAGES else ""
        lines.append(
            f"  - {{email: {email(who)}, name: {name}, timezone: {tz}, country: {country},\n"
            f'     working_hours: {{mon-fri: "{hours}"}}{plan}{language}}}'
        )
    text = CONFIG.format(people="\n".join(lines) + "\n", d=DOMAIN) + demo_directory.SECTION
    (folder / "plans").mkdir(exist_ok=True)
    for who, plan in PLANS.items():
        (folder / "plans" / f"{who}.yaml").write_text(plan, encoding="utf-8")
    build_calendars(now).write(folder / "calendars")
    demo_directory.create(folder)
    path = folder / "cadence.yaml"
    path.write_text(text, encoding="utf-8")
    return path


REPLY = """\
Thanks Ben, that was a useful hour. Updates from my side:

- [x] ask two peers for feedback on the retros
- [ ] shadow Priya's one-on-ones for a month (due {due1})
- [ ] draft a budget for the mobile team (due {due2}) (goal: engineering management)

Feedback from the retros: people like the format, and want fewer action items
with more follow-through.

--\x20
Emma Clarke
Mobile platform, Acme

On {date}, Ben Ortiz <ben@acme.example> wrote:
{quoted}
"""


def write_reply(folder: Path, recap: Path, now: datetime) -> Path:
    """Emma's reply to her recap, as her mail client would write it: top-posted, with
    a signature, the recap quoted below, and an HTML part in Gmail's shape."""
    from email import message_from_bytes, policy
    from email.message import EmailMessage
    from email.utils import format_datetime

    original = message_from_bytes(recap.read_bytes(), policy=policy.default)
    assert isinstance(original, EmailMessage)
    body = original.get_body(preferencelist=("plain",))
    old_text = str(body.get_content()) if body is not None else ""
    sent = format_datetime(now.astimezone(UTC))
    text = REPLY.format(
        due1=(now + timedelta(days=52)).date().isoformat(),
        due2=(now + timedelta(days=70)).date().isoformat(),
        date=f"{now.astimezone(ZoneInfo('Europe/London')):%a, %d %b %Y at %H:%M}",
        quoted="\n".join(f"> {line}".rstrip() for line in old_text.splitlines()),
    )
    mine, _, quote = text.partition("\nOn ")
    html_lines = "".join(f"<div>{_esc(line) or '<br>'}</div>" for line in mine.split("\n"))
    html = (
        f'<div dir="ltr">{html_lines}</div><br><div class="gmail_quote">'
        f'<div dir="ltr" class="gmail_attr">On {_esc(quote.splitlines()[0])}</div>'
        f'<blockquote class="gmail_quote" style="margin:0 0 0 .8ex;border-left:1px #ccc solid;'
        f'padding-left:1ex">{_esc(old_text)}</blockquote></div>'
    )
    msg = EmailMessage(policy=policy.SMTP)
    msg["From"] = "Emma Clarke <emma@acme.example>"
    msg["To"] = "Ben Ortiz <ben@acme.example>, Emma Clarke <emma@acme.example>"
    msg["Subject"] = f"Re: {original['Subject']}"
    msg["Date"] = sent
    msg["Message-ID"] = f"<reply-{now:%Y%m%d%H%M}.emma@mail.acme.example>"
    msg["In-Reply-To"] = str(original["Message-ID"])
    refs = str(original.get("References", "")).split()
    msg["References"] = " ".join([*refs, str(original["Message-ID"])])
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "re-recap-emma.eml"
    path.write_bytes(msg.as_bytes())
    return path


def _shown(path: Path) -> Path:
    """``path`` relative to the working directory when it is below it."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def _esc(text: str) -> str:
    import html

    return html.escape(text)


#: the mails the demo previews, by outbox kind: each language shows the first kind it has
LABELS = {
    "agenda": "Agenda",
    "recap": "Recap",
    "update": "Updated recap",
    "invite": "Invitation",
    "ended": "Line ended",
    "handover": "Hand-over",
}


def _previews(
    settings: config_mod.Settings, folder: Path, since: date, now: datetime
) -> list[tuple[str, Path]]:
    """Write the review packet and the HTML parts of the latest mails, for a browser."""
    import re
    from email import message_from_bytes, policy
    from email.message import EmailMessage

    from agent.store.sqlite import Store
    from agent.views import packet

    found: list[tuple[str, Path]] = []
    store = Store(settings.store_at)
    try:
        rows = store.outbox_rows()
        preview = folder / "preview"
        preview.mkdir(exist_ok=True)
        languages: dict[str, tuple[str, str, str]] = {}  # the latest mail in each language
        for kind, label in LABELS.items():
            sent = [r for r in rows if r["kind"] == kind and r["status"] == "sent"]
            for row in sent:
                msg = message_from_bytes(Path(row["location"]).read_bytes(), policy=policy.default)
                assert isinstance(msg, EmailMessage)
                part = msg.get_body(preferencelist=("html",))
                if part is None:
                    continue
                html = str(part.get_content())
                found_lang = re.search(r'<html lang="([^"]+)"', html)
                tag = found_lang.group(1) if found_lang else "en"
                if tag != "en" and tag not in languages:
                    languages[tag] = (kind, row["location"], html)
                if row is sent[-1] and kind in ("agenda", "recap", "update"):
                    html_path = preview / f"{kind}.html"
                    html_path.write_text(html, encoding="utf-8")
                    found.append((label, Path(row["location"])))
                    found.append((f"{label} (HTML)", html_path))
        for lang, (kind, location, html) in sorted(languages.items()):
            html_path = preview / f"{kind}-{lang}.html"
            html_path.write_text(html, encoding="utf-8")
            found.append((f"{LABELS[kind]}, {lang}", Path(location)))
            found.append((f"{LABELS[kind]}, {lang} (HTML)", html_path))
        data = packet.collect(settings, store, email("emma"), since, now)
        for fmt in ("md", "html"):
            path = folder / f"review-packet-emma.{fmt}"
            path.write_text(packet.render(data, fmt, settings.templates), encoding="utf-8")
            found.append((f"Review packet ({fmt})", path))
    finally:
        store.close()
    return found


def run_demo(folder: Path, now: datetime) -> None:
    path = folder / "cadence.yaml"
    created = False
    if path.exists():
        typer.echo(f"Reusing the demo workspace in {folder}/ (delete it to start afresh).")
    else:
        create_workspace(folder, now)
        typer.echo(
            f"Created a demo workspace in {folder}/: 6 people in 5 time zones, "
            "6 relationships on two programs."
        )
        created = True
    settings = config_mod.load(path)
    if created:
        typer.echo("")
        demo_directory.replay(folder, settings, now)
    with TickLock(settings.store_at, wait=5), Engine(settings) as engine:
        report = engine.tick(now)
        typer.echo("")
        new = print_report(engine.settings, report)
        inbox = folder / "inbox"
        recaps = sorted((folder / "outbox").glob("*recap.eml"))
        emma = [p for p in recaps if b"To: emma@acme.example" in p.read_bytes()]
        if emma and not (inbox / "re-recap-emma.eml").exists():
            reply = write_reply(inbox, emma[0], now)
            typer.echo(f"Emma answered her recap: {reply}")
            again = engine.tick(now)
            for action in again.actions:
                if action.kind in ("reply", "update") and action.outcome == "done":
                    what = "reply read" if action.kind == "reply" else "updated recap sent"
                    typer.echo(f"  → {what}: {action.detail}")
                    if action.data.get("where"):
                        typer.echo(
                            f"      to {', '.join(action.data['to'])} → {action.data['where']}"
                        )
    typer.echo("")
    typer.echo(f"Calendars: {folder}/calendars/   Mail: {folder}/outbox/   Store: {settings.store}")
    since = date(now.year, 1, 1)
    for label, where in _previews(settings, folder, since, now):
        typer.echo(f"{label + ':':<26} {_shown(where)}")
    typer.echo(
        f"Make your own: cadence review-packet emma@{DOMAIN} --since {since} --format html "
        f"-c {path}"
    )
    if new:
        typer.echo(
            f"Run it again ('cadence demo {folder}') and it books and sends nothing new; "
            f"'cadence log -c {path}' shows the audit log."
        )
