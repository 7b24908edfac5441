"""RollingWindows: exact sliding event-time totals, checked against a brute-force count."""

from __future__ import annotations

import pickle
import random
from collections import deque

import pytest
from factories import T0
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from operators.windows import (
    _TRIM_AFTER,
    CHANNELS,
    CREDIT,
    DEBIT,
    EXTERNAL_DEBIT,
    METRICS,
    SPEND,
    WINDOWS,
    RollingWindows,
    complaint_code,
    contact_code,
    login_code,
)

DAY = 86400


def _spec() -> dict[int, tuple[tuple[str, bool], ...]]:
    """What each contribution code means, written out independently of the module's table:
    (metric, adds the amount rather than 1)."""
    out = ("outflow_count", False), ("outflow_amount", True)
    spec = {
        SPEND: (("spend_count", False), ("spend_amount", True), *out),
        DEBIT: out,
        EXTERNAL_DEBIT: (*out, ("external_outflow_amount", True)),
        CREDIT: (("inflow_count", False), ("inflow_amount", True)),
    }
    for channel in CHANNELS:
        contact = (f"contacts_{channel}", False)
        spec[contact_code(channel)] = (contact,)
        spec[login_code(channel)] = (contact, ("logins", False))
        spec[complaint_code(channel)] = (
            contact,
            ("complaints", False),
            ("complaint_severity", True),
        )
    return spec


SPEC = _spec()


def brute_force(events: list[tuple[float, int, float]]) -> dict[str, dict[str, float]]:
    """Totals recomputed from scratch: window (latest - span, latest] of every metric."""
    latest = max(t for t, _, _ in events)
    result = {}
    for name, span in WINDOWS:
        totals = dict.fromkeys(METRICS, 0.0)
        for t, code, amount in events:
            if t > latest - span:
                for metric, uses_amount in SPEC[code]:
                    totals[metric] += amount if uses_amount else 1.0
        result[name] = totals
    return result


def assert_matches(windows: RollingWindows, events: list[tuple[float, int, float]]) -> None:
    expected = brute_force(events)
    for name, _ in WINDOWS:
        for metric in METRICS:
            assert windows.total(name, metric) == pytest.approx(expected[name][metric], abs=1e-6), (
                f"{metric} over {name} after {len(events)} events"
            )


# Times on a 15-minute grid over 45 days, so that events often fall exactly on a window's
# edge; codes from every family; amounts in cents.
EVENTS = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=45 * 96).map(lambda q: T0 + 900.0 * q),
        st.sampled_from(sorted(SPEC)),
        st.integers(min_value=1, max_value=10_000_000).map(lambda cents: cents / 100),
    ),
    min_size=1,
    max_size=60,
)


@hypothesis_settings(max_examples=150, deadline=None)
@given(events=EVENTS)
def test_in_order_stream_matches_brute_force(events: list[tuple[float, int, float]]) -> None:
    events = sorted(events, key=lambda e: e[0])
    windows = RollingWindows()
    for i, (at, code, amount) in enumerate(events):
        windows.add(at, code, amount)
        assert_matches(windows, events[: i + 1])


@hypothesis_settings(max_examples=200, deadline=None)
@given(events=EVENTS)
def test_any_arrival_order_matches_brute_force(events: list[tuple[float, int, float]]) -> None:
    windows = RollingWindows()
    for i, (at, code, amount) in enumerate(events):
        windows.add(at, code, amount)
        assert_matches(windows, events[: i + 1])


@hypothesis_settings(max_examples=100, deadline=None)
@given(events=EVENTS, late=st.lists(st.integers(1, 4 * 3600), min_size=1, max_size=20))
def test_out_of_order_within_lateness_matches_brute_force(
    events: list[tuple[float, int, float]], late: list[int]
) -> None:
    """The caller's case: in order, except some events arrive up to hours behind."""
    events = sorted(events, key=lambda e: e[0])
    stream = list(events)
    for i, behind in enumerate(late):
        at, code, amount = events[i % len(events)]
        stream.insert(min(len(stream), i * 3 + 2), (at - behind, code, amount))
    windows = RollingWindows()
    for i, (at, code, amount) in enumerate(stream):
        windows.add(at, code, amount)
        assert_matches(windows, stream[: i + 1])


@pytest.mark.parametrize(("name", "span"), WINDOWS)
def test_each_window_expires_an_event_exactly_span_seconds_later(name: str, span: int) -> None:
    windows = RollingWindows()
    windows.add(T0, SPEND, 100.0)

    windows.add(T0 + span - 1, SPEND, 1.0)
    assert windows.total(name, "spend_amount") == 101.0
    assert windows.total(name, "spend_count") == 2.0

    windows.add(T0 + span, SPEND, 1.0)
    assert windows.total(name, "spend_amount") == 2.0
    assert windows.total(name, "spend_count") == 2.0
    # Longer windows still hold the first event.
    for other, other_span in WINDOWS:
        if other_span > span:
            assert windows.total(other, "spend_amount") == 102.0


