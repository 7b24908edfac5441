"""Next-best-offer: the bank's contact policy first, then arbitration, with logged propensities.

An offer is only ever considered when the customer consented to marketing, does not hold
the product, fits its segment and age band, and the contact policy allows it (impression
caps per week and channel, cool-down after a decline, no selling during an open complaint
or a fraud review). Among what is left: retention offers first when churn risk is high,
then the highest (estimated acceptance + exploration bonus) x value x business weight.
A small, replay-safe share of decisions explores uniformly among the eligible offers, and
each decision records the probability with which the policy chose it; the decision in
force at each offer impression is logged with it, so a new policy can be evaluated offline
by inverse propensity scoring before it goes live.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from crmstream.settings import ContactPolicy, OfferCatalogue
from operators.records import SlottedState

DAY = 86400.0
WEEK = 7 * DAY


@dataclass(frozen=True, slots=True)
class OfferChoice:
    offer_id: str
    channel: str
    propensity: float
    """Estimated probability that the customer accepts."""
    action_probability: float
    """Probability that the policy picked this offer in this context (for IPS)."""
    explored: bool
    reasons: tuple[str, ...]


class OfferMemory(SlottedState):
    """What the contact policy remembers of one customer."""

    __slots__ = ("declined", "fraud_review_until", "last_complaint", "shown")

    def __init__(self) -> None:
        self.declined: dict[str, float] = {}
        self.shown: list[tuple[float, str]] = []
        self.last_complaint: float | None = None
        self.fraud_review_until: float | None = None

    def observe(self, event_kind: str, body: dict[str, Any], at: float) -> None:
        """Track impressions, declines, complaints and fraud verdicts as they happen."""
        if event_kind == "interactions":
            kind = body["type"]
            if kind == "offer_impression":
                self.shown = [(t, c) for t, c in self.shown if at - t < WEEK]
                self.shown.append((at, body["channel"]))
            elif kind == "offer_declined" and body.get("offer_id"):
                self.declined[body["offer_id"]] = at
            elif kind == "complaint":
                self.last_complaint = max(self.last_complaint or at, at)
        elif event_kind == "outcomes" and body["type"] == "fraud_false_alarm":
            self.fraud_review_until = None

    def before_impression(self, at: float, channel: str) -> OfferMemory:
        """This memory without the impression at `at` on `channel` (once) counted.

        An impression fills a slot the policy decided under the caps as they stood
        before it, so the decision in force there is judged on this view.
        """
        view = OfferMemory()
        view.declined = self.declined
        view.shown = list(self.shown)
        if (at, channel) in view.shown:
            view.shown.remove((at, channel))
        view.last_complaint = self.last_complaint
        view.fraud_review_until = self.fraud_review_until
        return view

    def start_fraud_review(self, until: float) -> None:
        self.fraud_review_until = max(self.fraud_review_until or until, until)


def _unit_interval(*parts: str) -> float:
    """A uniform number from the decision's identity: a replay explores the same way."""
    digest = hashlib.blake2b("|".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def may_receive_offers(profile: dict[str, Any]) -> bool:
    """Whether any offer may be chosen at all: marketing consent and an open account.

    Without them `choose_offer` answers None whatever the estimates, so the offer model
    need not score this customer (scoring is one of the engine's larger per-event costs).
    """
    return bool(profile["marketing_consent"]) and not profile["closed"]


def choose_offer(
    catalogue: OfferCatalogue,
    policy: ContactPolicy,
    memory: OfferMemory,
    profile: dict[str, Any],
    churn_risk: float,
    at_risk_from: float,
    estimates: dict[str, float],
    bonus: dict[str, float],
    decision_id: str,
    at: float,
) -> OfferChoice | None:
    """The next best offer for this customer now, or None when nothing may be offered."""
    if not may_receive_offers(profile):
        return None
    if (
        memory.last_complaint is not None
        and at - memory.last_complaint < policy.complaint_suppression_days * DAY
    ):
        return None
    if memory.fraud_review_until is not None and at < memory.fraud_review_until:
        return None
    recent = [c for t, c in memory.shown if at - t < WEEK]
    if len(recent) >= policy.max_impressions_per_week:
        return None

    held = set(profile["products"])
    age = profile["age"]
    at_risk = churn_risk >= at_risk_from
    candidates: list[tuple[tuple[bool, float], str, str]] = []
    for offer_id, offer in catalogue.offers.items():
        if offer.product in held or (offer.segments and profile["segment"] not in offer.segments):
            continue
        if age is not None and not (offer.min_age or 0) <= age <= (offer.max_age or 200):
            continue
        if offer.kind == "retention" and not at_risk:
            continue
        declined = memory.declined.get(offer_id)
        if declined is not None and at - declined < policy.decline_cooldown_days * DAY:
            continue
        channel = next(
            (
                c
                for c in offer.channels
                if recent.count(c) < policy.max_impressions_per_channel_per_week
            ),
            None,
        )
        if channel is None:
            continue
        optimistic = min(1.0, estimates.get(offer_id, 0.0) + bonus.get(offer_id, 0.0))
        rank = (offer.kind == "retention", optimistic * offer.value * offer.weight)
        candidates.append((rank, offer_id, channel))
    if not candidates:
        return None

    # Retention offers, when present, are the only ones in the running.
    if any(rank[0] for rank, _, _ in candidates):
        candidates = [c for c in candidates if c[0][0]]
    best = max(candidates)
    explore = policy.exploration
    count = len(candidates)
    explored = _unit_interval(decision_id, "explore") < explore
    if explored:
        pick = int(_unit_interval(decision_id, "pick") * count)
        _, offer_id, channel = sorted(candidates, key=lambda c: c[1])[pick]
    else:
        _, offer_id, channel = best
    chosen_best = offer_id == best[1]
    probability = (1 - explore) * chosen_best + explore / count
    offer = catalogue.offers[offer_id]
    estimate = estimates.get(offer_id, 0.0)
    reasons = [
        f"estimated acceptance {estimate:.0%} x value {offer.value:,.0f} on {channel}",
    ]
    if offer.kind == "retention":
        reasons.insert(0, f"retention offer: churn risk {churn_risk:.2f}")
    if explored:
        reasons.append("exploring: chosen at random among eligible offers")
    return OfferChoice(offer_id, channel, estimate, probability, explored, tuple(reasons))
