"""ProfileLogic.apply: each event once, in event time, with held, late and duplicate
events dead-lettered for a reason, and delayed labels that never leak the future."""

from __future__ import annotations

from typing import Any

import pytest
from factories import (
    DAY,
    HOUR,
    T0,
    closed,
    contact,
    profile_logic,
    reference,
    settings,
    tx,
)
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from operators.profile import CustomerState, ProfileLogic
from operators.records import DeadLetter, Event, ScoreRequest

HORIZON = settings().models.churn_horizon_days * DAY
LATENESS = float(settings().engine.allowed_lateness_seconds)
GRACE = float(settings().engine.unknown_customer_grace_seconds)


def known_customer(logic: ProfileLogic | None = None, **fields: Any) -> CustomerState:
    state = CustomerState()
    (request,) = (logic or profile_logic()).apply(state, reference(at=T0 - DAY, **fields))
    assert isinstance(request, ScoreRequest)
    return state


def applied(logic: ProfileLogic, state: CustomerState, event: Event) -> ScoreRequest:
    (result,) = logic.apply(state, event)
    assert isinstance(result, ScoreRequest), result
    return result


def churn_labels(results: list[ScoreRequest | DeadLetter]) -> list[tuple[dict, bool]]:
    return [
        (features, label)
        for r in results
        if isinstance(r, ScoreRequest)
        for model, features, label in r.labels
        if model == "churn"
    ]


# --- once, in event time -----------------------------------------------------------------


def test_a_duplicate_event_is_applied_once() -> None:
    logic = profile_logic()
    state = known_customer(logic)
    event = tx(amount=80.0)
    first = applied(logic, state, event)

    (second,) = logic.apply(state, event)

    assert isinstance(second, DeadLetter)
    assert second.outcome == "duplicate"
    assert second.reason_code == "duplicate"
    assert event.event_id in second.reason
    assert second.raw == event.raw
    assert first.profile["aggregates"]["spend_amount_30d"] == 80.0
    assert state.windows.total("30d", "spend_amount") == 80.0
    assert state.lifetime_count == 1


def test_the_same_event_id_on_another_topic_is_not_a_duplicate() -> None:
    logic = profile_logic()
    state = known_customer(logic)
    login = contact(at=T0)
    payment = tx(at=T0 + 1, event_id=login.event_id)

    applied(logic, state, login)

    assert isinstance(applied(logic, state, payment), ScoreRequest)


def test_an_event_beyond_the_allowed_lateness_is_dead_lettered_as_late() -> None:
    logic = profile_logic()
    state = known_customer(logic)
    applied(logic, state, tx(at=T0 + 2 * LATENESS, amount=10.0))

    (late,) = logic.apply(state, tx(at=T0 + LATENESS - 1, amount=500.0))

    assert isinstance(late, DeadLetter)
    assert late.outcome == "late"
    assert late.reason_code == "late"
    assert f"allowed lateness of {LATENESS:.0f} s" in late.reason
    assert state.windows.total("30d", "spend_amount") == 10.0


def test_a_replay_older_than_the_lateness_is_refused_as_late_without_remembering_its_id() -> None:
    logic = profile_logic()
    state = known_customer(logic)
    first = tx(at=T0, amount=10.0)
    applied(logic, state, first)
    for i in range(1, 41):
        applied(logic, state, tx(at=T0 + i * LATENESS / 4, amount=1.0))

    (replay,) = logic.apply(state, first)

    assert isinstance(replay, DeadLetter) and replay.outcome == "late"
    assert state.windows.total("30d", "spend_amount") == 50.0
    # Only the ids a replay could still slip in with are kept: the last hour's, and the
    # customers record (a topic with no lateness rule).
    assert len(state.seen) == len(state.seen_until) == 1 + 5


def test_a_replay_within_the_lateness_is_a_duplicate_even_after_many_events() -> None:
    logic = profile_logic(duplicate_memory=512)
    state = known_customer(logic)
    burst = [tx(at=T0 + i, amount=1.0) for i in range(300)]
    for event in burst:
        applied(logic, state, event)

    (replay,) = logic.apply(state, burst[0])

    assert isinstance(replay, DeadLetter) and replay.outcome == "duplicate"


def test_a_replayed_customers_record_is_a_duplicate_however_long_ago_it_came() -> None:
    logic = profile_logic()
    state = CustomerState()
    record = reference(at=T0 - DAY)
    applied(logic, state, record)
    for i in range(10):
        applied(logic, state, tx(at=T0 + i * DAY))
        applied(logic, state, contact(at=T0 + i * DAY))

    (replay,) = logic.apply(state, record)

    assert isinstance(replay, DeadLetter) and replay.outcome == "duplicate"


