"""Per-customer state is bounded in time: closed customers leave, silent ones shrink."""

from __future__ import annotations

from datetime import datetime, timezone

from factories import DAY, T0, closed, profile_logic, reference, tx

from flows.engine import ProfileLifetime, _ProfileStep
from operators.profile import CustomerState
from operators.records import DeadLetter, ScoreRequest

EVICT_CLOSED = 3600.0
COMPACT_IDLE = 31 * DAY


def step(state: CustomerState | None = None) -> _ProfileStep:
    lifetime = ProfileLifetime(profile_logic(), EVICT_CLOSED, COMPACT_IDLE)
    return _ProfileStep(state or CustomerState(), lifetime)


def test_a_closed_customer_is_dropped_after_the_grace_period() -> None:
    profile_step = step()
    profile_step.on_batch([reference(at=T0), tx(at=T0 + 60), closed(at=T0 + DAY)])
    seconds_left = (profile_step.notify_at() - datetime.now(timezone.utc)).total_seconds()
    assert 0 < seconds_left <= EVICT_CLOSED
    out, discard = profile_step.on_notify()
    assert out == [] and discard is True


def test_a_silent_customer_keeps_reference_data_but_not_its_window_log() -> None:
    profile_step = step()
    profile_step.on_batch([reference(at=T0), *(tx(at=T0 + i * 600) for i in range(20))])
    assert len(profile_step.state.windows) == 20
    seconds_left = (profile_step.notify_at() - datetime.now(timezone.utc)).total_seconds()
    assert EVICT_CLOSED < seconds_left <= COMPACT_IDLE

    out, discard = profile_step.on_notify()
    assert out == [] and discard is False
    assert len(profile_step.state.windows) == 0
    assert profile_step.state.reference is not None
    # The next event is applied as for any known customer.
    (request,) = profile_step.on_batch([tx(at=T0 + 40 * DAY)])[0]
    assert isinstance(request, ScoreRequest)


def test_events_held_for_an_unknown_customer_are_dead_lettered_when_it_stays_silent() -> None:
    profile_step = step()
    held, _ = profile_step.on_batch([tx("c9", at=T0), tx("c9", at=T0 + 60)])
    assert held == []
    out, discard = profile_step.on_notify()
    assert discard is False
    assert [d.reason_code for d in out if isinstance(d, DeadLetter)] == ["unknown_customer"] * 2
