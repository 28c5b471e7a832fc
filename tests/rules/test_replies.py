"""Reading action items back from replies, on messages shaped like real clients write them."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from agent.rules import replies
from agent.rules.replies import Action, Item
from agent.settings import idp as idp

RECAP_ID = "<m1.recap@cadence>"
AGENDA_ID = "<m1.agenda@cadence>"

QUOTED_RECAP = """\
> Recap · Development Advance with Ben
> Advance: Ana & Ben
>
> Open actions
> - [ ] draft the platform proposal (due 2026-12-15)
> - [ ] ask Chloe for a reading list on mentoring
>
> Completed
> - [x] shadow an on-call week
"""


def headers(**extra: str) -> str:
    base = {
        "From": "Ana Lima <ana@acme.example>",
        "To": "Ben Ortiz <ben@acme.example>",
        "Subject": "Re: Recap: Development Advance with Ben, Mon 23 Nov 15:00",
        "Date": "Tue, 24 Nov 2026 09:12:44 -0300",
        "Message-ID": "<CAF=abc123@mail.gmail.com>",
        "In-Reply-To": RECAP_ID,
        "References": f"{AGENDA_ID} {RECAP_ID}",
        "MIME-Version": "1.0",
    }
    base.update(extra)
    return "".join(f"{k}: {v}\r\n" for k, v in base.items())


def gmail_top_posted() -> bytes:
    text = f"""\
Thanks Ben! Two updates and a new one:

- [x] draft the platform proposal
- [ ] run a design review with the clinic team (due 2027-01-20)

Also: the proposal got good comments from Dev.

--\x20
Ana Lima
Senior data scientist · Acme

On Mon, 23 Nov 2026 at 17:00, Ana Lima <ana@acme.example> wrote:
{QUOTED_RECAP}"""
    html = """\
<div dir="ltr"><div>Thanks Ben! Two updates and a new one:</div><div><br></div>\
<div>- [x] draft the platform proposal</div>\
<div>- [ ] run a design review with the clinic team (due 2027-01-20)</div><div><br></div>\
<div>Also: the proposal got good comments from Dev.</div><br clear="all">\
<div><div dir="ltr" class="gmail_signature">Ana Lima<br>Senior data scientist · Acme</div></div></div>\
<br><div class="gmail_quote"><div dir="ltr" class="gmail_attr">On Mon, 23 Nov 2026 at 17:00, \
Ana Lima &lt;<a href="mailto:ana@acme.example">ana@acme.example</a>&gt; wrote:<br></div>\
<blockquote class="gmail_quote" style="margin:0px 0px 0px 0.8ex">Open actions<br>\
- [ ] ask Chloe for a reading list on mentoring<br></blockquote></div>
"""
    return (
        headers(**{"Content-Type": 'multipart/alternative; boundary="000000000000b1"'})
        + '\r\n--000000000000b1\r\nContent-Type: text/plain; charset="UTF-8"\r\n'
        + "Content-Transfer-Encoding: 8bit\r\n\r\n"
        + text
        + '\r\n--000000000000b1\r\nContent-Type: text/html; charset="UTF-8"\r\n\r\n'
        + html
        + "\r\n--000000000000b1--\r\n"
    ).encode()


def test_gmail_top_posted_reply_with_signature() -> None:
    reply = replies.parse(gmail_top_posted())
    assert reply.sender == "ana@acme.example"
    assert reply.sender_name == "Ana Lima"
    assert reply.message_id == "<CAF=abc123@mail.gmail.com>"
    assert reply.parents == (RECAP_ID, AGENDA_ID)
    assert reply.items == (
        Item("draft the platform proposal", done=True),
        Item("run a design review with the clinic team", done=False, due=date(2027, 1, 20)),
    )
    assert "good comments from Dev" in reply.notes
    assert "Senior data scientist" not in reply.notes  # the signature
    assert "reading list" not in reply.notes  # the quoted recap
    assert reply.problems == ()


def test_html_only_reply_from_outlook_with_unprefixed_original() -> None:
    html = """\
