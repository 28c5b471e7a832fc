"""Read action items back from replies to recaps (pure: bytes in, values out).

People answer a recap with lines such as::

    - [ ] draft the platform proposal (due 2026-12-15)
    - [x] shadow an on-call week

in whatever their mail client makes of it: a text part or only HTML, top-posted above
the quoted recap or written inline between quoted lines, followed by a signature.
Only what the person wrote counts: quoted text (``>`` lines, ``<blockquote>``, the
"On … wrote:" and Outlook "From:/Sent:" blocks, Gmail and Outlook quote containers)
and signatures are left out, so the recap's own checklist is never read back as new.

Also here: merging the plan's action items with the ones recorded from replies.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage, MIMEPart
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from html.parser import HTMLParser

from agent.core.plan import Plan, normalize


@dataclass(frozen=True)
class Item:
    """One checklist line from a reply."""

    title: str
    done: bool
    due: date | None = None
    goal: str | None = None


@dataclass(frozen=True)
class Reply:
    """A reply to a recap, parsed: who sent it, what it answers, its action lines."""

    message_id: str
    sender: str
    sender_name: str
    date: datetime | None
    in_reply_to: str | None
    references: tuple[str, ...]
    """The References field, oldest first; with In-Reply-To, how the recap is found."""
    items: tuple[Item, ...] = ()
    notes: str = ""
    problems: tuple[str, ...] = ()
    from_addresses: tuple[str, ...] = ()
    """Every address in From: one alone is a sender that can be authenticated."""
    authentication: tuple[str, ...] = ()
    """The values of the Authentication-Results fields, topmost (the last added) first."""

    @property
    def parents(self) -> tuple[str, ...]:
        """Message-IDs this reply answers, nearest first."""
        out: list[str] = []
        for mid in (self.in_reply_to, *reversed(self.references)):
            if mid and mid not in out:
                out.append(mid)
        return tuple(out)


# --- the message -----------------------------------------------------------------------

_MSGID = re.compile(r"<[^<>\s]+>")


def parse(raw: bytes) -> Reply:
    """Parse one RFC 5322 message into the reply's headers, items and notes."""
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    name, sender = parseaddr(str(msg.get("From", "")))
    everyone = getaddresses([str(v) for v in msg.get_all("From", [])])
    when: datetime | None = None
    if msg.get("Date"):
        try:
            when = parsedate_to_datetime(str(msg["Date"]))
        except (TypeError, ValueError):
            when = None
        if when is not None and when.tzinfo is None:  # "-0000": UTC, origin unknown
            when = when.replace(tzinfo=UTC)
    in_reply_to = _MSGID.findall(str(msg.get("In-Reply-To", "")))
    references = tuple(_MSGID.findall(str(msg.get("References", ""))))
    text = written_text(msg)
    items, notes, problems = read_lines(text)
    return Reply(
        message_id=(_MSGID.findall(str(msg.get("Message-ID", ""))) or [""])[0],
        sender=sender.lower(),
        sender_name=name,
        date=when,
        in_reply_to=in_reply_to[0] if in_reply_to else None,
        references=references,
        items=tuple(items),
        notes=notes,
        problems=tuple(problems),
        from_addresses=tuple(a.lower() for _, a in everyone if a),
        authentication=tuple(str(v) for v in msg.get_all("Authentication-Results", [])),
    )


def recipients(raw: bytes) -> list[str]:
    msg = message_from_bytes(raw, policy=policy.default)
    return [a.lower() for _, a in getaddresses([str(v) for v in msg.get_all("To", [])])]


def written_text(msg: EmailMessage) -> str:
    """The text the sender wrote: the plain part, else the HTML part as text, unquoted."""
    part = msg.get_body(preferencelist=("plain",))
    if part is not None:
        return strip_quotes(_content(part))
    part = msg.get_body(preferencelist=("html",))
    if part is not None:
        return strip_quotes(html_text(_content(part)))
    return ""


def _content(part: MIMEPart) -> str:
    try:
        return str(part.get_content())
    except (LookupError, UnicodeError):  # an unknown or lying charset
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""


