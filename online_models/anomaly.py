"""Transaction anomaly detection: how unlike the population's recent transactions one is."""

from __future__ import annotations

from river import anomaly, compose, preprocessing

# The detector sees the behavioural ratios, not raw amounts or ids.
DETECTOR_FEATURES = (
    "log_amount",
    "amount_vs_usual",
    "new_merchant",
    "new_country",
    "new_device",
    "online",
    "night",
    "count_1h",
    "log_amount_1h",
    "count_24h",
    "hours_since_password_reset",
    "hours_since_new_device",
)


class HalfSpaceTreesDetector:
    """Min-max scaled features into River's HalfSpaceTrees; score in [0, 1], high = unusual.

    >>> import random
    >>> rng = random.Random(1)
    >>> detector = HalfSpaceTreesDetector(seed=1)
    >>> for _ in range(600):
    ...     x = {"log_amount": rng.gauss(3, 0.3), "new_country": 0.0, "count_1h": rng.random()}
    ...     detector.learn_one(x)
    >>> usual = detector.score_one({"log_amount": 3.0, "new_country": 0.0, "count_1h": 0.5})
    >>> odd = detector.score_one({"log_amount": 8.0, "new_country": 1.0, "count_1h": 1.0})
    >>> odd > usual
    True
    """

    name = "half_space_trees"

    def __init__(
        self, n_trees: int = 10, height: int = 8, window_size: int = 250, seed: int = 42
    ) -> None:
        self.pipeline = compose.Pipeline(
            preprocessing.MinMaxScaler(),
            anomaly.HalfSpaceTrees(
                n_trees=n_trees, height=height, window_size=window_size, seed=seed
            ),
        )
        self.updates = 0

    @staticmethod
    def _select(x: dict[str, float]) -> dict[str, float]:
        return {k: x[k] for k in DETECTOR_FEATURES if k in x}

    def score_one(self, x: dict[str, float]) -> float:
        return self.pipeline.score_one(self._select(x))

    def learn_one(self, x: dict[str, float]) -> None:
        self.pipeline.learn_one(self._select(x))
        self.updates += 1