<html><head><style>p.MsoNormal{margin:0}</style></head><body>
<div class="WordSection1">
<p class="MsoNormal">Hi Ben,<o:p></o:p></p>
<ul><li>[x]&nbsp;shadow an on-call week</li>
<li>[ ] pair with Chloe on the forecasting demo (due 2026-12-10)</li></ul>
<p class="MsoNormal">Best,<br>Ana</p>
<div id="Signature"><p>Ana Lima | Data | +55 11 5555 0100</p></div>
<div style="border:none;border-top:solid #E1E1E1 1.0pt;padding:3.0pt 0cm 0cm 0cm">
<p class="MsoNormal"><b>From:</b> Ana Lima &lt;ana@acme.example&gt;<br>
<b>Sent:</b> Monday, November 23, 2026 5:00 PM<br>
<b>To:</b> Ben Ortiz &lt;ben@acme.example&gt;<br>
<b>Subject:</b> Recap: Development Advance with Ben</p></div>
<p>Open actions</p><ul><li>- [ ] draft the platform proposal (due 2026-12-15)</li></ul>
</div></body></html>
"""
    raw = (
        headers(
            **{
                "Content-Type": 'text/html; charset="iso-8859-1"',
                "Content-Transfer-Encoding": "quoted-printable",
                "Message-ID": "<DB9PR01MB1234@eurprd01.prod.outlook.com>",
                "References": RECAP_ID,
            }
        )
        + "\r\n"
        + html.replace("=", "=3D")
    ).encode("latin-1")
    reply = replies.parse(raw)
    assert reply.items == (
        Item("shadow an on-call week", done=True),
        Item("pair with Chloe on the forecasting demo", done=False, due=date(2026, 12, 10)),
    )
    assert "draft the platform proposal" not in reply.notes
    assert "5555" not in reply.notes


def test_outlook_web_reply_stops_at_the_reply_header_block() -> None:
    html = """\
<div>- [ ] book the clinic visit</div>
<div id="appendonsend"></div><hr style="display:inline-block;width:98%">
<div id="divRplyFwdMsg" dir="ltr"><b>From:</b> Ana Lima</div>
<div>- [ ] draft the platform proposal (due 2026-12-15)</div>
"""
    raw = (headers(**{"Content-Type": "text/html; charset=utf-8"}) + "\r\n" + html).encode()
    assert replies.parse(raw).items == (Item("book the clinic visit", done=False),)


def test_inline_reply_between_quoted_lines_keeps_only_new_lines() -> None:
    text = """\
On 23 Nov 2026, at 17:00, Ana Lima <ana@acme.example> wrote:
> Open actions
> - [ ] draft the platform proposal (due 2026-12-15)

- [x] draft the platform proposal

> - [ ] ask Chloe for a reading list on mentoring

Not yet, moving it:
- [ ] ask Chloe for a reading list on mentoring (due 2027-01-08)

Sent from my iPhone
"""
    raw = (headers(**{"Content-Type": "text/plain; charset=utf-8"}) + "\r\n" + text).encode()
    reply = replies.parse(raw)
    assert reply.items == (
        Item("draft the platform proposal", done=True),
        Item("ask Chloe for a reading list on mentoring", done=False, due=date(2027, 1, 8)),
    )
    assert reply.notes == "Not yet, moving it:"


def test_apple_mail_html_blockquote_is_left_out() -> None:
    html = """\
<html><body dir="auto"><div>- [x] ask Chloe for a reading list on mentoring</div>\
<div><br><blockquote type="cite"><div>On 23 Nov 2026, at 17:00, Cadence wrote:</div>\
<div>- [ ] draft the platform proposal</div></blockquote></div></body></html>"""
    raw = (headers(**{"Content-Type": "text/html; charset=utf-8"}) + "\r\n" + html).encode()
    assert replies.parse(raw).items == (Item("ask Chloe for a reading list on mentoring", True),)


def test_thunderbird_and_german_attribution() -> None:
    text = f"""\
* [X] Vortrag vorbereiten (goal: Lead the forecasting platform)

Am 23.11.26 um 17:00 schrieb Ana Lima:
{QUOTED_RECAP}"""
    raw = (
        headers(**{"Content-Type": "text/plain; charset=utf-8; format=flowed"}) + "\r\n" + text
    ).encode()
    reply = replies.parse(raw)
    assert reply.items == (Item("Vortrag vorbereiten", True, goal="Lead the forecasting platform"),)


def test_outlook_plain_text_original_message_separator() -> None:
    text = """\
- [ ] write the Q4 summary (due 2026-12-20)

