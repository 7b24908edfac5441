"""Per-customer decisions on top of the scores: alerts, lifecycle stage, next-best-offer.

`DecisionLogic.decide(state, scored)` is a plain function: the alert rules with their
hysteresis and cool-downs, the stage and value tier, and the offer arbitration, producing
everything one event changes in Redis.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

from crmstream.settings import Alerts, ContactPolicy, Lifecycle, OfferCatalogue, Rules
from operators.offers import OfferChoice, OfferMemory, choose_offer
from operators.records import Alert, FloatMap, Output, Scored, SlottedState

DAY = 86400.0
_PREDICTION_MEMORY = 16


@dataclass(frozen=True, slots=True)
class DecisionConfig:
    alerts: Alerts
    lifecycle: Lifecycle
    catalogue: OfferCatalogue
    contact_policy: ContactPolicy
    base_currency: str
    own_bank_code: str
    rules: Rules


class DecisionState(SlottedState):
    """What a customer's decisions remember: alert hysteresis and cool-downs, offers."""

    __slots__ = (
        "anomaly_reasons",
        "anomaly_score",
        "churn_armed",
        "churn_predictions",
        "impressions",
        "last_alert",
        "next_offer",
        "offers",
        "rm_id",
    )

    def __init__(self) -> None:
        self.churn_armed = True
        self.churn_predictions = FloatMap()  # snapshot time -> churn risk predicted then
        self.impressions: dict[str, tuple[float, float, str]] = {}
        self.last_alert: dict[str, float] = {}
        self.rm_id: str | None = None
        self.anomaly_score: float | None = None
        self.anomaly_reasons: list[str] = []
        self.offers = OfferMemory()
        self.next_offer: OfferChoice | None = None


def alert_id(kind: str, customer_id: str, event_id: str) -> str:
    """Deterministic, so that a replayed event yields the same id and is refused."""
    digest = hashlib.blake2b(f"{kind}|{customer_id}|{event_id}".encode(), digest_size=10)
    return digest.hexdigest()


@lru_cache(maxsize=8)
def _ranked_tiers(tiers: tuple[tuple[str, float], ...]) -> tuple[tuple[str, float], ...]:
    """Tiers by their minimum, highest first: ranked once per configuration, not per event."""
    return tuple(sorted(tiers, key=lambda kv: -kv[1]))


def value_tier(inflow_30d: float, tiers: dict[str, float], floor: str | None = None) -> str:
    """The highest tier whose 30-day inflow minimum is met, never below the segment's floor."""
    ranked = _ranked_tiers(tuple(tiers.items()))
    earned = next((name for name, minimum in ranked if inflow_30d >= minimum), ranked[-1][0])
    if floor in tiers and tiers[floor] > tiers[earned]:
        return floor
    return earned


