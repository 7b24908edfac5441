"""Per-customer state is compact and survives a snapshot unchanged in behaviour."""

from __future__ import annotations

import pickle
import random
from datetime import datetime, timezone

from factories import DAY, HOUR, T0, closed, contact, profile_logic, reference, tx

from flows.engine import ProfileLifetime, _ProfileStep
from operators.profile import CustomerState, ProfileLogic
from operators.records import DeadLetter, Event, FloatMap, ScoreRequest


def _history(rng: random.Random, start: float, days: int) -> list[Event]:
    """A few weeks of mixed activity: payments, logins, complaints, offers, a closure."""
    events: list[Event] = []
    for day in range(days):
        at = start + day * DAY
        for _ in range(rng.randrange(1, 5)):
            at += rng.uniform(60, 4 * HOUR)
            events.append(
                tx(
                    at=at,
                    amount=round(rng.uniform(1, 900), 2),
                    merchant_id=f"m{rng.randrange(60)}",
                    country=rng.choice(("GB", "GB", "GB", "FR", "ES")),
                )
            )
        if day % 3 == 0:
            events.append(contact(at=at + 60, device_id=f"d{rng.randrange(4)}"))
        if day % 7 == 2:
            events.append(contact(at=at + 120, type="offer_impression", offer_id="savings"))
        if day % 7 == 4:
            events.append(contact(at=at + 180, type="offer_accepted", offer_id="savings"))
        if day % 11 == 5:
            events.append(contact(at=at + 240, type="complaint", severity=4))
    return events


def _outcome(logic: ProfileLogic, state: CustomerState, event: Event) -> list[tuple]:
    """What an event yields, in comparable form."""
    out = []
    for result in logic.apply(state, event):
        if isinstance(result, DeadLetter):
            out.append((result.outcome, result.reason_code))
            continue
        assert isinstance(result, ScoreRequest)
        profile = {**result.profile, "aggregates": result.profile["aggregates"].rounded()}
        out.append(
            (
                profile,
                result.churn_features,
                result.anomaly_features,
                result.offer_context,
                result.labels,
                result.churn_snapshot,
                result.resolved_snapshots,
            )
        )
    return out


def test_a_restored_state_behaves_exactly_like_the_live_one() -> None:
    rng = random.Random(7)
    logic = profile_logic()
    live = CustomerState()
    history = [reference(at=T0 - DAY, segment="affluent"), *_history(rng, T0, 40)]
    for event in history:
        logic.apply(live, event)

    restored = pickle.loads(pickle.dumps(live, protocol=pickle.HIGHEST_PROTOCOL))

    later = _history(rng, T0 + 40 * DAY, 45)
    replays = [history[-1], history[-5], history[0]]  # a duplicate, a late one, the record
    for event in [*replays, *later, closed(at=T0 + 86 * DAY)]:
        assert _outcome(logic, restored, event) == _outcome(logic, live, event)


def test_restored_customers_share_their_repeated_strings() -> None:
    logic = profile_logic()
    blobs = []
    for customer in ("c1", "c2"):
        state = CustomerState()
        logic.apply(state, reference(customer, segment="affluent", rm_id="rm-7"))
        logic.apply(state, tx(customer, at=T0, country="FR"))
        blobs.append(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))

    first, second = (pickle.loads(blob) for blob in blobs)

    assert first.reference.segment is second.reference.segment
    assert first.reference.rm_id is second.reference.rm_id
    assert first.reference.products is second.reference.products
    assert first.countries is second.countries


def test_the_profile_step_keeps_no_per_key_settings() -> None:
    lifetime = ProfileLifetime(profile_logic(), evict_closed=3600.0, compact_idle=31 * DAY)
    steps = [_ProfileStep(CustomerState(), lifetime) for _ in range(2)]

    assert steps[0].step is steps[1].step
    assert not vars(steps[0])  # every field in a slot
    due = steps[0].notify_at()
    assert due.tzinfo is timezone.utc
    assert 0 < (due - datetime.now(timezone.utc)).total_seconds() <= 31 * DAY


def test_a_float_map_behaves_like_the_dict_it_replaces() -> None:
    rng = random.Random(3)
    compact, plain = FloatMap(), {}
    for _ in range(400):
        key = float(rng.randrange(24))
        action = rng.random()
        if action < 0.5:
            compact[key] = plain[key] = rng.random()
        elif action < 0.8:
            assert compact.pop(key, None) == plain.pop(key, None)
        elif plain:
            del compact[min(compact)], plain[min(plain)]
        assert dict(compact) == plain and len(compact) == len(plain)
    restored = pickle.loads(pickle.dumps(compact, protocol=pickle.HIGHEST_PROTOCOL))
    assert dict(restored) == plain
