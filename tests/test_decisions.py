"""DecisionLogic.decide on hand-built scores: alerts with hysteresis and cool-downs, the
lifecycle stage and value tier, and next-best-offer arbitration."""

from __future__ import annotations

from typing import Any

import pytest
from factories import (
    DAY,
    PROFILE_FIELDS,
    T0,
    closed,
    contact,
    decisions_config,
    profile,
    scored,
    settings,
    tx,
)

from operators.decisions import DecisionLogic, DecisionState
from operators.records import Event, Output

ALERTS = settings().alerts
ENTER, EXIT = ALERTS.churn_enter, ALERTS.churn_exit
CHURN_COOLDOWN = ALERTS.cooldown_seconds["churn_risk"]
DECLINE_COOLDOWN = settings().contact_policy.decline_cooldown_days * DAY
# No exploration: these tests pin the policy's choice (exploration has tests of its own).
LOGIC = DecisionLogic(
    decisions_config(
        contact_policy=settings().contact_policy.model_copy(update={"exploration": 0.0})
    )
)
EVERY_OFFER = tuple(LOGIC.config.catalogue.offers)


def decide(state: DecisionState, event: Event, **score: Any) -> Output:
    return LOGIC.decide(state, scored(event, **score))


def types(output: Output) -> list[str]:
    return [a.type for a in output.alerts]


def churn_alerts(state: DecisionState, risks: list[tuple[float, float]]) -> list[float]:
    """Event times at which a churn alert fired, for (event time, risk) in order."""
    fired = []
    for at, risk in risks:
        output = decide(state, contact(at=at), churn_risk=risk)
        fired += [at for a in output.alerts if a.type == "churn_risk"]
    return fired


# --- churn risk -----------------------------------------------------------------------------


def test_churn_alert_fires_when_risk_crosses_the_enter_threshold() -> None:
    state = DecisionState()
    quiet = decide(state, contact(at=T0), churn_risk=ENTER - 0.01)
    assert quiet.alerts == []

    output = decide(
        state, contact(at=T0 + 60), churn_risk=ENTER + 0.02, churn_reasons=["no login for 21 days"]
    )

    (alert,) = output.alerts
    assert alert.type == "churn_risk"
    assert alert.severity == "medium"
    assert alert.reasons == (f"churn risk {ENTER + 0.02:.2f}", "no login for 21 days")
    assert alert.scores == {"churn_risk": round(ENTER + 0.02, 4)}
    assert alert.customer_id == "c1"
    assert alert.rm_id == "rm-1"
    assert alert.event_time == T0 + 60


def test_a_very_high_churn_risk_is_a_high_severity_alert() -> None:
    (alert,) = decide(DecisionState(), contact(), churn_risk=0.97).alerts

    assert alert.severity == "high"


def test_churn_alert_does_not_flap_while_risk_hovers_in_the_band() -> None:
    # Far apart (beyond the cool-down), so only the hysteresis can hold the alert back.
    gap = CHURN_COOLDOWN + DAY
    hovering = [ENTER + 0.01, EXIT + 0.01, ENTER + 0.05, EXIT, ENTER, (ENTER + EXIT) / 2]

    fired = churn_alerts(DecisionState(), [(T0 + i * gap, r) for i, r in enumerate(hovering)])

    assert fired == [T0]


def test_churn_alert_rearms_after_risk_falls_below_exit() -> None:
    gap = CHURN_COOLDOWN + DAY
    risks = [ENTER + 0.1, EXIT - 0.01, ENTER + 0.1]

    fired = churn_alerts(DecisionState(), [(T0 + i * gap, r) for i, r in enumerate(risks)])

    assert fired == [T0, T0 + 2 * gap]


def test_a_rearmed_churn_alert_still_respects_the_cooldown() -> None:
    risks = [(T0, ENTER + 0.1), (T0 + DAY, EXIT - 0.1), (T0 + 2 * DAY, ENTER + 0.1)]

    assert churn_alerts(DecisionState(), risks) == [T0]


# --- transactions -----------------------------------------------------------------------------