def _iso(at: float) -> str:
    return (
        datetime.fromtimestamp(at, tz=timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _is_offer_impression(kind: str, body: dict[str, Any]) -> bool:
    return kind == "interactions" and body["type"] == "offer_impression"


def _impression_decision(choice: OfferChoice, scored: Scored, at: float) -> dict[str, Any]:
    """The `crm:offer-decisions` record of the decision in force at an offer impression.

    Its id comes from the impression event, so a replayed impression is refused by id.
    """
    request = scored.request
    event = request.event
    return {
        "decision_id": alert_id("offer", event.customer_id, f"{event.kind}:{event.event_id}"),
        "customer_id": event.customer_id,
        "offer_id": choice.offer_id,
        "channel": choice.channel,
        "estimated_acceptance": round(choice.propensity, 6),
        "action_probability": round(choice.action_probability, 6),
        "explored": choice.explored,
        "policy": scored.model_versions.get("offers", ""),
        "event_time": _iso(at),
        "impression_event_id": event.event_id,
        "shown_offer_id": event.body.get("offer_id") or "",
        "context": request.offer_context or {},
    }


class DecisionLogic:
    def __init__(self, config: DecisionConfig) -> None:
        self.config = config
        self.offer_ids = tuple(config.catalogue.offers)

    def decide(self, state: DecisionState, scored: Scored) -> Output:
        request = scored.request
        event = request.event
        profile = request.profile
        aggregates = profile["aggregates"]
        alerts_config = self.config.alerts
        at = event.event_time
        rm_id = profile["rm_id"]
        previous_rm = state.rm_id if state.rm_id not in (None, rm_id) else None
        state.rm_id = rm_id

        if scored.anomaly_score is not None:
            state.anomaly_score = scored.anomaly_score
            state.anomaly_reasons = scored.anomaly_reasons
        lifecycle = self.config.lifecycle
        tier = value_tier(
            aggregates["inflow_amount_30d"],
            lifecycle.value_tiers,
            lifecycle.segment_tier_floor.get(profile["segment"]),
        )
        state.offers.observe(event.kind, event.body, at)
        quality = [*scored.quality, *self._resolved_predictions(state, scored)]

        scores = {"churn_risk": round(scored.churn_risk, 4)}
        if state.anomaly_score is not None:
            scores["anomaly_score"] = round(state.anomaly_score, 4)

        candidates = list(self._alert_candidates(state, scored, tier, scores))
        alerts = []
        cooled_down: list[str] = []
        for kind, severity, reasons in candidates:
            cooldown = alerts_config.cooldown_seconds.get(kind, 0)
            last = state.last_alert.get(kind)
            if last is not None and 0 <= at - last < cooldown:
                if kind == "churn_risk":
                    # Stay armed: still at risk when the cool-down ends means a new alert.
                    state.churn_armed = True
                cooled_down.append(kind)
                continue
            state.last_alert[kind] = at
            alerts.append(
                Alert(
                    alert_id=alert_id(kind, event.customer_id, f"{event.kind}:{event.event_id}"),
                    type=kind,
                    severity=severity,
                    customer_id=event.customer_id,
                    rm_id=rm_id,
                    event_time=at,
                    reasons=tuple(reasons),
                    scores=scores,
                    event_id=event.event_id,
                )
            )

        if any(a.type == "suspicious_transaction" for a in alerts):
            review = self.config.contact_policy.fraud_review_days * DAY
            state.offers.start_fraud_review(at + review)
        stage = self._stage(state, scored, profile)
        decision = self._next_best_offer(state, scored, profile, at)
        offer = state.next_offer
        updated_at = _iso(profile["as_of"])
        last_activity = profile["last_activity_at"]
        # Usually this very event: format the time once.
        if last_activity == profile["as_of"]:
            last_activity_at = updated_at
        else:
            last_activity_at = _iso(last_activity) if last_activity else ""
        fields: dict[str, Any] = {
            "customer_id": event.customer_id,
            "segment": profile["segment"],
            "rm_id": rm_id,
            "branch_id": profile["branch_id"],
            "stage": stage,
            "value_tier": tier,
            "churn_risk": scores["churn_risk"],
            "churn_reasons": scored.churn_reasons,
            "anomaly_score": scores.get("anomaly_score", ""),
            "anomaly_reasons": state.anomaly_reasons,
            "next_best_offer": offer.offer_id if offer else "",
            "next_best_offer_channel": offer.channel if offer else "",
            "next_best_offer_propensity": round(offer.propensity, 4) if offer else "",
            "next_best_offer_reasons": list(offer.reasons) if offer else [],
            "model_versions": scored.model_versions,
            "recency_days": profile["recency_days"],
            "frequency_30d": profile["frequency_30d"],
            "monetary_30d": profile["monetary_30d"],
            "days_since_last_activity": profile["days_since_last_activity"],
            "last_activity_at": last_activity_at,
            "channel_mix_30d": profile["channel_mix_30d"],
            "features": aggregates,
            "products": profile["products"],
            "marketing_consent": int(profile["marketing_consent"]),
            "tenure_days": profile["tenure_days"],
            "last_nps": "" if profile["last_nps"] is None else profile["last_nps"],
            # The profile's own event time, not the wall clock: a replay writes the same.
            "updated_at": updated_at,
        }
        return Output(
            customer_id=event.customer_id,
            rm_id=rm_id,
            previous_rm_id=previous_rm,
            profile=fields,
            churn_risk=scored.churn_risk,
            alerts=alerts,
            event_time=at,
            broker_time=event.origin.broker_time,
            topic=event.origin.topic,
            last_activity=profile["last_activity_at"],
            scores=scores,
            quality=quality,
            offer_decision=decision,
            cooled_down=tuple(cooled_down),
        )

    def _next_best_offer(
        self, state: DecisionState, scored: Scored, profile: dict[str, Any], at: float
    ) -> dict[str, Any] | None:
        """Re-decide when offers were scored; at an offer impression, log the decision.

        The log holds one record per offer impression: the decision in force when the bank
        had a slot to fill, with the probability the policy gave it. Logged at every
        impression (not only when the decision changes, which would select on the action)
        the records are what an inverse propensity estimate of another policy needs.
        """
        request = scored.request
        if not scored.offer_propensities:
            if request.offer_context is not None:
                state.next_offer = None  # not scored: nothing may be offered (consent, closed)
            return None
        event = request.event
        identity = f"{event.customer_id}|{event.kind}|{event.event_id}"
        state.next_offer = self._choose_offer(state.offers, scored, profile, identity, at)
        if not _is_offer_impression(event.kind, event.body):
            return None
        # The slot was decided before this impression counted against the contact caps.
        memory = state.offers.before_impression(at, event.body["channel"])
        in_force = self._choose_offer(memory, scored, profile, identity, at)
        return None if in_force is None else _impression_decision(in_force, scored, at)

    def _choose_offer(
        self,
        memory: OfferMemory,
        scored: Scored,
        profile: dict[str, Any],
        identity: str,
        at: float,
    ) -> OfferChoice | None:
        return choose_offer(
            self.config.catalogue,
            self.config.contact_policy,
            memory,
            profile,
            scored.churn_risk,
            self.config.alerts.churn_exit,
            scored.offer_propensities,
            scored.offer_bonus,
            identity,
            at,
        )

    @staticmethod
    def _resolved_predictions(
        state: DecisionState, scored: Scored
    ) -> list[tuple[str, float, bool]]:
        """Keep this event's predictions; pair earlier ones with the labels that just resolved."""
        request = scored.request
        event = request.event
        pairs: list[tuple[str, float, bool]] = []
        if request.churn_snapshot is not None:
            state.churn_predictions[request.churn_snapshot] = scored.churn_risk
            while len(state.churn_predictions) > _PREDICTION_MEMORY:
                del state.churn_predictions[min(state.churn_predictions)]
        churn_labels = [label for model, _, label in request.labels if model == "churn"]
        for taken, label in zip(request.resolved_snapshots, churn_labels, strict=True):
            predicted = state.churn_predictions.pop(taken, None)
            if predicted is not None:
                pairs.append(("churn", predicted, bool(label)))
        if event.kind == "interactions":
            body = event.body
            offer_id = body.get("offer_id")
            if body["type"] == "offer_impression" and offer_id in scored.offer_propensities:
                propensity = scored.offer_propensities[offer_id]
                state.impressions[offer_id] = (event.event_time, propensity, body["channel"])
                while len(state.impressions) > _PREDICTION_MEMORY:
                    oldest = min(state.impressions, key=lambda k: state.impressions[k][0])
                    del state.impressions[oldest]
            elif body["type"] in ("offer_accepted", "offer_declined") and offer_id:
                shown = state.impressions.pop(offer_id, None)
                if shown is not None:
                    pairs.append(("offers", shown[1], body["type"] == "offer_accepted"))
        return pairs

    def _alert_candidates(
        self, state: DecisionState, scored: Scored, tier: str, scores: dict[str, float]
    ):
        config = self.config.alerts
        event = scored.request.event
        body = event.body
        aggregates = scored.request.profile["aggregates"]
        currency = self.config.base_currency

        risk = scored.churn_risk
        if state.churn_armed and risk >= config.churn_enter:
            state.churn_armed = False
            severity = "high" if risk >= (1 + config.churn_enter) / 2 else "medium"
            yield "churn_risk", severity, [f"churn risk {risk:.2f}", *scored.churn_reasons]
        elif not state.churn_armed and risk < config.churn_exit:
            state.churn_armed = True

        if event.kind == "transactions":
            amount = body["amount"]
            score = scored.anomaly_score
            rule_reasons = self._rule_hits(body, scored.request.anomaly_features or {})
            if rule_reasons:
                yield "suspicious_transaction", "high", [*rule_reasons, *scored.anomaly_reasons]
            elif (
                score is not None
                and score >= config.suspicious_rank
                and amount >= config.suspicious_min_amount
            ):
                # The top fifth of the budget is the most unusual: high severity.
                severity = "high" if score >= 1 - config.suspicious_budget / 5 else "medium"
                yield (
                    "suspicious_transaction",
                    severity,
                    [
                        f"{amount:,.2f} {currency}, more unusual than {score:.1%} of recent transactions",
                        *scored.anomaly_reasons,
                    ],
                )
            # A windfall, not the regular salary, is the investment opportunity.
            if (
                body["direction"] == "credit"
                and body["kind"] != "salary"
                and amount >= config.large_inflow_amount
            ):
                # Averages exclude this inflow, which the profile already counts.
                before = aggregates["inflow_amount_30d"] - amount
                ratio = (
                    f", {amount / (before / 30):.1f}x the 30-day daily average"
                    if before > 0
                    else ""
                )
                yield (
                    "large_inflow",
                    "medium",
                    [f"inflow of {amount:,.0f} {currency}{ratio}", "investment opportunity"],
                )
            bank = body.get("counterparty_bank")
            if (
                body["kind"] == "transfer_out"
                and bank not in (None, self.config.own_bank_code)
                and amount >= config.large_outflow_amount
            ):
                yield (
                    "large_outflow_external",
                    "high" if amount >= 3 * config.large_outflow_amount else "medium",
                    [
                        f"transfer of {amount:,.0f} {currency} to another bank ({bank})",
                        "possible move to a competitor",
                    ],
                )
        elif (
            event.kind == "interactions"
            and body["type"] == "complaint"
            and tier in config.high_value_tiers
        ):
            severity_level = body.get("severity") or 3
            yield (
                "high_value_complaint",
                "high" if severity_level >= 4 else "medium",
                [
                    f"complaint of severity {severity_level}/5 via {body['channel']}",
                    f"{tier} customer",
                ],
            )

    def _rule_hits(self, body: dict[str, Any], features: dict[str, float]) -> list[str]:
        """The hard rules a bank insists on beside the model, each with its reason code."""
        rules = self.config.rules
        currency = self.config.base_currency
        hits = []
        amount = body["amount"]
        if amount <= rules.card_testing_max_amount and body["kind"] in (
            "card_online",
            "card_present",
        ):
            small = features.get("small_payments_1h", 0.0) + 1
            if small >= rules.card_testing_min_payments:
                hits.append(
                    f"rule CARD_TESTING: {small:.0f} card payments of at most "
                    f"{rules.card_testing_max_amount:.2f} {currency} within an hour"
                )
        if (
            body["kind"] == "card_online"
            and amount >= rules.takeover_min_amount
            and features.get("new_device")
            and features.get("new_country")
            and features.get("hours_since_password_reset", 1e9) <= rules.takeover_window_hours
        ):
            hits.append(
                f"rule ACCOUNT_TAKEOVER: {amount:,.2f} {currency} online from a new device in a "
                f"new country, {features['hours_since_password_reset']:.0f} h after a password reset"
            )
        return hits

    def _stage(self, state: DecisionState, scored: Scored, profile: dict[str, Any]) -> str:
        lifecycle = self.config.lifecycle
        aggregates = profile["aggregates"]
        if profile["closed"]:
            return "closed"
        if profile["days_since_last_activity"] >= lifecycle.dormant_after_days:
            return "dormant"
        at_risk = scored.churn_risk >= self.config.alerts.churn_enter or not state.churn_armed
        if profile["closure_requested"] or at_risk:
            return "at_risk"
        if profile["tenure_days"] < lifecycle.new_customer_days:
            return "new"
        inflow_7d, inflow_30d = aggregates["inflow_amount_7d"], aggregates["inflow_amount_30d"]
        if inflow_30d > 0 and (inflow_7d / 7) / (inflow_30d / 30) >= lifecycle.growing_inflow_ratio:
            return "growing"
        return "mature"
