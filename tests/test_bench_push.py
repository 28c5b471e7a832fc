"""The push benchmark in small (20 relationships, no latency): the quiet day's request
count is deterministic and checked here; the times only loosely."""

from __future__ import annotations

from pathlib import Path

from benchmarks import push as bench


def test_a_quiet_day_costs_under_a_fifth_of_a_request_per_calendar_hour(tmp_path: Path) -> None:
    result = bench.run(20, 0.0, 2, "12h", tmp_path)
    calendars = result["calendars"]
    assert calendars == 22
    # each calendar read every 12 hours, twice a day, each time with a token request of
    # its own (the clock moves with the day: an hour-long token has expired by then);
    # nothing else (channels last a week)
    assert result["quiet_day_token_requests"] == 2 * calendars
    assert result["quiet_day_requests"] == 4 * calendars
    assert result["quiet_day_requests_per_calendar_hour"] <= 0.2
    assert result["booked"] == 2
    delays = result["change_to_action_s"]
    assert delays["n"] == 2 and delays["max"] < 10
