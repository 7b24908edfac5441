"""Churn risk: probability that a customer closes or goes dormant within the horizon."""

from __future__ import annotations

import math

from river import compose, linear_model, optim, preprocessing


class LogisticChurn:
    """Standardised features into an online logistic regression.

    Besides the probability it reports each feature's signed contribution to the log-odds,
    which is what the reasons are written from.

    >>> model = LogisticChurn()
    >>> model.predict_proba_one({"days_since_login": 40.0})  # no labels yet: the prior
    0.05
    >>> for _ in range(200):
    ...     model.learn_one({"days_since_login": 30.0, "complaints_30d": 2.0}, True)
    ...     model.learn_one({"days_since_login": 1.0, "complaints_30d": 0.0}, False)
    >>> model.predict_proba_one({"days_since_login": 40.0, "complaints_30d": 3.0}) > 0.9
    True
    """

    name = "logistic"

    def __init__(
        self,
        learning_rate: float = 0.02,
        l2: float = 1e-4,
        prior: float = 0.05,
        warmup_per_class: int = 50,
    ) -> None:
        # Labels are delayed unequally: a closure labels at once, a quiet horizon only after
        # it passed. Until both classes were seen often enough, the model would mostly
        # have seen churners, so it answers the prior rate instead.
        self.prior = prior
        self.warmup_per_class = warmup_per_class
        self.seen = {True: 0, False: 0}
        self.pipeline = compose.Pipeline(
            preprocessing.StandardScaler(),
            linear_model.LogisticRegression(
                optimizer=optim.SGD(learning_rate),
                l2=l2,
                intercept_init=math.log(prior / (1 - prior)),
            ),
        )
        self.updates = 0

    @property
    def warm(self) -> bool:
        return min(self.seen.values()) >= self.warmup_per_class

    def predict_proba_one(self, x: dict[str, float]) -> float:
        if not self.warm:
            return self.prior
        return self.pipeline.predict_proba_one(x).get(True, 0.0)

    def learn_one(self, x: dict[str, float], y: bool) -> None:
        self.pipeline.learn_one(x, y)
        self.seen[bool(y)] += 1
        self.updates += 1

    def contributions(self, x: dict[str, float]) -> dict[str, float]:
        """Each feature's share of the log-odds (weight x standardised value)."""
        scaled = self.pipeline["StandardScaler"].transform_one(x)
        weights = self.pipeline["LogisticRegression"].weights
        return {k: weights.get(k, 0.0) * v for k, v in scaled.items()}

    def explain_one(self, x: dict[str, float]) -> tuple[float, dict[str, float]]:
        """Probability and contributions from one scaling pass (the engine needs both)."""
        if not self.warm:
            return self.prior, {}
        contributions = self.contributions(x)
        log_odds = self.pipeline["LogisticRegression"].intercept + sum(contributions.values())
        log_odds = min(max(log_odds, -30.0), 30.0)
        return 1.0 / (1.0 + math.exp(-log_odds)), contributions
