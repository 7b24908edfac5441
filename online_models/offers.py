"""Offer propensity: probability that a customer accepts an offer once it is shown."""

from __future__ import annotations

from river import compose, linear_model, optim, preprocessing


class LogisticPerOffer:
    """One online logistic regression per offer, learning from impressions and responses.

    Until an offer has seen a few responses its propensity is the prior, so a new offer is
    not ruled out before it was ever shown.

    >>> model = LogisticPerOffer(prior=0.1)
    >>> model.propensity({"log_inflow_30d": 9.0}, "savings")
    0.1
    >>> for _ in range(50):
    ...     model.learn_one({"log_inflow_30d": 9.0}, "savings", True)
    ...     model.learn_one({"log_inflow_30d": 5.0}, "savings", False)
    >>> model.propensity({"log_inflow_30d": 9.5}, "savings") > 0.5
    True
    """

    name = "logistic_per_offer"

    def __init__(self, prior: float = 0.05, warmup: int = 20, learning_rate: float = 0.05) -> None:
        self.prior = prior
        self.warmup = warmup
        self.learning_rate = learning_rate
        self.models: dict[str, compose.Pipeline] = {}
        self.responses: dict[str, int] = {}
        self.updates = 0

    def propensity(self, x: dict[str, float], offer_id: str) -> float:
        if self.responses.get(offer_id, 0) < self.warmup:
            return self.prior
        return self.models[offer_id].predict_proba_one(x).get(True, 0.0)

    def score(
        self, x: dict[str, float], offer_ids: tuple[str, ...]
    ) -> tuple[dict[str, float], dict[str, float]]:
        """Propensity of each offer, and no exploration bonus: this model does not explore."""
        return {o: self.propensity(x, o) for o in offer_ids}, dict.fromkeys(offer_ids, 0.0)

    def learn_one(self, x: dict[str, float], offer_id: str, accepted: bool) -> None:
        model = self.models.get(offer_id)
        if model is None:
            model = self.models[offer_id] = compose.Pipeline(
                preprocessing.StandardScaler(),
                linear_model.LogisticRegression(optimizer=optim.SGD(self.learning_rate)),
            )
        model.learn_one(x, accepted)
        self.responses[offer_id] = self.responses.get(offer_id, 0) + 1
        self.updates += 1