# --- HTML to text ----------------------------------------------------------------------

_BLOCKS = {
    "p", "div", "br", "li", "ul", "ol", "tr", "table", "h1", "h2", "h3", "h4", "h5", "h6",
    "pre", "hr", "section", "article", "header", "footer",
}  # fmt: skip
_VOID = {"br", "hr", "img", "meta", "link", "input", "wbr", "col", "area", "base", "source"}
#: Containers mail clients put the quoted original (or a signature) into.
_QUOTE_CLASSES = {
    "gmail_quote",
    "gmail_extra",
    "moz-cite-prefix",
    "yahoo_quoted",
    "gmail_signature",
}
_QUOTE_IDS = {"mail-editor-reference-message-container", "signature", "ms-outlook-mobile-signature"}


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.stack: list[tuple[str, bool]] = []  # (tag, skipping)
        self.skip = 0
        self.stopped = False  # an Outlook reply header: everything after is the original

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.stopped:
            return
        values = dict(attrs)
        classes = set((values.get("class") or "").lower().split())
        ident = (values.get("id") or "").lower()
        if ident in ("divrplyfwdmsg", "appendonsend"):
            self.stopped = True
            return
        quoting = (
            tag in ("blockquote", "script", "style", "head", "title")
            or bool(classes & _QUOTE_CLASSES)
            or ident in _QUOTE_IDS
        )
        if tag in _BLOCKS:
            self.out.append("\n")
        if tag == "li":
            self.out.append("- ")
        if tag in _VOID:
            return
        self.stack.append((tag, quoting))
        if quoting:
            self.skip += 1

    def handle_endtag(self, tag: str) -> None:
        if self.stopped or tag in _VOID:
            return
        # close up to the matching tag, forgiving the unclosed tags mail HTML is full of
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                for _, quoting in self.stack[i:]:
                    if quoting:
                        self.skip -= 1
                del self.stack[i:]
                break
        if tag in _BLOCKS:
            self.out.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip and not self.stopped:
            self.out.append(data.replace("\xa0", " "))