def test_an_out_of_order_event_is_counted_only_in_windows_it_falls_into() -> None:
    windows = RollingWindows()
    windows.add(T0, CREDIT, 1000.0)

    windows.add(T0 - 2 * DAY, CREDIT, 50.0)  # two days back: in 7d and 30d, not 1h or 24h

    assert windows.total("1h", "inflow_amount") == 1000.0
    assert windows.total("24h", "inflow_amount") == 1000.0
    assert windows.total("7d", "inflow_amount") == 1050.0
    assert windows.total("30d", "inflow_amount") == 1050.0

    # And it slides out of the 7d window on time, not with the event it arrived after.
    windows.add(T0 + 5 * DAY, DEBIT, 1.0)
    assert windows.total("7d", "inflow_amount") == 1000.0
    assert windows.total("30d", "inflow_amount") == 1050.0


def test_an_event_older_than_every_window_counts_nowhere() -> None:
    windows = RollingWindows()
    windows.add(T0, SPEND, 10.0)

    windows.add(T0 - 31 * DAY, SPEND, 99.0)

    assert {windows.total(name, "spend_amount") for name, _ in WINDOWS} == {10.0}


def test_totals_are_named_and_rounded_to_cents() -> None:
    windows = RollingWindows()
    windows.add(T0, complaint_code("branch"), 4.0)
    windows.add(T0 + 1, SPEND, 10.005)
    windows.add(T0 + 2, SPEND, 0.001)

    totals = windows.snapshot().rounded()

    assert len(totals) == len(METRICS) * len(WINDOWS)
    assert totals["complaints_1h"] == 1.0
    assert totals["complaint_severity_30d"] == 4.0
    assert totals["contacts_branch_24h"] == 1.0
    assert totals["spend_amount_7d"] == 10.01
    assert totals["logins_1h"] == 0.0


def _long_stream(seed: int, days: int, per_day: int) -> list[tuple[float, int, float]]:
    rng = random.Random(seed)
    step = DAY / per_day
    codes = sorted(SPEC)
    return [
        (T0 + i * step + rng.uniform(0, step / 2), rng.choice(codes), round(rng.uniform(1, 500), 2))
        for i in range(days * per_day)
    ]


def test_compaction_keeps_totals_right_over_a_long_stream() -> None:
    stream = _long_stream(seed=7, days=100, per_day=40)
    windows = RollingWindows()
    for i, (at, code, amount) in enumerate(stream):
        windows.add(at, code, amount)
        if i % 500 == 499:
            # Check against the events that can still matter (the last 30 days).
            recent = [e for e in stream[: i + 1] if e[0] > at - 31 * DAY]
            assert_matches(windows, recent)
    recent = [e for e in stream if e[0] > stream[-1][0] - 31 * DAY]
    assert_matches(windows, recent)


def test_memory_is_bounded_by_the_events_of_the_longest_window() -> None:
    stream = _long_stream(seed=3, days=150, per_day=100)
    in_window: deque[float] = deque()
    windows = RollingWindows()
    largest = 0
    for at, code, amount in stream:
        windows.add(at, code, amount)
        in_window.append(at)
        while in_window[0] <= at - 30 * DAY:
            in_window.popleft()
        # Expired events are cut from the log in small chunks.
        assert len(windows) <= len(in_window) + _TRIM_AFTER
        largest = max(largest, len(windows))
    assert largest < len(stream) / 4


def test_pickling_keeps_totals_and_behaviour() -> None:
    stream = _long_stream(seed=11, days=40, per_day=30)
    original = RollingWindows()
    for at, code, amount in stream[:900]:
        original.add(at, code, amount)

    restored = pickle.loads(pickle.dumps(original, protocol=pickle.HIGHEST_PROTOCOL))

    assert restored.snapshot().rounded() == original.snapshot().rounded()
    # The snapshot leaves out the expired events the live log has not cut yet.
    assert len(restored) == len(original) - original.starts[-1]
    assert restored.latest == original.latest
    # Both continue identically, including an out-of-order event and expiry.
    late = (stream[899][0] - 1800, SPEND, 77.0)
    for at, code, amount in [late, *stream[900:]]:
        original.add(at, code, amount)
        restored.add(at, code, amount)
        assert restored.snapshot().values == original.snapshot().values
    recent = [e for e in [*stream, late] if e[0] > stream[-1][0] - 31 * DAY]
    assert_matches(restored, recent)


def test_an_amount_beyond_32_bits_of_hundredths_is_summed_exactly() -> None:
    windows = RollingWindows()
    windows.add(T0, SPEND, 12.34)
    windows.add(T0 + 60, CREDIT, 30_000_000.01)  # 3e9 hundredths: more than int32 holds
    windows.add(T0 + 120, SPEND, 0.66)

    assert windows.total("1h", "inflow_amount") == 30_000_000.01
    assert windows.total("1h", "spend_amount") == 13.0
    restored = pickle.loads(pickle.dumps(windows, protocol=pickle.HIGHEST_PROTOCOL))
    for later in (windows, restored):
        later.add(T0 + 2 * 3600, SPEND, 1.0)
        assert later.total("1h", "inflow_amount") == 0.0
        assert later.total("24h", "inflow_amount") == 30_000_000.01
        assert later.total("24h", "spend_amount") == 14.0