def test_suspicious_transaction_alert_carries_reasons_and_scores() -> None:
    reasons = ["new device", "amount 12.0x the customer's usual"]

    output = decide(
        DecisionState(),
        tx(amount=640.0),
        churn_risk=0.2,
        anomaly_score=0.996,
        anomaly_reasons=reasons,
    )

    (alert,) = output.alerts
    assert alert.type == "suspicious_transaction"
    assert alert.severity == "medium"
    assert alert.reasons == ("640.00 EUR, more unusual than 99.6% of recent transactions", *reasons)
    assert alert.scores == {"churn_risk": 0.2, "anomaly_score": 0.996}
    assert output.profile["anomaly_score"] == 0.996
    assert output.profile["anomaly_reasons"] == reasons


@pytest.mark.parametrize(
    ("score", "amount", "expected"),
    [
        (0.9995, 640.0, ["high"]),
        (ALERTS.suspicious_rank, ALERTS.suspicious_min_amount, ["medium"]),
        (ALERTS.suspicious_rank - 0.001, 640.0, []),
        (0.9995, ALERTS.suspicious_min_amount - 0.01, []),
    ],
)
def test_suspicious_transaction_thresholds(score: float, amount: float, expected: list) -> None:
    output = decide(DecisionState(), tx(amount=amount), anomaly_score=score)

    assert [a.severity for a in output.alerts if a.type == "suspicious_transaction"] == expected


def test_the_last_anomaly_score_stays_on_the_profile_after_other_events() -> None:
    state = DecisionState()
    decide(state, tx(at=T0, amount=640.0), anomaly_score=0.4, anomaly_reasons=["night"])

    later = decide(state, contact(at=T0 + 60))

    assert later.profile["anomaly_score"] == 0.4
    assert later.profile["anomaly_reasons"] == ["night"]


def test_large_inflow_alert_compares_with_the_daily_average_before_it() -> None:
    amount = ALERTS.large_inflow_amount + 5000
    event = tx(amount=amount, direction="credit", kind="transfer_in", merchant_id=None)
    # The profile already counts this inflow: 3,000 came in over the 30 days before it.
    data = profile(aggregates={"inflow_amount_30d": amount + 3000.0})

    (alert,) = decide(DecisionState(), event, profile_data=data).alerts

    assert alert.type == "large_inflow"
    assert alert.reasons == (
        f"inflow of {amount:,.0f} EUR, {amount / 100:.1f}x the 30-day daily average",
        "investment opportunity",
    )


def test_an_ordinary_inflow_is_no_alert() -> None:
    event = tx(amount=ALERTS.large_inflow_amount - 1, direction="credit", kind="transfer_in")

    assert decide(DecisionState(), event).alerts == []


def test_a_large_salary_is_not_a_windfall() -> None:
    event = tx(amount=3 * ALERTS.large_inflow_amount, direction="credit", kind="salary")

    assert decide(DecisionState(), event).alerts == []


def _transfer_out(amount: float, bank: str | None, external_30d: float, at: float = T0) -> Output:
    event = tx(at=at, amount=amount, kind="transfer_out", merchant_id=None, counterparty_bank=bank)
    data = profile(aggregates={"external_outflow_amount_30d": external_30d})
    return decide(DecisionState(), event, profile_data=data)


def test_large_outflow_to_another_bank() -> None:
    amount = ALERTS.large_outflow_amount

    (alert,) = _transfer_out(amount, "OTHB", external_30d=amount).alerts

    assert alert.type == "large_outflow_external"
    assert alert.severity == "medium"
    assert alert.reasons == (
        f"transfer of {amount:,.0f} EUR to another bank (OTHB)",
        "possible move to a competitor",
    )
    (big,) = _transfer_out(3 * amount, "OTHB", external_30d=3 * amount).alerts
    assert big.severity == "high"


def test_small_or_internal_outflows_are_no_alert() -> None:
    own = settings().bank.own_bank_code
    limit = ALERTS.large_outflow_amount

    assert _transfer_out(limit - 1, "OTHB", external_30d=limit - 1).alerts == []
    assert _transfer_out(5 * limit, own, external_30d=0.0).alerts == []
    assert _transfer_out(5 * limit, None, external_30d=0.0).alerts == []


def test_a_large_transfer_within_the_bank_is_no_outflow_alert() -> None:
    own = settings().bank.own_bank_code

    output = _transfer_out(5 * ALERTS.large_outflow_amount, own, external_30d=200.0)

    assert types(output) == []