def test_an_out_of_order_event_within_lateness_lands_in_the_right_windows() -> None:
    logic = profile_logic()
    state = known_customer(logic)
    applied(logic, state, tx(at=T0, amount=10.0))
    applied(logic, state, tx(at=T0 + 1800, amount=20.0))

    behind = applied(logic, state, tx(at=T0 + 600, amount=5.0))
    assert behind.profile["aggregates"]["spend_amount_1h"] == 35.0

    # An hour later the first payment has left the 1h window, the late one has not.
    later = applied(logic, state, tx(at=T0 + 3700, amount=1.0))
    assert later.profile["aggregates"]["spend_amount_1h"] == 26.0
    assert later.profile["aggregates"]["spend_amount_24h"] == 36.0


def test_lateness_is_judged_per_topic() -> None:
    logic = profile_logic()
    state = known_customer(logic)
    applied(logic, state, tx(at=T0 + 5 * LATENESS))

    # Interactions are read from another topic that may lag behind transactions.
    request = applied(logic, state, contact(at=T0, type="complaint", severity=2))

    assert request.profile["aggregates"]["complaints_30d"] == 1.0


# --- customers whose record has not arrived ---------------------------------------------


def test_events_of_an_unknown_customer_are_held_then_applied_in_event_time_order() -> None:
    logic = profile_logic()
    state = CustomerState()
    held = [tx(at=T0 + 300, amount=3.0), tx(at=T0 + 100, amount=1.0), tx(at=T0 + 200, amount=2.0)]
    for event in held:
        assert logic.apply(state, event) == []
    assert logic.apply(state, contact(at=T0 + 150)) == []

    results = logic.apply(state, reference(at=T0 + 1000))

    assert all(isinstance(r, ScoreRequest) for r in results)
    assert [r.event.kind for r in results] == [
        "customers",
        "transactions",
        "interactions",
        "transactions",
        "transactions",
    ]
    assert [r.event.event_time for r in results[1:]] == [T0 + 100, T0 + 150, T0 + 200, T0 + 300]
    assert [r.profile["aggregates"]["spend_amount_30d"] for r in results[1:]] == [1, 1, 3, 6]
    assert results[-1].profile["rm_id"] == "rm-1"
    assert not state.pending


def test_a_held_event_is_dead_lettered_once_the_grace_period_has_passed() -> None:
    logic = profile_logic()
    state = CustomerState()
    old = tx(at=T0)
    assert logic.apply(state, old) == []

    (letter,) = logic.apply(state, tx(at=T0 + GRACE + 1))

    assert isinstance(letter, DeadLetter)
    assert letter.outcome == "dead_lettered"
    assert letter.reason_code == "unknown_customer"
    assert "'c1'" in letter.reason
    assert letter.raw == old.raw
    # Only the newer one is applied when the record comes.
    results = logic.apply(state, reference(at=T0 + GRACE + 2))
    assert [r.event.event_time for r in results[1:]] == [T0 + GRACE + 1]


def test_too_many_held_events_dead_letter_the_oldest() -> None:
    logic = profile_logic(pending_unknown_customer=3)
    state = CustomerState()
    for at in (T0 + 10, T0 + 20, T0 + 30):
        assert logic.apply(state, tx(at=at)) == []
    oldest = tx(at=T0 + 5)

    (letter,) = logic.apply(state, oldest)

    assert letter.reason_code == "unknown_customer"
    assert letter.raw == oldest.raw
    assert len(state.pending) == 3


def test_the_latest_customers_record_wins_even_when_an_older_one_arrives_later() -> None:
    logic = profile_logic()
    state = CustomerState()
    applied(logic, state, reference(at=T0, rm_id="rm-new", segment="affluent"))

    stale = applied(logic, state, reference(at=T0 - 7 * DAY, rm_id="rm-old", segment="mass"))

    assert stale.profile["rm_id"] == "rm-new"
    assert stale.profile["segment"] == "affluent"
    newer = applied(logic, state, reference(at=T0 + DAY, rm_id="rm-newest", products=[]))
    assert newer.profile["rm_id"] == "rm-newest"
    assert newer.profile["products"] == []


# --- churn labels ------------------------------------------------------------------------


