"""Names and titles made plain: one line, no markup, no control or bidirectional characters.

Property tests of ``agent.formats.plain`` and of the places a subject or an event title
is made from it (``messages.subject``, ``messages.render_title``, ``actions.draft``).
"""

from __future__ import annotations

import unicodedata
from dataclasses import replace
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.model import Interval
from agent.formats import plain
from agent.rules import messages
from agent.rules.actions import draft
from tests.factories import CHECK, DEEP, person, relationship

START = datetime(2026, 11, 24, 9, tzinfo=UTC)
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
#: any text, and text built from the characters that matter here
texts = st.one_of(
    st.text(max_size=300),
    st.lists(
        st.sampled_from(
            [
                "<img src=x onerror=alert(1)>",
                "<",
                ">",
                "<b>",
                "</b>",
                "=?",
                "?=",
                "=",
                "?",
                "\r\n",
                "\n",
                "\x00",
                "\x85",
                "\u2028",
                "\t",
                " ",
                "a",
                "é",
                *BIDI,
            ]
        ),
        max_size=40,
    ).map("".join),
)


def is_plain(text: str, limit: int) -> bool:
    return (
        len(text) <= limit
        and text == " ".join(text.split())
        and not any(unicodedata.category(c) == "Cc" or c in BIDI for c in text)
        and "<" not in text
        and ">" not in text
        and "=?" not in text
        and "\u2028" not in text
        and "\u2029" not in text
    )


@settings(max_examples=500)
@given(text=texts, limit=st.integers(min_value=1, max_value=300))
def test_plain_text_is_one_line_without_markup_or_controls_and_stable(
    text: str, limit: int
) -> None:
    once = plain.plain(text, limit)
    assert is_plain(once, limit)
    assert plain.plain(once, limit) == once
    assert is_plain(plain.display_name(text), plain.NAME_LIMIT)


@given(text=st.text(alphabet=st.characters(categories=["L", "N"]), max_size=20))
def test_ordinary_words_are_kept(text: str) -> None:
    words = f"{text} O'Brien-Smith & Co. (PM), Ana: 50% ü"
    assert plain.plain(words) == " ".join(words.split())


def test_markup_is_removed_whole_and_a_lone_bracket_dropped() -> None:
    assert plain.plain("Zoë <img src=x onerror=alert(1)> Ruiz") == "Zoë Ruiz"
    assert plain.plain("Ana <b>Lima</b>") == "Ana Lima"
    assert plain.plain("<img") == "img"
    assert plain.plain("\u202eAna\u202c\r\nBcc: x") == "Ana Bcc: x"
    assert plain.first_name("<img src=x onerror=alert(1)>", "zoe@acme.example") == "zoe"


@settings(max_examples=200, deadline=None)
@given(name=texts)
def test_subjects_and_titles_are_plain_whatever_the_names(name: str) -> None:
    ben = replace(person("ben"), name=name)
    ana = replace(person("ana"), name=name)
    rel = relationship(ana, ben)
    for kind in messages.LABELS:
        assert is_plain(messages.subject(kind, rel, "deep_dive", "align", START), 250)
    for series in (DEEP, CHECK):
        title = messages.render_title(series.title, rel, "align")
        assert is_plain(title, 250)
        made = draft(rel, series.name, "align", "k1", title, Interval(START, START))
        assert is_plain(made.title, 250)
        for who in (made.organizer, *made.attendees):
            assert is_plain(who.name, plain.NAME_LIMIT)
            assert who.email in (ana.email, ben.email)


def test_the_reported_subject_shows_no_markup() -> None:
    zoe = replace(person("zoe"), name="<img src=x onerror=alert(1)> Zoë")
    rel = relationship(person("ana"), zoe)
    subject = messages.subject("agenda", rel, "mentoring", None, START)
    assert subject == "Agenda: Mentoring with Zoë, Tue 24 Nov 10:00"
    assert messages.render_title(DEEP.title, rel, "align") == "Development Align: Ana & Zoë"
