"""``cadence report``: the numbers, the formats, what it keeps private, and the HTML page
as headless Chromium renders it."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from agent.app.cli import app
from agent.rules.classify import Meeting, Status
from agent.settings import config
from agent.views import report

NOW = "2026-11-23T14:00:00+00:00"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
runner = CliRunner()


def cadence(*args: str) -> str:
    result = runner.invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture
def ticked(workspace: Path) -> Path:
    """The demo workspace after one tick at NOW."""
    result = runner.invoke(app, ["run", "--once", "--config", str(workspace), "--now", NOW])
    assert result.exit_code == 0, result.output
    return workspace


def held(series: str, day: int) -> Meeting:
    start = T0 + timedelta(days=day)
    return Meeting(f"m{day}", "a/b", series, "t", start, start + timedelta(hours=1), Status.HELD)


def test_lapses_are_the_spans_past_each_limit() -> None:
    checks = [
        report.Check("deep dive", 97, frozenset({"deep_dive"}), "deep_dive"),
        report.Check("conversation", 42, frozenset({"deep_dive", "check_in"}), "check_in"),
    ]
    meetings = [
        held("deep_dive", 0),
        held("check_in", 30),
        held("check_in", 100),
        held("deep_dive", 120),
    ]
    found = report.lapses(checks, meetings, T0, T0 + timedelta(days=250))
    spans = [
        (x.check, (x.start - T0).days, None if x.end is None else (x.end - T0).days, x.fixed)
        for x in found
    ]
    assert spans == [
        ("conversation", 72, 100, True),  # 30 + 42, ended by the check-in on day 100
        ("deep dive", 97, 120, True),
        ("conversation", 162, None, False),  # 120 + 42, still open
        ("deep dive", 217, None, False),
    ]
    # exactly on the limit is not a lapse
    assert report.lapses(checks[1:], [held("check_in", 42)], T0, T0 + timedelta(days=42)) == []


def test_checks_follow_the_programs(settings: config.Settings) -> None:
    by_program = {r.program.name: report.checks_for(r) for r in settings.relationships}
    leader = by_program["leader-cycle"]
    assert [(c.label, c.limit) for c in leader] == [("deep dive", 97), ("conversation", 42)]
    assert leader[1].watches == {"deep_dive", "check_in"} and leader[1].row == "check_in"
    assert [(c.label, c.limit) for c in by_program["mentoring"]] == [("one_on_one", 37)]


def test_report_numbers_on_the_demo(ticked: Path) -> None:
    data = json.loads(cadence("report", "--config", str(ticked), "--now", NOW, "--format", "json"))
    overall = data["overall"]
    assert overall["relationships"] == 6 and overall["employees"] == 4
    rels = {
        r["id"].split("@")[0] + "/" + r["partner"].split("@")[0]: r for r in data["relationships"]
    }
    # Ana's last deep dive was on 6 July: more than 97 days ago
    assert rels["ana/ben"]["on_cadence"] is False
    assert [x["end"] for x in rels["ana/ben"]["lapses"] if x["check"] == "deep dive"] == [None]
    # Emma held a deep dive today; Dev had a deep dive in October and a check-in since
    assert (
        rels["emma/ben"]["on_cadence"] is True and rels["emma/ben"]["days_since_conversation"] == 0
    )
    assert rels["dev/ben"]["on_cadence"] is True
    # Farid's second deep dive was declined by Ben, then cancelled
    assert (rels["farid/ben"]["declined"], rels["farid/ben"]["cancelled"]) == (1, 1)
    on = sum(r["on_cadence"] for r in data["relationships"])
    assert overall["on_cadence"] == on and overall["on_cadence_share"] == pytest.approx(on / 6)
    days = sorted(r["days_since_conversation"] for r in data["relationships"])
    assert overall["median_days_since_conversation"] == (days[2] + days[3]) / 2
    # what the tick booked counts as booked by Cadence and as scheduled
    assert overall["booked_by_cadence"] >= 1
    assert overall["scheduled"] >= overall["booked_by_cadence"]
    leaders = {(s["email"].split("@")[0], s["role"]): s for s in data["leaders"]}
    assert set(leaders) == {("ben", "leader"), ("chloe", "mentor"), ("emma", "mentor")}
    assert leaders[("ben", "leader")]["relationships"] == 4
    for key in (
        "held",
        "declined",
        "cancelled",
        "lapses_found",
        "lapses_fixed",
        "booked_by_cadence",
    ):
        assert overall[key] == sum(s[key] for s in data["leaders"]), key
    hours = sum(r["hours"] for r in data["relationships"]) / 4
    assert overall["hours_per_employee_year"] == pytest.approx(hours, abs=0.01)
    assert overall["share_of_work_time"] == pytest.approx(hours / 1760 * 100, abs=0.001)
    assert "actions" not in json.dumps(data["overall"])  # not in the store: left out


def test_table_and_csv_agree_with_json(ticked: Path) -> None:
    args = ("report", "--config", str(ticked), "--now", NOW, "--since", "2026-06-01")
    data = json.loads(cadence(*args, "--format", "json"))
    rows = list(csv.DictReader(io.StringIO(cadence(*args, "--format", "csv"))))
    assert [r["scope"] for r in rows] == ["leader", "leader", "leader", "overall"]
    assert int(rows[-1]["held"]) == data["overall"]["held"]
    assert float(rows[-1]["on_cadence_share"]) == pytest.approx(data["overall"]["on_cadence_share"])
    table = cadence(*args)
    overall = next(line for line in table.splitlines() if line.startswith("Overall"))
    assert f"{data['overall']['on_cadence_share'] * 100:.0f} %" in overall
    assert "Ben Ortiz (leader)" in table and "Period: 2026-06-01 to 2026-11-23" in table
    # a later start counts fewer meetings
    year = json.loads(cadence("report", "--config", str(ticked), "--now", NOW, "-f", "json"))
    assert year["overall"]["held"] > data["overall"]["held"]


def test_no_titles_unless_asked(ticked: Path) -> None:
    base = ("report", "--config", str(ticked), "--now", NOW)
    private = [cadence(*base, "--format", f) for f in ("table", "csv", "json", "html")]
    for text in private:
        assert "Development Align" not in text and "Mentoring:" not in text
        assert "Standup" not in text and "standup" not in text
    detailed = json.loads(cadence(*base, "--format", "json", "--details"))
    titles = [m["title"] for r in detailed["relationships"] for m in r["meetings"]]
    assert any(t.startswith("Development Align") for t in titles)
    assert "Development Align" in cadence(*base, "--format", "html", "--details")


def test_bad_options_exit_2(ticked: Path) -> None:
    for extra in (["--format", "pdf"], ["--since", "last year"], ["--since", "2027-01-01"]):
        result = runner.invoke(app, ["report", "--config", str(ticked), "--now", NOW, *extra])
        assert result.exit_code == 2, (extra, result.output)


def chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


PROBE = """<script>
addEventListener("load", () => {
  const charts = [...document.querySelectorAll("svg.chart")].map(s => {
    const b = s.getBoundingClientRect();
    return {kind: s.classList[1], w: Math.round(b.width), h: Math.round(b.height), right: Math.round(b.right)};
  });
  const out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({
    charts, width: innerWidth, scroll: document.documentElement.scrollWidth,
    meetings: document.querySelectorAll("g.meeting").length,
    lapses: document.querySelectorAll("rect.lapse").length,
    bars: document.querySelectorAll("rect.bar").length,
    cells: document.querySelectorAll("td").length,
  });
  document.body.append(out);
});
</script>"""


def render_in_chromium(html: Path, png: Path, work: Path) -> dict[str, object]:
    """Open ``html`` in headless Chromium; return what the probe measured; screenshot to ``png``."""
    browser = chromium()
    assert browser
    common = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-extensions",
        "--hide-scrollbars",
        f"--user-data-dir={work / 'profile'}",
        "--window-size=1060,1900",
    ]
    probed = work / "probed.html"
    probed.write_text(html.read_text().replace("</body>", PROBE + "</body>"))
    dom = subprocess.run(
        [*common, "--dump-dom", probed.as_uri()], capture_output=True, text=True, timeout=90
    )
    match = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout)
    assert match, dom.stderr[-2000:]
    shot = subprocess.run(
        [*common, f"--screenshot={png}", html.as_uri()], capture_output=True, text=True, timeout=90
    )
    assert png.exists(), shot.stderr[-2000:]
    return dict(json.loads(match.group(1).replace("&quot;", '"')))


def test_html_renders_offline_in_chromium(ticked: Path, tmp_path: Path) -> None:
    if chromium() is None:
        pytest.skip(
            "no Chromium: install it (make test-servers does, as root) to check the HTML report"
        )
    html = tmp_path / "report.html"
    cadence("report", "--config", str(ticked), "--now", NOW, "-f", "html", "-o", str(html))
    text = html.read_text()
    # self-contained: nothing to fetch (the SVG namespace is a name, not a request)
    assert not re.search(r"""(src|href)\s*=|url\(|@import|<link|<script""", text)
    assert set(re.findall(r"https?://[^\s\"'<>]+", text)) <= {"http://www.w3.org/2000/svg"}
    data = json.loads(cadence("report", "--config", str(ticked), "--now", NOW, "-f", "json"))
    probe = render_in_chromium(html, tmp_path / "report.png", tmp_path)
    charts = probe["charts"]
    assert isinstance(charts, list)
    assert [c["kind"] for c in charts] == ["adherence"] + ["timeline"] * 6
    for chart in charts:
        assert chart["w"] > 300 and chart["h"] > 40, chart
        assert chart["right"] <= probe["width"], chart  # nothing cut off at the right
    assert probe["scroll"] <= probe["width"]
    assert probe["bars"] == len(data["leaders"]) + 1
    assert probe["lapses"] >= sum(1 for r in data["relationships"] if not r["on_cadence"])
    assert probe["meetings"] >= data["overall"]["held"] + data["overall"]["scheduled"]
    png = (tmp_path / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 50_000
    assert int.from_bytes(png[16:20], "big") == 1060


def main() -> None:  # pragma: no cover - `make screenshots`
    """Refresh docs/screenshots/report.png from the demo workspace."""
    import tempfile

    from agent.app.demo import create_workspace

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        workspace = create_workspace(work / "demo", datetime.fromisoformat(NOW))
        runner.invoke(app, ["run", "--once", "--config", str(workspace), "--now", NOW])
        html = work / "report.html"
        cadence("report", "--config", str(workspace), "--now", NOW, "-f", "html", "-o", str(html))
        target = Path(__file__).parent.parent / "docs" / "screenshots" / "report.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        render_in_chromium(html, target, work)
        print(f"wrote {target}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    main()
