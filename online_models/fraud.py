"""Fraud-like anomaly scoring: detector, calibrated re-ranking, and a quarantine for candidates.

The detector learns what normal looks like from every transaction, so a fraud it learned
from would look normal next time. The most unusual transactions (the candidates an alert
may come from) are therefore held back from the detector until their verdict arrives:
a confirmed fraud is never learned as normal, a false alarm is. Candidates without a
verdict within the verdict window (or pushed out by newer ones) count as legitimate.
Verdicts also train the supervised re-ranker, which sharpens the ranking of candidates.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from online_models.feedback import FeedbackReranker

QualityPair = tuple[str, float, bool]


class FraudScorer:
    """Scores transactions in [0, 1] as a rank among recent ones; learns from verdicts.

    `hold_candidates=False` lets the detector learn candidates at once (they still wait
    for their verdict to train the re-ranker); `feedback_weight` is the re-ranker's share
    of the rank once it is warm (0: the detector alone).

    >>> from online_models.anomaly import HalfSpaceTreesDetector
    >>> scorer = FraudScorer(HalfSpaceTreesDetector(seed=1), quarantine_rank=0.0)
    >>> rank, _ = scorer.score_one("c1:t1", 0.0, {"log_amount": 9.0})
    >>> "c1:t1" in scorer.quarantine  # a candidate waits for its verdict
    True
    >>> scorer.feedback("c1:t1", fraud=True)  # confirmed: the detector never learns it
    [('anomaly', 0.0, True)]
    >>> scorer.detector.updates
    0
    """

    # Checkpoints written before the setting existed held candidates back.
    hold_candidates = True

    def __init__(
        self,
        detector: Any,
        quarantine_rank: float = 0.99,
        verdict_window_seconds: float = 7 * 86400.0,
        capacity: int = 10_000,
        hold_candidates: bool = True,
        feedback_weight: float = 0.5,
    ) -> None:
        self.detector = detector
        self.reranker = FeedbackReranker(supervised_weight=feedback_weight)
        self.hold_candidates = hold_candidates
        self.quarantine_rank = quarantine_rank
        self.verdict_window = verdict_window_seconds
        self.capacity = capacity
        self.quarantine: OrderedDict[str, tuple[float, dict[str, float], float, float]] = (
            OrderedDict()
        )
        self.clock = float("-inf")

    @property
    def updates(self) -> int:
        return self.detector.updates + self.reranker.updates

    def score_one(
        self, key: str, at: float, x: dict[str, float], alertable: bool = True
    ) -> tuple[float, list[QualityPair]]:
        """Rank of this transaction; also the verdicts that timed out, as quality pairs.

        The rank is among recent `alertable` transactions only (those an alert may come
        from), so a threshold of 1 - budget on it spends the whole budget on them, however
        many transactions could never alert. The detector still learns from every one.
        """
        raw = self.detector.score_one(x)
        rank = self.reranker.rank_one(x, raw, record=alertable)
        self.clock = max(self.clock, at)
        if rank >= self.quarantine_rank:
            self.quarantine[key] = (at, x, raw, rank)
        if rank < self.quarantine_rank or not self.hold_candidates:
            self.detector.learn_one(x)
        return rank, self._release_unconfirmed()

    def feedback(self, key: str, fraud: bool) -> list[QualityPair]:
        """A verdict on a transaction; only candidates still held can be judged."""
        held = self.quarantine.pop(key, None)
        if held is None:
            return []
        _, x, raw, rank = held
        if not fraud and self.hold_candidates:
            self.detector.learn_one(x)
        self.reranker.learn_one(x, fraud, detector_score=raw)
        return [("anomaly", rank, fraud)]

    def _release_unconfirmed(self) -> list[QualityPair]:
        released = []
        horizon = self.clock - self.verdict_window
        quarantine = self.quarantine
        while quarantine and (
            len(quarantine) > self.capacity or next(iter(quarantine.values()))[0] < horizon
        ):
            _, (_, x, raw, rank) = quarantine.popitem(last=False)
            if self.hold_candidates:
                self.detector.learn_one(x)
            self.reranker.learn_one(x, False, detector_score=raw)
            released.append(("anomaly", rank, False))
        return released