# --- complaints ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("inflow_30d", "severity", "expected"),
    [
        (25_000.0, 5, [("high", "platinum customer")]),
        (7_000.0, 2, [("medium", "gold customer")]),
        (3_000.0, 5, []),
        (0.0, 5, []),
    ],
)
def test_complaint_alerts_only_for_high_value_tiers(
    inflow_30d: float, severity: int, expected: list
) -> None:
    event = contact(type="complaint", channel="call_centre", severity=severity)
    data = profile(aggregates={"inflow_amount_30d": inflow_30d})

    output = decide(DecisionState(), event, profile_data=data)

    assert [(a.severity, a.reasons[1]) for a in output.alerts] == expected
    for alert in output.alerts:
        assert alert.type == "high_value_complaint"
        assert alert.reasons[0] == f"complaint of severity {severity}/5 via call_centre"


# --- cool-downs and ids -----------------------------------------------------------------------


def test_cooldown_is_per_customer_and_alert_type() -> None:
    cooldown = ALERTS.cooldown_seconds["suspicious_transaction"]
    state, other = DecisionState(), DecisionState()
    assert types(decide(state, tx(at=T0, amount=900.0), anomaly_score=0.998)) == [
        "suspicious_transaction"
    ]

    inflow = tx(at=T0 + 60, amount=30_000.0, direction="credit", kind="transfer_in")
    assert types(decide(state, inflow, anomaly_score=0.998)) == ["large_inflow"]
    assert types(decide(other, tx("c2", at=T0 + 60, amount=900.0), anomaly_score=0.998)) == [
        "suspicious_transaction"
    ]
    held = decide(state, tx(at=T0 + cooldown - 1, amount=900.0), anomaly_score=0.998)
    assert types(held) == []
    assert held.cooled_down == ("suspicious_transaction",), "the held alert is accounted for"
    sent = decide(state, tx(at=T0 + cooldown, amount=900.0), anomaly_score=0.998)
    assert types(sent) == ["suspicious_transaction"] and sent.cooled_down == ()


def test_alert_ids_are_deterministic() -> None:
    event = tx(amount=900.0)
    first = decide(DecisionState(), event, churn_risk=0.9, anomaly_score=0.998)
    replay = decide(DecisionState(), event, churn_risk=0.9, anomaly_score=0.998)
    other = decide(DecisionState(), tx(amount=900.0), churn_risk=0.9, anomaly_score=0.998)

    ids = [a.alert_id for a in first.alerts]
    assert len(ids) == 2 and len(set(ids)) == 2, "one id per alert type"
    assert [a.alert_id for a in replay.alerts] == ids
    assert not set(ids) & {a.alert_id for a in other.alerts}


# --- next-best-offer ----------------------------------------------------------------------------


def best_offer(
    propensities: dict[str, float] | None = None,
    churn_risk: float = 0.1,
    state: DecisionState | None = None,
    at: float = T0,
    event: Event | None = None,
    **reference_fields: Any,
) -> str:
    """The offer chosen on an interaction; every offer has the same small propensity
    unless `propensities` says otherwise."""
    given = dict.fromkeys(EVERY_OFFER, 0.01) | (propensities or {})
    output = decide(
        state or DecisionState(),
        event or contact(at=at),
        churn_risk=churn_risk,
        offer_propensities=given,
        profile_data=profile(reference_fields, at=at),
    )
    return output.profile["next_best_offer"]


def test_the_offer_with_the_best_expected_value_is_chosen() -> None:
    catalogue = LOGIC.config.catalogue.offers
    favourite = "credit_card"

    chosen = best_offer({favourite: 0.9})

    assert chosen == favourite
    value = catalogue["mortgage"].value * catalogue["mortgage"].weight
    assert best_offer() == "mortgage", f"equal propensities: the largest value x weight {value}"


def test_an_offer_for_a_product_already_held_is_never_chosen() -> None:
    chosen = best_offer({"credit_card": 0.99}, products=["current_account", "credit_card"])

    assert chosen not in ("credit_card", "")


def test_an_offer_outside_its_segments_is_never_chosen() -> None:
    assert best_offer({"investment_fund": 0.99}, segment="mass") != "investment_fund"
    assert best_offer({"investment_fund": 0.99}, segment="affluent") == "investment_fund"


@pytest.mark.parametrize(
    ("birth_year", "offer", "eligible"),
    [
        (1955, "mortgage", False),  # 70 in 2025: above max_age 65
        (1960, "mortgage", True),  # 65
        (1950, "personal_loan", False),  # 75: above 70
        (2008, "credit_card", False),  # 17: below min_age 18
        (2007, "credit_card", True),  # 18
        (2010, "savings", True),  # no age limit
    ],
)
def test_age_band(birth_year: int, offer: str, eligible: bool) -> None:
    chosen = best_offer({offer: 0.99}, birth_year=birth_year, segment="mass")

    assert (chosen == offer) is eligible


