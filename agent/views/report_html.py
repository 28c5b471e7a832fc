"""The organization report as one self-contained HTML page with inline SVG charts.

No scripts, fonts, images or styles from anywhere else: it opens offline, prints, and
can be mailed as an attachment.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from html import escape

from agent.views.report import (
    COLUMNS,
    CONVERSATION_DAYS,
    DEEP_DIVE_DAYS,
    TARGET_HOURS,
    TARGET_SHARE,
    RelationshipReport,
    Report,
    Summary,
    cell,
    definitions,
)

PALETTE = ["#2563eb", "#0d9488", "#9333ea", "#d97706"]
GREY = "#9ca3af"
LAPSE = "#fca5a5"

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2937;margin:0;background:#f8fafc}
main{max-width:1000px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:24px;margin:0 0 2px}h2{font-size:17px;margin:30px 0 10px}h3{font-size:15px;margin:22px 0 6px}
.sub{color:#6b7280;margin:0 0 18px}
.cards{display:grid;grid-template-columns:repeat(4,1fr);gap:12px}
.card{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:12px 14px}
.card b{display:block;font-size:24px}.card span{color:#6b7280;font-size:12.5px}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #e5e7eb;font-size:13px}
th,td{padding:6px 7px;border-bottom:1px solid #eef0f3;text-align:right;white-space:nowrap}
th{white-space:normal;vertical-align:bottom;font-size:12px}
th:first-child,td:first-child{text-align:left}th{background:#f3f4f6;font-weight:600}
tr.total td{font-weight:600;background:#f9fafb}
.rel{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:8px 12px;margin:8px 0}
.rel header{display:flex;justify-content:space-between;gap:12px;font-size:13px}
.badge{border-radius:10px;padding:1px 8px;font-size:12px}.ok{background:#dcfce7;color:#166534}.late{background:#fee2e2;color:#991b1b}
.muted{color:#6b7280}svg{display:block;max-width:100%;height:auto}
.legend{display:flex;flex-wrap:wrap;gap:14px;font-size:12.5px;color:#4b5563;align-items:center}
ul.defs{color:#4b5563;font-size:12.5px;padding-left:18px}
@media (max-width:640px){main{padding:16px 12px 32px}.cards{grid-template-columns:repeat(2,1fr)}
.scroll{overflow-x:auto}.rel header{flex-wrap:wrap}}
@media print{body{background:#fff}.rel,.card{break-inside:avoid}}
"""


def render(report: Report) -> str:
    o = report.overall
    cards = [
        (
            _pct(o.on_cadence_share),
            f"on cadence ({o.on_cadence} of {o.relationships} relationships)",
        ),
        (
            cell("median_days_since_conversation", o.median_days_since_conversation),
            "median days since the last development conversation",
        ),
        (f"{o.lapses_found} / {o.lapses_fixed}", "lapses found / fixed in the period"),
        (
            f"{cell('', o.hours_per_employee_year)} h",
            f"per employee per year ({cell('share_of_work_time', o.share_of_work_time)} of work time; aim {TARGET_SHARE} %, about {TARGET_HOURS:.0f} h)",
        ),
    ]
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        "<title>Development cadence report</title>",
        f"<style>{CSS}</style></head><body><main>",
        "<h1>Development cadence</h1>",
        f'<p class="sub">{report.since:%d %b %Y} to {report.now:%d %b %Y} · as of {report.now:%Y-%m-%d %H:%M} UTC · '
        f"{o.relationships} relationships, {o.employees} employees</p>",
        '<section class="cards">',
        *[f'<div class="card"><b>{escape(v)}</b><span>{escape(t)}</span></div>' for v, t in cards],
        "</section>",
        "<h2>Per leader</h2>",
        _table(report),
        "<h2>Adherence per leader</h2>",
        adherence_svg([*report.leaders, report.overall]),
        "<h2>Relationships</h2>",
        _legend(),
    ]
    for leader in report.leaders:
        members = [
            r for r in report.relationships if r.partner == leader.email and r.role == leader.role
        ]
        parts.append(
            f"<h3>{escape(leader.name)} <span class=muted>({escape(leader.role or '')})</span></h3>"
        )
        for r in members:
            parts.append(_relationship(r, report))
    parts += [
        "<h2>Definitions</h2>",
        '<ul class="defs">',
        *[f"<li>{escape(line)}</li>" for line in definitions(report)],
        "</ul></main></body></html>",
    ]
    return "\n".join(parts) + "\n"


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.0f} %"


def _table(report: Report) -> str:
    head = "".join(f"<th>{escape(label)}</th>" for _, label in COLUMNS)
    rows = []
    for s in [*report.leaders, report.overall]:
        name = s.name if s.role is None else f"{s.name} ({s.role})"
        cls = ' class="total"' if s.role is None else ""
        cells = "".join(f"<td>{escape(cell(k, getattr(s, k)))}</td>" for k, _ in COLUMNS)
        rows.append(f"<tr{cls}><td>{escape(name)}</td>{cells}</tr>")
    return (
        '<div class="scroll" tabindex="0" role="region" aria-label="Measures per leader">'
        f"<table><thead><tr><th>leader</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody>"
        "</table></div>"
    )


