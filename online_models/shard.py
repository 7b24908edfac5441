"""One shard of model replicas: scores and learns for the customers hashed to it.

Customers are spread over `engine.model_shards` shards, each holding its own churn,
anomaly and offer models, so no single key or worker carries every event.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from online_models.fraud import FraudScorer
from online_models.registry import build
from operators.offers import may_receive_offers
from operators.reasons import anomaly_reasons, churn_reasons
from operators.records import Scored, ScoreRequest


def shard_of(customer_id: str, shards: int) -> str:
    return str(zlib.crc32(customer_id.encode()) % shards)


@dataclass(frozen=True, slots=True)
class ModelChoice:
    churn: str
    anomaly: str
    offers: str
    seed: int
    shards: int = 1
    alert_min_amount: float = 0.0
    """Transactions below this amount never raise a model alert, so are not ranked among
    those that may (`alerts.suspicious_min_amount`)."""
    anomaly_hold_candidates: bool = True
    anomaly_feedback_weight: float = 0.5


class ModelShard:
    """Holds the models of one shard; `handle` is score-then-learn over a batch."""

    def __init__(self, choice: ModelChoice) -> None:
        self.choice = choice
        self.churn = build("churn", choice.churn, choice.seed)
        self.anomaly = FraudScorer(
            build("anomaly", choice.anomaly, choice.seed),
            hold_candidates=choice.anomaly_hold_candidates,
            feedback_weight=choice.anomaly_feedback_weight,
        )
        self.offers = build("offers", choice.offers, choice.seed)
        self.shard = ""

    def versions(self) -> dict[str, str]:
        """Model name and learning steps: the version of the checkpoint a replica would write."""
        return {
            "churn": f"{self.choice.churn}@{self.churn.updates}",
            "anomaly": f"{self.choice.anomaly}@{self.anomaly.updates}",
            "offers": f"{self.choice.offers}@{self.offers.updates}",
            "shard": self.shard,
        }

    def handle(self, request: ScoreRequest, offer_ids: tuple[str, ...]) -> Scored:
        if not self.shard:
            self.shard = shard_of(request.customer_id, self.choice.shards)
        for model, x, label in request.labels:
            if model == "churn":
                self.churn.learn_one(x, label)
            elif model == "offer":
                offer_id, accepted = label
                self.offers.learn_one(x, offer_id, accepted)

        churn_x = request.churn_features
        churn_risk, contributions = self.churn.explain_one(churn_x)
        reasons = churn_reasons(churn_x, contributions)

        event = request.event
        anomaly_score = None
        anomaly_why: list[str] = []
        quality: list[tuple[str, float, bool]] = []
        if request.anomaly_features is not None:
            x = request.anomaly_features
            key = f"{request.customer_id}:{event.event_id}"
            alertable = event.body["amount"] >= self.choice.alert_min_amount
            anomaly_score, quality = self.anomaly.score_one(key, event.event_time, x, alertable)
            anomaly_why = anomaly_reasons(x)
        elif event.kind == "outcomes" and event.body.get("transaction_id"):
            verdict = event.body["type"]
            if verdict in ("fraud_confirmed", "fraud_false_alarm"):
                key = f"{request.customer_id}:{event.body['transaction_id']}"
                quality = self.anomaly.feedback(key, fraud=verdict == "fraud_confirmed")

        propensities: dict[str, float] = {}
        bonus: dict[str, float] = {}
        # Nothing may be offered without consent or once closed: no estimate to spend time on.
        if request.offer_context is not None and may_receive_offers(request.profile):
            propensities, bonus = self.offers.score(request.offer_context, offer_ids)
        return Scored(
            request=request,
            churn_risk=churn_risk,
            churn_reasons=reasons,
            anomaly_score=anomaly_score,
            anomaly_reasons=anomaly_why,
            offer_propensities=propensities,
            offer_bonus=bonus,
            model_versions=self.versions(),
            quality=quality,
        )