def test_no_offer_without_marketing_consent() -> None:
    state = DecisionState()
    assert best_offer({"savings": 0.9}, state=state) == "savings"

    assert best_offer({"savings": 0.9}, state=state, marketing_consent=False) == ""
    assert state.next_offer is None


def test_a_declined_offer_is_not_offered_again_within_its_cooldown() -> None:
    state = DecisionState()
    decline = contact(at=T0, type="offer_declined", offer_id="credit_card")
    assert best_offer({"credit_card": 0.9}, state=state, event=decline) != "credit_card"

    during = best_offer({"credit_card": 0.9}, state=state, at=T0 + DECLINE_COOLDOWN - 60)
    after = best_offer({"credit_card": 0.9}, state=state, at=T0 + DECLINE_COOLDOWN)

    assert during != "credit_card"
    assert after == "credit_card"


def test_retention_offers_go_first_when_churn_risk_is_high() -> None:
    strong_cross_sell = {"mortgage": 0.9, "retention_fee_waiver": 0.01}

    assert best_offer(strong_cross_sell, churn_risk=EXIT) == "retention_fee_waiver"
    assert best_offer(strong_cross_sell, churn_risk=EXIT - 0.01) == "mortgage"
    # And never a retention offer to a customer who is not at risk.
    assert best_offer({"retention_fee_waiver": 0.99}, churn_risk=0.1) != "retention_fee_waiver"


def test_the_offer_is_kept_across_events_that_do_not_score_offers() -> None:
    state = DecisionState()
    assert best_offer({"savings": 0.9}, state=state) == "savings"

    payment = decide(state, tx(at=T0 + 60))

    assert payment.profile["next_best_offer"] == "savings"
    assert payment.profile["next_best_offer_propensity"] == 0.9


# --- the offer decision log ---------------------------------------------------------------------

EXPLORING = DecisionLogic(decisions_config())  # the shipped policy, exploration included


def test_the_decision_in_force_is_logged_at_each_offer_impression() -> None:
    state = DecisionState()
    given = dict.fromkeys(EVERY_OFFER, 0.01) | {"savings": 0.9}
    login = LOGIC.decide(state, scored(contact(at=T0), offer_propensities=given))
    assert login.offer_decision is None  # decided, but no slot was filled
    assert state.next_offer is not None

    logged = []
    for i in range(settings().contact_policy.max_impressions_per_week):
        shown = contact(at=T0 + 60 * (i + 1), type="offer_impression", offer_id="mortgage")
        output = LOGIC.decide(state, scored(shown, offer_propensities=given))
        decision = output.offer_decision
        assert decision is not None  # logged each time, the last within the weekly cap too
        assert decision["offer_id"] == "savings"
        assert decision["action_probability"] == 1.0  # this policy does not explore
        assert decision["explored"] is False
        assert decision["impression_event_id"] == shown.event_id
        assert decision["shown_offer_id"] == "mortgage"
        logged.append(decision["decision_id"])
    assert len(set(logged)) == len(logged)
    # The weekly cap is now reached: nothing more is offered until it eases.
    assert state.next_offer is None


def test_a_logged_decision_carries_the_policys_probability_of_it() -> None:
    """Greedy choice: 1 - e + e/n; any other (explored): e/n, for the n eligible offers."""
    exploration = EXPLORING.config.contact_policy.exploration
    given = dict.fromkeys(EVERY_OFFER, 0.01) | {"savings": 0.9}
    probabilities: dict[bool, set[float]] = {True: set(), False: set()}
    explored = 0
    for i in range(300):
        shown = contact(at=T0 + i, type="offer_impression", offer_id="savings")
        decision = EXPLORING.decide(
            DecisionState(), scored(shown, offer_propensities=given)
        ).offer_decision
        assert decision is not None
        probabilities[decision["offer_id"] == "savings"].add(decision["action_probability"])
        explored += decision["explored"]
    (greedy,), (other,) = probabilities[True], probabilities[False]
    eligible = exploration / other
    assert eligible == pytest.approx(round(eligible), abs=1e-3) and eligible > 1
    assert greedy == pytest.approx(1 - exploration + other, abs=1e-6)
    assert 0 < explored < 300 * 3 * exploration


