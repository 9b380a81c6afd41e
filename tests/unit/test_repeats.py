"""Tests for the repeat counter behind the proxy's and login's summary lines."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spoolgate.tunnel.repeats import RepeatCounter, RepeatSummary


def test_repeats_first_event_logged_rest_counted() -> None:
    counter = RepeatCounter(60.0)
    assert counter.note("alice", 0.0)
    assert not counter.note("alice", 1.0)
    assert not counter.note("alice", 2.0)
    assert counter.note("bob", 2.0)


def test_repeats_summary_due_after_interval() -> None:
    counter = RepeatCounter(60.0)
    counter.note("alice", 0.0)
    counter.note("alice", 1.0)
    counter.note("alice", 2.0)
    assert counter.take_due(59.0) == []
    assert counter.take_due(60.0) == [RepeatSummary("alice", 2, 60.0)]


def test_repeats_new_window_logs_first_again() -> None:
    counter = RepeatCounter(10.0)
    counter.note("alice", 0.0)
    counter.take_due(10.0)
    assert counter.note("alice", 11.0)


def test_repeats_single_event_ends_without_summary() -> None:
    counter = RepeatCounter(10.0)
    counter.note("alice", 0.0)
    assert counter.take_due(10.0) == []
    assert counter.take_all(10.0) == []


def test_repeats_take_all_closes_open_windows() -> None:
    counter = RepeatCounter(10.0)
    counter.note("alice", 0.0)
    counter.note("alice", 1.0)
    assert counter.take_all(2.0) == [RepeatSummary("alice", 1, 2.0)]


def test_repeats_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        RepeatCounter(0.0)


@given(st.lists(st.sampled_from("ab")))
def test_repeats_every_event_logged_or_counted(keys: list[str]) -> None:
    counter = RepeatCounter(5.0)
    logged = 0
    counted = 0
    for now, key in enumerate(keys):
        logged += counter.note(key, float(now))
        counted += sum(s.count for s in counter.take_due(float(now)))
    counted += sum(s.count for s in counter.take_all(float(len(keys))))
    assert logged + counted == len(keys)
