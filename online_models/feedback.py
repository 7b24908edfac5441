"""Re-rank what the unsupervised detector finds with the verdicts investigators confirm.

The detector ranks transactions by how unusual they are, which is not how likely they are
fraud: some unusual behaviour is routinely benign and some fraud is only mildly unusual.
Verdicts (confirmed fraud, false alarm) arrive late and are few, so a supervised layer
learns from them on top of the detector rather than replacing it, and only takes a say in
the ranking once it has seen enough of both kinds of verdict to be better than a guess.
"""

from __future__ import annotations

from river import compose, linear_model, optim, preprocessing

from online_models.calibration import RollingQuantile

# The feature under which the detector's raw score reaches the supervised model.
DETECTOR_SCORE = "detector_score"


class FeedbackReranker:
    """Logistic regression on the detector's features and raw score, blended into its rank.

    `rank_one` is called once per scored event, in stream order: it ranks the detector's
    raw score among the recent ones (as the engine's calibration does), and once both
    classes were confirmed `min_per_class` times (and `warmup` warm probabilities were
    ranked) it blends that rank with the rank of the supervised probability among recent
    ones, `supervised_weight` to the latter. Ranks, not raw probabilities, are blended so
    both parts speak on the same uniform scale however rare fraud is.
    `learn_one` is called only with confirmed labels, with the detector score the event
    had when it was scored.

    >>> import random
    >>> rng = random.Random(7)
    >>> reranker = FeedbackReranker(min_per_class=5, window=500, warmup=20)
    >>> reranker.predict_proba_one({"night": 1.0}, detector_score=0.9)  # no verdicts: prior
    0.01
    >>> for _ in range(400):
    ...     x = {"night": float(rng.random() < 0.5)}
    ...     score = rng.random()
    ...     _ = reranker.rank_one(x, score)
    ...     reranker.learn_one(x, x["night"] == 1.0 and score > 0.5, detector_score=score)
    >>> reranker.warm
    True

    Two equally unusual events: only the kind that was confirmed as fraud ranks higher.

    >>> night = reranker.rank_one({"night": 1.0}, 0.8)
    >>> day = reranker.rank_one({"night": 0.0}, 0.8)
    >>> night > day
    True
    """

    name = "feedback_logistic"

    def __init__(
        self,
        min_per_class: int = 20,
        supervised_weight: float = 0.5,
        learning_rate: float = 0.05,
        l2: float = 1e-4,
        prior: float = 0.01,
        window: int = 5000,
        warmup: int = 500,
    ) -> None:
        if not 0.0 <= supervised_weight <= 1.0:
            raise ValueError(f"supervised_weight must be within [0, 1], got {supervised_weight}")
        self.min_per_class = min_per_class
        self.supervised_weight = supervised_weight
        self.prior = prior
        self.pipeline = compose.Pipeline(
            preprocessing.StandardScaler(),
            linear_model.LogisticRegression(optimizer=optim.SGD(learning_rate), l2=l2),
        )
        self.detector_ranks = RollingQuantile(window=window, warmup=warmup)
        self.supervised_ranks = RollingQuantile(window=window, warmup=warmup)
        self.seen = {True: 0, False: 0}
        self.updates = 0

    @property
    def warm(self) -> bool:
        """Whether both outcomes were confirmed often enough for the model to have a say."""
        return min(self.seen.values()) >= self.min_per_class

    @staticmethod
    def _features(x: dict[str, float], detector_score: float) -> dict[str, float]:
        return {**x, DETECTOR_SCORE: detector_score}

    def predict_proba_one(self, x: dict[str, float], detector_score: float) -> float:
        """Probability that the event is confirmed positive (the prior until warm)."""
        if not self.warm:
            return self.prior
        proba = self.pipeline.predict_proba_one(self._features(x, detector_score))
        return proba.get(True, 0.0)

    def learn_one(self, x: dict[str, float], y: bool, detector_score: float) -> None:
        """Learn one confirmed verdict; `detector_score` is the raw score it was given."""
        self.pipeline.learn_one(self._features(x, detector_score), bool(y))
        self.seen[bool(y)] += 1
        self.updates += 1

    def rank_one(self, x: dict[str, float], detector_score: float, record: bool = True) -> float:
        """Score in [0, 1] to rank events by; records this event's scores for later ranks.

        With `record=False` the event is ranked against the recorded ones but leaves no
        trace: events that may never alert are ranked without diluting the population a
        threshold on the rank is meant to hold a budget over.
        """
        detector_rank = self.detector_ranks.rank(detector_score)
        if record:
            self.detector_ranks.learn_one(detector_score)
        if not self.warm:  # no say yet, and no cost: most events come before any verdict
            return detector_rank
        # Probabilities are ranked only from a warm model, so an untrained model's answers
        # never fill the window they are compared with.
        supervised = self.predict_proba_one(x, detector_score)
        supervised_rank = self.supervised_ranks.rank(supervised)
        if record:
            self.supervised_ranks.learn_one(supervised)
        if not self.supervised_ranks.ready:
            return detector_rank
        weight = self.supervised_weight
        return (1.0 - weight) * detector_rank + weight * supervised_rank
