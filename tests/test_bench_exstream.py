"""The Exchange streaming benchmark in small (20 relationships, no latency, one group of
calendars): its request counts are deterministic and checked here; the times only
loosely."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import exstream as bench


@pytest.mark.slow
def test_streaming_costs_one_request_per_connection_and_reopening(tmp_path: Path) -> None:
    # a ConnectionTimeout minute of 0.2 s: the 30-minute connection lasts 6 s; 12 s of
    # quiet window are 1 simulated hour, two reopenings
    result = bench.run(20, 0.0, 2, "12h", 0.2, 12.0, tmp_path)
    calendars = result["calendars"]
    assert calendars == 22
    assert result["subscribe_requests"] == calendars
    assert result["connections"] == 1  # 22 subscriptions: one group
    assert result["booked"] == 2
    delays = result["decline_to_move_s"]
    assert delays["n"] == 2 and delays["max"] < 10
    # nothing but the connection, opened again at each timeout (two, or three at a
    # boundary), in the quiet window
    assert set(result["stream_window_requests"]) == {"GetStreamingEvents"}
    assert 2 <= result["stream_window_requests"]["GetStreamingEvents"] <= 3
    # each calendar read every 12 hours through the day (push.poll's default): twice,
    # and nothing else but the booked relationships' planning
    assert result["day_requests_by_operation"]["FindItem"] == 2 * calendars
    assert "Subscribe" not in result["day_requests_by_operation"]
