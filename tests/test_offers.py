"""Next-best-offer: the contact policy is never broken, and decisions are logged for IPS."""

from __future__ import annotations

from typing import Any

import pytest
from factories import DAY, T0, profile, settings

from crmstream.settings import load_offer_catalogue
from operators.offers import OfferMemory, choose_offer

SETTINGS = settings()
CATALOGUE = load_offer_catalogue(SETTINGS.models.catalogue_path())
POLICY = SETTINGS.contact_policy.model_copy(update={"exploration": 0.0})
EVERY_OFFER = tuple(CATALOGUE.offers)


def choose(
    memory: OfferMemory | None = None,
    at: float = T0,
    churn_risk: float = 0.1,
    estimates: dict[str, float] | None = None,
    policy: Any = POLICY,
    decision_id: str = "d1",
    **profile_fields: Any,
):
    fields = {"products": ["current_account"], "marketing_consent": True, "age": 40}
    fields.update(profile_fields)
    return choose_offer(
        CATALOGUE,
        policy,
        memory or OfferMemory(),
        profile(at=at, **fields),
        churn_risk,
        SETTINGS.alerts.churn_exit,
        estimates or dict.fromkeys(EVERY_OFFER, 0.1),
        dict.fromkeys(EVERY_OFFER, 0.0),
        decision_id,
        at,
    )


def impression(memory: OfferMemory, at: float, channel: str) -> None:
    memory.observe("interactions", {"type": "offer_impression", "channel": channel}, at)


def test_the_best_eligible_offer_by_value_wins_and_carries_reasons() -> None:
    choice = choose(estimates={**dict.fromkeys(EVERY_OFFER, 0.01), "savings": 0.9})
    assert choice.offer_id == "savings"
    assert choice.channel == CATALOGUE.offers["savings"].channels[0]
    assert choice.action_probability == 1.0 and not choice.explored
    assert choice.reasons[0].startswith("estimated acceptance 90% x value 120")


def test_nothing_is_offered_without_consent_or_to_a_closed_account() -> None:
    assert choose(marketing_consent=False) is None
    assert choose(closed=True) is None


def test_weekly_impression_cap_across_channels() -> None:
    memory = OfferMemory()
    for i in range(POLICY.max_impressions_per_week):
        impression(memory, T0 + i, ["mobile_app", "web", "email", "branch"][i % 4])
    assert choose(memory, at=T0 + 10) is None
    assert choose(memory, at=T0 + 8 * DAY) is not None


def test_channel_cap_moves_the_offer_to_another_channel() -> None:
    memory = OfferMemory()
    for i in range(POLICY.max_impressions_per_channel_per_week):
        impression(memory, T0 + i, "mobile_app")
    choice = choose(
        memory, at=T0 + 60, estimates={**dict.fromkeys(EVERY_OFFER, 0.01), "savings": 0.9}
    )
    assert choice.offer_id == "savings" and choice.channel != "mobile_app"


def test_open_complaint_suppresses_offers_for_the_configured_time() -> None:
    memory = OfferMemory()
    memory.observe("interactions", {"type": "complaint", "channel": "branch"}, T0)
    assert choose(memory, at=T0 + DAY) is None
    assert choose(memory, at=T0 + POLICY.complaint_suppression_days * DAY) is not None


def test_fraud_review_suppresses_offers_until_a_false_alarm_clears_it() -> None:
    memory = OfferMemory()
    memory.start_fraud_review(T0 + POLICY.fraud_review_days * DAY)
    assert choose(memory, at=T0 + DAY) is None
    memory.observe("outcomes", {"type": "fraud_false_alarm"}, T0 + DAY)
    assert choose(memory, at=T0 + DAY) is not None


def test_retention_offers_come_first_when_churn_risk_is_high() -> None:
    cross_sell_favoured = {**dict.fromkeys(EVERY_OFFER, 0.01), "mortgage": 0.99}
    assert choose(estimates=cross_sell_favoured, churn_risk=0.1).offer_id == "mortgage"
    at_risk = choose(estimates=cross_sell_favoured, churn_risk=0.9)
    assert CATALOGUE.offers[at_risk.offer_id].kind == "retention"
    assert at_risk.reasons[0] == "retention offer: churn risk 0.90"


def test_exploration_picks_only_eligible_offers_and_logs_its_probability() -> None:
    policy = POLICY.model_copy(update={"exploration": 0.5})
    held = ["current_account", "savings", "credit_card"]
    person = {"products": held, "segment": "mass", "age": 30}
    eligible = [
        o
        for o, offer in CATALOGUE.offers.items()
        if offer.product not in held
        and offer.kind != "retention"
        and (not offer.segments or "mass" in offer.segments)
        and (offer.min_age or 0) <= 30 <= (offer.max_age or 200)
    ]
    best = "mortgage"  # equal estimates: the highest value x weight among the eligible
    choices = [choose(policy=policy, decision_id=f"d{i}", **person) for i in range(300)]
    for choice in choices:
        assert choice.offer_id in eligible
        expected = 0.5 / len(eligible) + (0.5 if choice.offer_id == best else 0.0)
        assert choice.action_probability == pytest.approx(expected)
    explored = sum(c.explored for c in choices)
    assert 100 < explored < 200  # about half
    assert {c.offer_id for c in choices} == set(eligible)
    # The same decision replays identically.
    assert choose(policy=policy, decision_id="d7", **person) == choices[7]