-----Original Message-----
From: Ana Lima <ana@acme.example>
Sent: Monday, November 23, 2026 5:00 PM
- [ ] draft the platform proposal (due 2026-12-15)
"""
    raw = (headers(**{"Content-Type": "text/plain"}) + "\r\n" + text).encode()
    assert replies.parse(raw).items == (
        Item("write the Q4 summary", False, due=date(2026, 12, 20)),
    )


def test_a_bad_due_date_keeps_the_action_and_says_why() -> None:
    items, _, problems = replies.read_lines("- [ ] plan the offsite (due next friday)")
    assert items == [Item("plan the offsite", False)]
    assert len(problems) == 1 and "next friday" in problems[0]


def test_the_last_line_about_an_action_wins_and_bullets_vary() -> None:
    items, notes, _ = replies.read_lines(
        "1. [ ] Write the docs\n+ [x] write the docs.\n• [ ] other thing\n[x]   \nplain note"
    )
    assert items == [Item("write the docs.", True), Item("other thing", False)]
    assert notes == "plain note"  # an empty checkbox carries nothing


def test_no_headers_no_body() -> None:
    reply = replies.parse(b"Subject: hello\r\n\r\n")
    assert reply.message_id == "" and reply.sender == "" and reply.items == ()
    assert reply.parents == ()


@given(st.text())
def test_any_text_parses_without_error(text: str) -> None:
    items, _, _ = replies.read_lines(replies.strip_quotes(text))
    assert all(i.title.strip() for i in items)
    replies.html_text(text)


def plan(tmp_path: Path) -> idp.Plan:
    path = tmp_path / "plan.yaml"
    path.write_text(
        """\
goals:
  - title: Lead the forecasting platform
    milestones: [{title: run the first design review, due: 2027-02-01}]
  - title: Grow as a mentor
actions:
  - {title: draft the platform proposal, goal: Lead the forecasting platform, due: 2026-12-15}
  - {title: take a course, status: dropped}
"""
    )
    return idp.load(path)


def test_merge_lays_recorded_actions_over_the_plan(tmp_path: Path) -> None:
    recorded = [
        Action("Draft the platform proposal.", None, None, "done", "reply"),
        Action("find a mentee", "Grow as a mentor", date(2027, 1, 5), "open", "reply"),
    ]
    merged = replies.merge(plan(tmp_path), recorded)
    assert [a.title for a in merged.open] == ["find a mentee"]
    assert merged.done[0].title == "draft the platform proposal"  # the plan's wording
    assert merged.done[0].goal == "Lead the forecasting platform"
    assert merged.done[0].due == date(2026, 12, 15)
    assert "take a course" not in [a.title for a in (*merged.open, *merged.done)]


def test_goal_for_explicit_then_known_then_milestone(tmp_path: Path) -> None:
    p = plan(tmp_path)
    known = {a.title: a for a in replies.merge(p, ()).all}
    assert replies.goal_for(Item("x", False, goal="mentor"), p, known) == "Grow as a mentor"
    assert (
        replies.goal_for(Item("Draft the platform proposal", True), p, known)
        == "Lead the forecasting platform"
    )
    assert (
        replies.goal_for(Item("run the first design review", True), p, known)
        == "Lead the forecasting platform"
    )
    assert replies.goal_for(Item("something else", False), p, known) is None
    assert replies.goal_for(Item("something", False, goal="no such goal"), p, known) is None
    assert replies.goal_for(Item("x", False), None, {}) is None


def test_base64_text_in_a_mixed_message_with_an_attachment() -> None:
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"] = "Ben Ortiz <ben@acme.example>"
    msg["Message-ID"] = "<b64@acme.example>"
    msg["In-Reply-To"] = RECAP_ID
    msg["Date"] = "Tue, 24 Nov 2026 10:00:00 -0000"
    msg.set_content("- [x] Überblick schreiben (due 2026-12-01)\n", cte="base64")
    msg.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="a.pdf")
    reply = replies.parse(msg.as_bytes())
    assert reply.items == (Item("Überblick schreiben", True, due=date(2026, 12, 1)),)
    assert reply.date is not None and reply.date.utcoffset() is not None


def test_notes_are_unwrapped_into_paragraphs_but_lists_keep_their_lines() -> None:
    _, notes, _ = replies.read_lines(
        "The retro format works, and people want fewer action\nitems with more follow-through.\n"
        "\n\n\nTwo asks:\n- more time\n- a budget\n"
    )
    assert notes == (
        "The retro format works, and people want fewer action items with more "
        "follow-through.\n\nTwo asks:\n- more time\n- a budget"
    )