def test_no_churn_label_before_the_horizon_then_a_non_churner() -> None:
    logic = profile_logic()
    state = CustomerState()
    first = applied(logic, state, reference(at=T0))
    results = [applied(logic, state, tx(at=T0 + d * DAY)) for d in (5, 15, 29)]
    results.append(applied(logic, state, tx(at=T0 + HORIZON - 1)))
    assert churn_labels(results) == []

    resolved = applied(logic, state, tx(at=T0 + HORIZON))

    assert churn_labels([resolved]) == [(first.churn_features, False)]


def test_account_closed_labels_every_pending_snapshot_as_churn() -> None:
    logic = profile_logic()
    state = CustomerState()
    snapshots = [
        applied(logic, state, reference(at=T0)).churn_features,
        applied(logic, state, tx(at=T0 + 2 * DAY)).churn_features,
        applied(logic, state, contact(at=T0 + 4 * DAY)).churn_features,
    ]
    applied(logic, state, tx(at=T0 + 4 * DAY + HOUR))  # within 24h: no new snapshot

    closure = applied(logic, state, closed(at=T0 + 6 * DAY))

    assert churn_labels([closure]) == [(features, True) for features in snapshots]
    assert closure.profile["closed"] is True
    # Nothing more is learnt about a closed account, even after the horizon.
    after = [applied(logic, state, tx(at=T0 + d * DAY)) for d in (7, 40, 80)]
    assert churn_labels(after) == []


def test_an_offer_accepted_after_its_impression_is_a_positive_example() -> None:
    logic = profile_logic()
    state = known_customer(logic)
    shown = applied(logic, state, contact(at=T0, type="offer_impression", offer_id="savings"))
    assert shown.offer_context is not None
    applied(logic, state, tx(at=T0 + HOUR, amount=5000.0, direction="credit", kind="salary"))

    accepted = applied(
        logic, state, contact(at=T0 + 2 * HOUR, type="offer_accepted", offer_id="savings")
    )

    offer_labels = [label for label in accepted.labels if label[0] == "offer"]
    # Learnt from the context when it was shown, not from what happened after.
    assert offer_labels == [("offer", shown.offer_context, ("savings", True))]


def test_a_declined_offer_is_a_negative_example_and_an_unshown_one_teaches_nothing() -> None:
    logic = profile_logic()
    state = known_customer(logic)
    shown = applied(logic, state, contact(at=T0, type="offer_impression", offer_id="mortgage"))

    declined = applied(
        logic, state, contact(at=T0 + 60, type="offer_declined", offer_id="mortgage")
    )
    again = applied(logic, state, contact(at=T0 + 120, type="offer_accepted", offer_id="mortgage"))
    never_shown = applied(
        logic, state, contact(at=T0 + 180, type="offer_accepted", offer_id="savings")
    )

    assert [lb for lb in declined.labels if lb[0] == "offer"] == [
        ("offer", shown.offer_context, ("mortgage", False))
    ]
    assert [lb for lb in again.labels if lb[0] == "offer"] == []
    assert [lb for lb in never_shown.labels if lb[0] == "offer"] == []


# --- anomaly features ----------------------------------------------------------------------


def test_anomaly_features_compare_a_transaction_with_the_behaviour_before_it() -> None:
    logic = profile_logic()
    state = known_customer(logic)
    for i, merchant in enumerate(("m-1", "m-2", "m-3")):
        applied(
            logic,
            state,
            tx(at=T0 + i * HOUR, amount=50.0, merchant_id=merchant, country="DE", device_id="d-1"),
        )

    usual = applied(
        logic,
        state,
        tx(at=T0 + 4 * HOUR, amount=50.0, merchant_id="m-2", country="DE", device_id="d-1"),
    ).anomaly_features
    odd = applied(
        logic,
        state,
        tx(at=T0 + 5 * HOUR, amount=500.0, merchant_id="m-9", country="BR", device_id="d-9"),
    ).anomaly_features

    assert usual is not None and odd is not None
    assert (usual["new_merchant"], usual["new_country"], usual["new_device"]) == (0.0, 0.0, 0.0)
    assert usual["amount_vs_usual"] == pytest.approx(1.0)
    assert (odd["new_merchant"], odd["new_country"], odd["new_device"]) == (1.0, 1.0, 1.0)
    # 500 against the 50 average of the four payments before it, not including itself.
    assert odd["amount_vs_usual"] == pytest.approx(10.0)
    assert odd["usual_amount"] == pytest.approx(50.0)