def html_text(html: str) -> str:
    """Render HTML as plain lines, leaving out quoted originals and signatures."""
    parser = _Text()
    parser.feed(html)
    parser.close()
    lines = ["".join(line).strip() for line in "".join(parser.out).split("\n")]
    text = "\n".join(" ".join(line.split()) for line in lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


# --- quotes and signatures -------------------------------------------------------------

_ATTRIBUTION = re.compile(
    r"^(on\b.{0,200}\bwrote:?|am\b.{0,200}\bschrieb.{0,80}:|le\b.{0,200}\ba écrit\s?:|"
    r"el\b.{0,200}\bescribió:|.{0,200}<[^>\s]+@[^>\s]+>\s*(wrote|schrieb):?)$",
    re.I,
)
_SEPARATORS = re.compile(
    r"^(-{2,}\s*(original message|ursprüngliche nachricht|forwarded message)\s*-{2,}|_{10,})$",
    re.I,
)
_HEADER_LINE = re.compile(r"^\*?(from|von|de)\s*:\*?\s", re.I)
_SENT_LINE = re.compile(r"^\*?(sent|date|gesendet|datum|envoyé)\s*:\*?\s", re.I)
_MOBILE = re.compile(r"^(sent from my|get outlook for|von meinem)\b", re.I)


def strip_quotes(text: str) -> str:
    """Keep what the sender wrote: drop quoted lines, quoted originals and signatures.

    Inline replies keep their own lines between quoted ones; a top-posted reply ends at
    the attribution or separator above an unprefixed original; a signature ends a block.
    """
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    in_signature = False
    i = 0
    while i < len(lines):
        line = lines[i].rstrip()
        bare = line.strip()
        if bare.startswith(">"):
            in_signature = False  # a signature ends where quoting resumes
            i += 1
            continue
        if _SEPARATORS.match(bare):
            break
        if _HEADER_LINE.match(bare) and any(
            _SENT_LINE.match(x.strip()) for x in lines[i + 1 : i + 4]
        ):
            break  # Outlook's "From: … Sent: …" block above the unprefixed original
        width = 2 if _attribution_over_two(lines, i) else 1 if _ATTRIBUTION.match(bare) else 0
        if width:
            rest = [x.strip() for x in lines[i + width :] if x.strip()]
            if rest and not rest[0].startswith(">"):
                break  # the original follows unprefixed: nothing after is the sender's
            i += width
            continue
        if line == "-- " or bare == "--" or _MOBILE.match(bare):
            in_signature = True
            i += 1
            continue
        if not in_signature:
            kept.append(line)
        i += 1
    return "\n".join(kept).strip()


def _attribution_over_two(lines: Sequence[str], i: int) -> bool:
    """Gmail wraps long attributions: "On Tue, 24 Nov 2026 at 12:00, Ana Lima <" / "…> wrote:"."""
    if i + 1 >= len(lines):
        return False
    first, second = lines[i].strip(), lines[i + 1].strip()
    return bool(
        re.match(r"^(on|am|le|el)\b", first, re.I)
        and re.search(r"(wrote|schrieb|a écrit|escribió)\s?:?$", second, re.I)
        and not first.endswith(":")
    )


# --- checklist lines -------------------------------------------------------------------

# Replies come in every language Cadence writes: full-width brackets and colons (Japanese
# input methods type them), and the words the recaps use for "due", "goal", "done" and
# "open" in each shipped catalogue. A word that is also common prose ("bis", "para",
# "até") counts as a due date only before a number, so "(para el cliente)" stays title.
_ITEM = re.compile(r"^\s*(?:[-*•+・]\s*|\d+[.)]\s*)?[\[［]\s*([xX✓✔ｘＸ]?)\s*[\]］]\s*(.+?)\s*$")
_DUE = re.compile(
    r"[(（]\s*(?:(?:due|fällig|hasta|vence|échéance|prazo|期限|締切)\s*(?:am\s+|le\s+|el\s+)?"
    r"[:：]?\s*([^)）]*?)|(?:bis|para(?:\s+el)?|até|avant\s+le|d'ici\s+le|pour\s+le)"
    r"\s*[:：]?\s*(\d[^)）]*?))\s*[)）]",
    re.I,
)
_GOAL = re.compile(
    r"[(（]\s*(?:(?:goal|ziel|objetivo|objectif|meta)\s*[:：]?\s+|目標\s*[:：]?\s*)([^)）]*?)\s*[)）]",
    re.I,
)
#: "- erledigt: …" / "- done: …": the status words of an updated recap, read back
_WORDED = re.compile(
    r"^\s*[-*•+・]\s*(done|erledigt|hecha|hecho|terminée|terminé|concluída|concluído|完了|"
    r"open|offen|pendiente|en cours|em aberto|未完了)\s*[:：]\s*(.+?)\s*$",
    re.I,
)
_DONE_WORDS = frozenset(
    {"done", "erledigt", "hecha", "hecho", "terminée", "terminé", "concluída", "concluído", "完了"}
)
_DATES = (
    (re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})$"), (1, 2, 3)),
    (re.compile(r"^(\d{4})年\s*(\d{1,2})月\s*(\d{1,2})日$"), (1, 2, 3)),
    # day first: German, Spanish, French and Portuguese write 15.12.2026, 15/12/2026
    (re.compile(r"^(\d{1,2})[./-](\d{1,2})[./-](\d{4})$"), (3, 2, 1)),
)


def read_date(text: str) -> date:
    """A due date as people write it: ``2026-12-15``, ``2026/12/15``, ``2026年12月15日``,
    ``15.12.2026``, ``15/12/2026`` (day first). Raise ValueError for anything else."""
    text = text.strip()
    try:
        return date.fromisoformat(text)
    except ValueError:
        pass  # not ISO: one of the written forms below
    for pattern, (y, m, d) in _DATES:
        found = pattern.match(text)
        if found:
            return date(int(found.group(y)), int(found.group(m)), int(found.group(d)))
    raise ValueError(text)


