"""The push benchmark in small (20 relationships, no latency): the quiet day's request
count is deterministic and checked here; the times only loosely."""

from __future__ import annotations

from pathlib import Path

from benchmarks import push as bench


def test_a_quiet_google_day_costs_under_a_fifth_of_a_request_per_calendar_hour(
    tmp_path: Path,
) -> None:
    result = bench.run(20, 0.0, 2, "12h", tmp_path)
    calendars = result["calendars"]
    assert calendars == 22
    # each calendar read every 12 hours, twice a day, each time with a token request of
    # its own (the clock moves with the day: an hour-long token has expired by then);
    # nothing else (channels last a week)
    assert result["quiet_token_requests"] == 2 * calendars
    assert result["quiet_requests"] == 4 * calendars
    assert result["quiet_requests_per_calendar_hour"] <= 0.2
    assert result["booked"] == 2
    delays = result["change_to_action_s"]
    assert delays["n"] == 2 and delays["max"] < 10


def test_a_quiet_graph_day_reads_each_calendar_twice_with_one_app_token(
    tmp_path: Path,
) -> None:
    result = bench.run(20, 0.0, 2, "12h", tmp_path, "microsoft")
    calendars = result["calendars"]
    # an application token serves every mailbox: one per burst of reads, not per person
    assert result["quiet_token_requests"] <= 3
    assert result["quiet_requests"] == 2 * calendars + result["quiet_token_requests"]
    assert result["booked"] == 2
    delays = result["change_to_action_s"]
    assert delays["n"] == 2 and delays["max"] < 10