def test_the_first_transaction_is_not_flagged_as_new_everything() -> None:
    logic = profile_logic()
    state = known_customer(logic)

    first = applied(logic, state, tx(merchant_id="m-1", country="FR", device_id="d-1"))

    assert first.anomaly_features is not None
    assert first.anomaly_features["new_merchant"] == 0.0
    assert first.anomaly_features["new_country"] == 0.0
    assert first.anomaly_features["new_device"] == 0.0
    assert first.anomaly_features["amount_vs_usual"] == 1.0


def test_a_login_from_a_new_device_is_remembered_for_the_next_payment() -> None:
    logic = profile_logic()
    state = known_customer(logic)
    applied(logic, state, contact(at=T0, type="login", device_id="phone-1"))
    applied(logic, state, contact(at=T0 + HOUR, type="login", device_id="phone-2"))

    payment = applied(logic, state, tx(at=T0 + 3 * HOUR, device_id="phone-2"))

    assert payment.anomaly_features is not None
    assert payment.anomaly_features["new_device"] == 0.0
    assert payment.anomaly_features["hours_since_new_device"] == pytest.approx(2.0)


def test_only_transactions_get_anomaly_features_and_not_outcomes_offer_context() -> None:
    logic = profile_logic()
    state = known_customer(logic)

    payment = applied(logic, state, tx())
    login = applied(logic, state, contact(at=T0 + 1))
    outcome = applied(logic, state, closed(at=T0 + 2, type="fraud_false_alarm"))

    assert payment.anomaly_features is not None and payment.offer_context is None
    assert login.anomaly_features is None and login.offer_context is not None
    assert outcome.anomaly_features is None and outcome.offer_context is None


# --- leakage, on random streams -------------------------------------------------------------

STREAMS = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=120 * 24).map(lambda h: T0 + h * HOUR),
        st.sampled_from(["tx", "login", "complaint", "closed"]),
    ),
    min_size=1,
    max_size=40,
)


@hypothesis_settings(max_examples=60, deadline=None)
@given(stream=STREAMS)
def test_churn_labels_never_come_before_their_time(stream: list[tuple[float, str]]) -> None:
    logic = profile_logic()
    state = CustomerState()
    snapshots: dict[float, dict] = {}  # snapshot time -> the features scored then
    labelled: list[float] = []
    builders = {
        "tx": lambda at: tx(at=at),
        "login": lambda at: contact(at=at),
        "complaint": lambda at: contact(at=at, type="complaint"),
        "closed": lambda at: closed(at=at),
    }
    events = [reference(at=T0 - HOUR), *(builders[what](at) for at, what in sorted(stream))]
    for event in events:
        for result in logic.apply(state, event):
            if not isinstance(result, ScoreRequest):
                continue
            now = max(state.windows.latest, result.event.event_time)
            churn = [(f, label) for model, f, label in result.labels if model == "churn"]
            for taken, (features, label) in zip(result.resolved_snapshots, churn, strict=True):
                assert snapshots[taken] == features  # always a snapshot taken earlier
                labelled.append(taken)
                if label:
                    assert result.event.body.get("type") == "account_closed"
                    assert taken <= result.event.event_time
                else:
                    assert now - taken >= HORIZON
            if result.churn_snapshot is not None:
                snapshots[result.churn_snapshot] = result.churn_features
    assert len(labelled) == len(set(labelled)), "a snapshot was labelled twice"


# --- known bugs -----------------------------------------------------------------------------


def test_an_active_customer_yields_non_churn_labels() -> None:
    logic = profile_logic()
    state = known_customer(logic)

    results = [applied(logic, state, tx(at=T0 + d * DAY)) for d in range(75)]

    labels = churn_labels(results)
    assert labels, "75 days of daily activity produced no churn example at all"
    assert {label for _, label in labels} == {False}


def test_a_closure_after_the_horizon_is_not_churn_for_an_old_snapshot() -> None:
    logic = profile_logic()
    state = CustomerState()
    old = applied(logic, state, reference(at=T0))
    recent = applied(logic, state, tx(at=T0 + 10 * DAY))

    # Closed 35 days after the first snapshot, 25 days after the second: only the second
    # saw the customer leave within the horizon.
    closure = applied(logic, state, closed(at=T0 + HORIZON + 5 * DAY))

    assert churn_labels([closure]) == [(old.churn_features, False), (recent.churn_features, True)]


def test_trends_are_steady_for_a_steady_new_customer() -> None:
    # Ten days of one login a day: the 7-day and the 10-day rates are the same.
    logic = profile_logic()
    state = known_customer(logic)
    for day in range(10):
        request = applied(logic, state, contact(at=T0 + day * DAY))
    assert request.churn_features["login_trend"] == pytest.approx(1.0, abs=0.15)