def read_lines(text: str) -> tuple[list[Item], str, list[str]]:
    """Split written text into checklist items, free notes, and problems worth reporting."""
    items: list[Item] = []
    notes: list[str] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for line in text.split("\n"):
        match = _ITEM.match(line)
        worded = None if match else _WORDED.match(line)
        if worded:
            word, rest = worded.groups()
            mark = "x" if word.lower() in _DONE_WORDS else ""
        elif match:
            mark, rest = match.groups()
        else:
            notes.append(line.rstrip())
            continue
        due: date | None = None
        goal: str | None = None
        found = _DUE.search(rest)
        if found:
            written = found.group(1) if found.group(1) is not None else found.group(2)
            try:
                due = read_date(written)
            except ValueError:
                problems.append(
                    f"{line.strip()!r}: due date {written!r} is not YYYY-MM-DD; kept without it"
                )
            rest = rest[: found.start()] + rest[found.end() :]
        found = _GOAL.search(rest)
        if found:
            goal = found.group(1) or None
            rest = rest[: found.start()] + rest[found.end() :]
        title = " ".join(rest.split()).strip(" -–")
        if not title:
            continue
        item = Item(title=title, done=bool(mark.strip()), due=due, goal=goal)
        key = normalize(title)
        if key in seen:  # the last line about an action wins
            items[seen[key]] = item
        else:
            seen[key] = len(items)
            items.append(item)
    return items, unwrap("\n".join(notes)), problems


_LIST_LINE = re.compile(r"^\s*([-*•+]|\d+[.)])\s")


def unwrap(text: str) -> str:
    """Join lines a mail client wrapped at 72 columns back into paragraphs; blank lines
    and list items keep their breaks."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines: list[str] = []
        for line in block.split("\n"):
            line = line.strip()
            if lines and line and not _LIST_LINE.match(line):
                lines[-1] += " " + line
            elif line:
                lines.append(line)
        if lines:
            paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


# --- actions: the plan's and the recorded ones -----------------------------------------


@dataclass(frozen=True)
class Action:
    """An action item as agendas and recaps show it."""

    title: str
    goal: str | None = None
    due: date | None = None
    status: str = "open"
    source: str = "plan"  # or "reply"
    changed: str | None = None  # ISO timestamp of the last change from a reply


@dataclass(frozen=True)
class Actions:
    open: tuple[Action, ...] = ()
    done: tuple[Action, ...] = ()
    all: tuple[Action, ...] = field(default=())


def goal_for(item: Item, plan: Plan | None, known: dict[str, Action]) -> str | None:
    """Which of the plan's goals an item serves.

    An explicit ``(goal: …)`` naming a goal wins; then the goal of the same action seen
    before; then a milestone of that title; then the plan's only goal; else none.
    """
    if plan is None:
        return None
    if item.goal:
        goal = plan.goal(item.goal)
        if goal:
            return goal.title
    previous = known.get(normalize(item.title))
    if previous and previous.goal:
        return previous.goal
    for goal in plan.goals:
        if any(normalize(m.title) == normalize(item.title) for m in goal.milestones):
            return goal.title
    return plan.goals[0].title if len(plan.goals) == 1 else None


def merge(plan: Plan | None, recorded: Iterable[Action]) -> Actions:
    """The plan's action items overlaid with those recorded from replies, by title."""
    by_title: dict[str, Action] = {}
    if plan:
        for a in plan.actions:
            by_title[normalize(a.title)] = Action(a.title, a.goal, a.due, a.status)
    for r in recorded:
        key = normalize(r.title)
        old = by_title.get(key)
        if old:
            r = Action(
                old.title, r.goal or old.goal, r.due or old.due, r.status, r.source, r.changed
            )
        by_title[key] = r
    everything = list(by_title.values())
    opened = sorted(
        (a for a in everything if a.status == "open"), key=lambda a: (a.due or date.max, a.title)
    )
    done = [a for a in everything if a.status == "done"]
    return Actions(open=tuple(opened), done=tuple(done), all=tuple(everything))