def test_a_replayed_impression_logs_the_same_decision_with_the_same_id() -> None:
    given = dict.fromkeys(EVERY_OFFER, 0.01) | {"savings": 0.9}
    shown = contact(at=T0, type="offer_impression", offer_id="savings")
    first = EXPLORING.decide(DecisionState(), scored(shown, offer_propensities=given))
    again = EXPLORING.decide(DecisionState(), scored(shown, offer_propensities=given))
    assert first.offer_decision is not None
    assert first.offer_decision == again.offer_decision


def test_no_decision_is_logged_when_nothing_may_be_offered() -> None:
    given = dict.fromkeys(EVERY_OFFER, 0.5)
    shown = contact(at=T0, type="offer_impression", offer_id="savings")
    data = profile({"marketing_consent": False}, at=T0)
    output = decide(DecisionState(), shown, offer_propensities=given, profile_data=data)
    assert output.offer_decision is None


def test_offers_left_unscored_for_want_of_consent_clear_the_decision() -> None:
    """The shard skips scoring without consent; the decision it had must not linger."""
    state = DecisionState()
    assert best_offer({"savings": 0.9}, state=state) == "savings"

    login = contact(at=T0 + 60)
    unscored = scored(login, profile_data=profile({"marketing_consent": False}, at=T0 + 60))
    unscored.request.offer_context = {"log_inflow_30d": 8.0}
    output = LOGIC.decide(state, unscored)

    assert state.next_offer is None
    assert output.profile["next_best_offer"] == ""


# --- stage, tier and the rest of the profile ---------------------------------------------------


@pytest.mark.parametrize(
    ("inflow_30d", "tier"),
    [
        (20_000.0, "platinum"),
        (19_999.0, "gold"),
        (6_000.0, "gold"),
        (2_000.0, "silver"),
        (0.0, "bronze"),
    ],
)
def test_value_tier(inflow_30d: float, tier: str) -> None:
    data = profile(aggregates={"inflow_amount_30d": inflow_30d})

    assert decide(DecisionState(), contact(), profile_data=data).profile["value_tier"] == tier


@pytest.mark.parametrize(
    ("segment", "inflow_30d", "tier"),
    [
        ("private", 0.0, "platinum"),
        ("affluent", 0.0, "gold"),
        ("affluent", 25_000.0, "platinum"),  # a floor, not a ceiling
        ("mass", 0.0, "bronze"),
    ],
)
def test_segment_tier_floor(segment: str, inflow_30d: float, tier: str) -> None:
    data = profile({"segment": segment}, aggregates={"inflow_amount_30d": inflow_30d})

    assert decide(DecisionState(), contact(), profile_data=data).profile["value_tier"] == tier


def _stage(state: DecisionState | None = None, churn_risk: float = 0.1, **fields: Any) -> str:
    aggregates = fields.pop("aggregates", {})
    data = profile(aggregates=aggregates, **fields)
    output = decide(state or DecisionState(), contact(), churn_risk=churn_risk, profile_data=data)
    return output.profile["stage"]


def test_lifecycle_stages() -> None:
    lifecycle = settings().lifecycle
    steady = {"inflow_amount_7d": 700.0, "inflow_amount_30d": 3000.0}
    rising = {"inflow_amount_7d": 1500.0, "inflow_amount_30d": 3000.0}

    assert _stage(aggregates=steady) == "mature"
    assert _stage(aggregates=rising) == "growing"
    assert _stage(tenure_days=lifecycle.new_customer_days - 1) == "new"
    assert _stage(closure_requested=True) == "at_risk"
    assert _stage(churn_risk=0.95) == "at_risk"
    assert _stage(days_since_last_activity=lifecycle.dormant_after_days) == "dormant"
    assert _stage(closed=True, days_since_last_activity=400.0) == "closed"


def test_stays_at_risk_until_risk_falls_below_exit() -> None:
    state = DecisionState()
    assert _stage(state, churn_risk=ENTER) == "at_risk"
    assert _stage(state, churn_risk=EXIT) == "at_risk"
    assert _stage(state, churn_risk=EXIT - 0.01) == "mature"