def adherence_svg(summaries: list[Summary]) -> str:
    """Horizontal bars: the share of each leader's relationships on cadence."""
    label_w, bar_w, row_h, top = 210, 560, 30, 24
    width = label_w + bar_w + 110
    height = top + row_h * len(summaries) + 8
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart adherence" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="Share of relationships on cadence per leader">',
        '<rect width="100%" height="100%" fill="#fff"/>',
    ]
    for pct in (0, 25, 50, 75, 100):
        x = label_w + bar_w * pct / 100
        out.append(
            f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{height - 6}" stroke="#e5e7eb"/>'
        )
        out.append(
            f'<text x="{x:.1f}" y="{top - 10}" font-size="11" fill="#6b7280" text-anchor="middle">{pct} %</text>'
        )
    for i, s in enumerate(summaries):
        y = top + i * row_h
        share = s.on_cadence_share or 0.0
        colour = "#16a34a" if share >= 0.8 else ("#f59e0b" if share >= 0.5 else "#dc2626")
        name = s.name if s.role is None else f"{s.name} ({s.role})"
        weight = ' font-weight="600"' if s.role is None else ""
        out.append(
            f'<text x="{label_w - 10}" y="{y + 19}" font-size="13" text-anchor="end"{weight}>{escape(name)}</text>'
        )
        out.append(
            f'<rect x="{label_w}" y="{y + 5}" width="{bar_w}" height="20" rx="3" fill="#f3f4f6"/>'
        )
        out.append(
            f'<rect class="bar" x="{label_w}" y="{y + 5}" width="{bar_w * share:.1f}" height="20" rx="3" fill="{colour}">'
            f"<title>{escape(name)}: {s.on_cadence} of {s.relationships} on cadence</title></rect>"
        )
        out.append(
            f'<text x="{label_w + bar_w + 8}" y="{y + 19}" font-size="13"{weight}>{_pct(s.on_cadence_share)} '
            f'<tspan fill="#6b7280" font-size="11">({s.on_cadence}/{s.relationships})</tspan></text>'
        )
    out.append("</svg>")
    return "".join(out)


def _legend() -> str:
    def mark(svg: str, text: str) -> str:
        return f'<span><svg width="22" height="18" viewBox="0 0 22 18" style="display:inline;vertical-align:middle">{svg}</svg> {escape(text)}</span>'

    c = PALETTE[0]
    items = [
        mark(f'<circle cx="11" cy="9" r="6" fill="{c}"/>', "held"),
        mark(
            f'<circle cx="11" cy="9" r="6" fill="#fff" stroke="{c}" stroke-width="2"/>', "scheduled"
        ),
        mark(
            f'<circle cx="11" cy="9" r="8" fill="none" stroke="{c}" stroke-width="1"/><circle cx="11" cy="9" r="5" fill="{c}"/>',
            "booked by Cadence",
        ),
        mark(_cross(11, 9, "#6b7280"), "declined"),
        mark(_cross(11, 9, GREY, dashed=True), "cancelled"),
        mark(f'<rect x="1" y="3" width="20" height="12" fill="{LAPSE}" opacity=".55"/>', "lapsed"),
        "<span>colour: series · Al Ad Am Av: deep dive stage (Align, Advance, Amplify, Advocate)</span>",
    ]
    return f'<div class="legend">{"".join(items)}</div>'


def _cross(x: float, y: float, colour: str, dashed: bool = False) -> str:
    dash = ' stroke-dasharray="2 2"' if dashed else ""
    return (
        f'<circle cx="{x:.1f}" cy="{y}" r="6" fill="#fff" stroke="{colour}" stroke-width="1.5"{dash}/>'
        f'<path d="M{x - 3.5:.1f} {y - 3.5} L{x + 3.5:.1f} {y + 3.5} M{x + 3.5:.1f} {y - 3.5} L{x - 3.5:.1f} {y + 3.5}" stroke="{colour}" stroke-width="1.5"/>'
    )


