"""Plain one-line text from names and titles that people or directories typed.

A person's name reaches mail subjects, event titles and the display names of address
headers. There it must read as what it is: one line, no markup a calendar or mail
client might render (``Mentoring with <img``), and no bidirectional controls, which
make text show in another order than it holds (a subject read backwards, an
extension that looks like another). Pure functions, used wherever such text is made.
"""

from __future__ import annotations

import re

#: bidirectional embeddings, overrides, isolates and marks (LRE..RLO, LRI..PDI,
#: LRM, RLM, ALM)
BIDI = re.compile("[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")
#: C0 and C1 controls, DEL, and the line and paragraph separators: each becomes a space
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
#: a tag, or what is left of one; angle brackets never reach a name or a title
_TAG = re.compile(r"<[^<>]*>")
_ANGLE = re.compile(r"[<>]")
#: what opens an RFC 2047 encoded word: a reader would decode "=?utf-8?q?=40?=" in a
#: display name into an "@" the writer never quoted
_ENCODED_WORD = re.compile(r"=+\?")
#: a display name longer than this is cut: it must fit a header line or two
NAME_LIMIT = 120
#: a subject or an event title longer than this is cut
TITLE_LIMIT = 250


def one_line(text: str, limit: int = TITLE_LIMIT) -> str:
    """Return ``text`` on one line: controls and line breaks become single spaces,
    bidirectional controls are removed, runs of white space are folded, and the
    result is cut to ``limit`` characters."""
    text = _CONTROL.sub(" ", BIDI.sub("", text))
    return " ".join(" ".join(text.split())[:limit].split())


def plain(text: str, limit: int = TITLE_LIMIT) -> str:
    """Return ``text`` as one line of plain text for a subject or a title: tags are
    removed whole (``<img src=x>``), stray angle brackets dropped, the "=" that would
    open an encoded word (``=?``) dropped, then as ``one_line``."""
    text = _ANGLE.sub("", _TAG.sub("", BIDI.sub("", text)))
    return one_line(_ENCODED_WORD.sub("?", text), limit)


def display_name(name: str) -> str:
    """Return a person's name as a mail display name or an attendee's name: ``plain``
    text, cut to ``NAME_LIMIT``. Quoting is left to the address object that carries it."""
    return plain(name, NAME_LIMIT)


def first_name(name: str, email: str) -> str:
    """The first word of the plain name, else the address's local part."""
    words = plain(name).split()
    return words[0] if words else email.split("@")[0]