def test_moving_to_another_rm_names_the_previous_one_once() -> None:
    state = DecisionState()
    first = decide(state, contact(at=T0), profile_data=profile({"rm_id": "rm-a"}))
    moved = decide(state, contact(at=T0 + 1), profile_data=profile({"rm_id": "rm-b"}))
    settled = decide(state, contact(at=T0 + 2), profile_data=profile({"rm_id": "rm-b"}))

    assert (first.previous_rm_id, moved.previous_rm_id, settled.previous_rm_id) == (
        None,
        "rm-a",
        None,
    )
    assert moved.rm_id == "rm-b"


def test_the_output_describes_the_event_and_the_customer() -> None:
    event = tx(at=T0 + 0.5)

    output = decide(DecisionState(), event, churn_risk=0.123456)

    assert output.customer_id == "c1"
    assert output.event_time == T0 + 0.5
    assert output.topic == event.origin.topic
    assert output.churn_risk == 0.123456
    assert output.profile["churn_risk"] == 0.1235
    assert output.profile["updated_at"] == "2025-03-03T12:00:00.500Z"
    assert output.profile["customer_id"] == "c1"
    assert output.profile["marketing_consent"] == 1


def test_the_profile_has_exactly_the_documented_fields() -> None:
    output = decide(DecisionState(), tx(at=T0 + 7200), profile_data=profile(at=T0 + 7200))

    assert set(output.profile) == PROFILE_FIELDS
    assert output.profile["last_activity_at"] == "2025-03-03T13:00:00.000Z"
    assert output.last_activity == T0 + 3600


# --- prequential quality ----------------------------------------------------------------------


def test_a_churn_prediction_is_paired_with_its_label_when_it_resolves() -> None:
    state = DecisionState()
    at_snapshot = scored(contact(at=T0), churn_risk=0.8)
    at_snapshot.request.churn_snapshot = T0
    assert LOGIC.decide(state, at_snapshot).quality == []

    later = scored(closed(at=T0 + 5 * DAY), churn_risk=0.3)
    later.request.labels = [("churn", {}, True)]
    later.request.resolved_snapshots = [T0]
    # The pair carries the risk predicted at the snapshot, not the one after the closure.
    assert LOGIC.decide(state, later).quality == [("churn", 0.8, True)]


def test_an_offer_response_is_paired_with_the_propensity_at_the_impression() -> None:
    state = DecisionState()
    shown = scored(
        contact(at=T0, type="offer_impression", offer_id="savings"),
        offer_propensities={"savings": 0.3, "mortgage": 0.1},
    )
    assert LOGIC.decide(state, shown).quality == []
    answer = scored(contact(at=T0 + 60, type="offer_accepted", offer_id="savings"))
    assert LOGIC.decide(state, answer).quality == [("offers", 0.3, True)]
    # A response to an offer never shown is not a prediction to judge.
    stray = scored(contact(at=T0 + 90, type="offer_declined", offer_id="mortgage"))
    assert LOGIC.decide(state, stray).quality == []


# --- hard rules ---------------------------------------------------------------------------------


def _with_features(event: Event, features: dict[str, float], **score: Any) -> Output:
    s = scored(event, **score)
    s.request.anomaly_features = features
    return LOGIC.decide(DecisionState(), s)


def test_card_testing_rule_fires_on_a_burst_of_tiny_payments_whatever_the_model() -> None:
    rules = settings().rules
    burst = {"small_payments_1h": rules.card_testing_min_payments - 1.0}
    output = _with_features(tx(amount=1.0, kind="card_online"), burst, anomaly_score=0.1)
    (alert,) = output.alerts
    assert alert.type == "suspicious_transaction" and alert.severity == "high"
    assert alert.reasons[0].startswith(
        f"rule CARD_TESTING: {rules.card_testing_min_payments} card payments"
    )
    fewer = {"small_payments_1h": rules.card_testing_min_payments - 2.0}
    assert _with_features(tx(amount=1.0, kind="card_online"), fewer, anomaly_score=0.1).alerts == []


def test_account_takeover_rule_needs_every_sign() -> None:
    signs = {"new_device": 1.0, "new_country": 1.0, "hours_since_password_reset": 2.0}
    payment = tx(amount=900.0, kind="card_online", country="BR", device_id="d-new")
    (alert,) = _with_features(payment, signs, anomaly_score=0.2).alerts
    assert alert.reasons[0].startswith("rule ACCOUNT_TAKEOVER: 900.00 EUR online")
    for missing in signs:
        partial = {**signs, missing: 0.0 if missing != "hours_since_password_reset" else 72.0}
        assert _with_features(payment, partial, anomaly_score=0.2).alerts == [], missing