def timeline_svg(r: RelationshipReport, since: datetime, now: datetime) -> str:
    """One row per series: meetings by status and stage, lapsed spans shaded."""
    label_w, width, row_h, top = 96, 900, 30, 22
    latest = max((m.start for m in r.meetings), default=now)
    end = max(now + timedelta(days=30), min(latest + timedelta(days=10), now + timedelta(days=120)))
    span = (end - since).total_seconds()
    plot_w = width - label_w - 14

    def x(when: datetime) -> float:
        return label_w + plot_w * max(0.0, min(1.0, (when - since).total_seconds() / span))

    rows = r.series
    height = top + row_h * len(rows) + 6
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart timeline" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="Meetings of {escape(r.id)}">',
    ]
    # month grid
    month = datetime(since.year, since.month, 1, tzinfo=UTC)
    while month <= end:
        if month >= since and abs((month - now).total_seconds()) > 12 * 86400:
            mx = x(month)
            label = f"{month:%b}" if month.month != 1 else f"{month:%b %Y}"
            out.append(
                f'<line x1="{mx:.1f}" y1="{top - 4}" x2="{mx:.1f}" y2="{height - 4}" stroke="#eef0f3"/>'
            )
            out.append(
                f'<text x="{mx + 3:.1f}" y="{top - 8}" font-size="10.5" fill="#9ca3af">{label}</text>'
            )
        month = datetime(month.year + month.month // 12, month.month % 12 + 1, 1, tzinfo=UTC)
    for i, name in enumerate(rows):
        y = top + i * row_h
        out.append(
            f'<rect x="{label_w}" y="{y + 3}" width="{plot_w}" height="{row_h - 6}" fill="#f9fafb"/>'
        )
        out.append(
            f'<text x="{label_w - 8}" y="{y + row_h / 2 + 4}" font-size="12" text-anchor="end" fill="#374151">{escape(name.replace("_", " "))}</text>'
        )
        for lapse in r.lapses:
            if lapse.row != name:
                continue
            stop = lapse.end or now
            if stop < since:
                continue
            x1, x2 = x(max(lapse.start, since)), x(stop)
            until = f"{lapse.end:%Y-%m-%d}" if lapse.end else "now"
            out.append(
                f'<rect class="lapse" x="{x1:.1f}" y="{y + 3}" width="{max(x2 - x1, 1.5):.1f}" height="{row_h - 6}" fill="{LAPSE}" opacity=".55">'
                f"<title>{escape(lapse.check)} lapsed {lapse.start:%Y-%m-%d} to {until}</title></rect>"
            )
    nx = x(now)
    out.append(
        f'<line x1="{nx:.1f}" y1="{top - 4}" x2="{nx:.1f}" y2="{height - 2}" stroke="#374151" stroke-dasharray="3 3"/>'
    )
    out.append(
        f'<text x="{nx - 3:.1f}" y="{top - 8}" font-size="10.5" fill="#374151" text-anchor="end">today</text>'
    )
    for m in r.meetings:
        if m.start < since or m.series not in rows:
            continue
        i = rows.index(m.series)
        colour = PALETTE[i % len(PALETTE)]
        cx, cy = x(m.start), top + i * row_h + row_h / 2
        tip = f"{m.series.replace('_', ' ')}{' · ' + m.stage if m.stage else ''} · {m.status} · {m.start:%Y-%m-%d}"
        if m.title:
            tip += f" · {m.title}"
        if m.by_cadence:
            tip += " · booked by Cadence"
        if m.status == "held":
            shape = f'<circle cx="{cx:.1f}" cy="{cy}" r="6" fill="{colour}"/>'
        elif m.status == "scheduled":
            shape = f'<circle cx="{cx:.1f}" cy="{cy}" r="6" fill="#fff" stroke="{colour}" stroke-width="2"/>'
        elif m.status == "declined":
            shape = _cross(cx, cy, "#6b7280")
        else:
            shape = _cross(cx, cy, GREY, dashed=True)
        ring = (
            f'<circle cx="{cx:.1f}" cy="{cy}" r="9" fill="none" stroke="{colour}" stroke-width="1"/>'
            if m.by_cadence
            else ""
        )
        stage = (
            f'<text x="{cx + 11:.1f}" y="{cy + 4}" font-size="10" fill="#4b5563">{escape(m.stage[:2].title())}</text>'
            if m.stage and m.status in ("held", "scheduled")
            else ""
        )
        out.append(
            f'<g class="meeting {escape(m.status)}"><title>{escape(tip)}</title>{ring}{shape}{stage}</g>'
        )
    out.append("</svg>")
    return "".join(out)


def _start(report: Report) -> datetime:
    """Where every timeline starts: the period's start, or a little before the first
    meeting when the store's history begins later (the same for all, so they line up)."""
    first = min((m.start for r in report.relationships for m in r.meetings), default=report.since)
    return max(report.since, datetime(first.year, first.month, 1, tzinfo=UTC) - timedelta(days=1))


def _relationship(r: RelationshipReport, report: Report) -> str:
    badge = (
        '<span class="badge ok">on cadence</span>'
        if r.on_cadence
        else '<span class="badge late">off cadence</span>'
    )
    days = (
        "never met"
        if r.days_since_conversation is None
        else f"{r.days_since_conversation} days since the last conversation"
    )
    open_lapse = next((x for x in r.lapses if x.end is None), None)
    note = (
        f" · {escape(open_lapse.check.replace('_', ' '))} lapsed since {open_lapse.start:%Y-%m-%d}"
        if open_lapse
        else ""
    )
    return (
        f'<article class="rel"><header><span><b>{escape(r.employee_name)}</b> '
        f'<span class="muted">with {escape(r.partner_name)} · {escape(r.program)}</span></span>'
        f'<span class="muted">{days}{note} {badge}</span></header>'
        f"{timeline_svg(r, _start(report), report.now)}</article>"
    )


__all__ = ["CONVERSATION_DAYS", "DEEP_DIVE_DAYS", "adherence_svg", "render", "timeline_svg"]
