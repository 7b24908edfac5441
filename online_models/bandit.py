"""Offer propensity as a contextual bandit: disjoint LinUCB, vectorised over the offers.

River's `bandit.LinUCBDisjoint` costs about 160 µs per pull and update with ten offers
here (measured with `python -m benchmarks.models`), too slow to score every customer
interaction; holding every offer's inverse design matrix in one numpy array scores all
offers with a couple of array operations.

Each offer's acceptance probability is estimated linearly on standardised context, around
a prior rate; the exploration bonus is the width of the estimate's confidence band, so
offers rarely shown get a chance in proportion to how little is known about them, never
more than `alpha` times that width.
"""

from __future__ import annotations

import numpy as np
from river import preprocessing


class LinUCBOffers:
    """Disjoint LinUCB with a shared feature scaler.

    >>> import random
    >>> rng = random.Random(3)
    >>> model = LinUCBOffers(alpha=0.5)
    >>> estimate, bonus = model.score({"log_inflow_30d": 9.0}, ("savings", "mortgage"))
    >>> estimate["savings"], bonus["savings"] > 0  # nothing learned: the prior, and doubt
    (0.05, True)
    >>> for _ in range(300):
    ...     rich = rng.random() < 0.5
    ...     x = {"log_inflow_30d": 10.0 if rich else 6.0}
    ...     model.learn_one(x, "savings", rich and rng.random() < 0.6)
    >>> estimate, bonus = model.score({"log_inflow_30d": 10.0}, ("savings",))
    >>> 0.45 < estimate["savings"] < 0.75, bonus["savings"] < 0.2
    (True, True)
    """

    name = "linucb"

    def __init__(self, alpha: float = 0.5, ridge: float = 1.0, prior: float = 0.05) -> None:
        self.alpha = alpha
        self.ridge = ridge
        self.prior = prior
        self.scaler = preprocessing.StandardScaler()
        self.features: list[str] = []
        self.offers: dict[str, int] = {}
        self.a_inv = np.zeros((0, 1, 1))
        self.b = np.zeros((0, 1))
        self.updates = 0

    def _fitted(self) -> tuple[np.ndarray, list[tuple[str, float, float]]]:
        """What scoring derives from the learned state, kept until the next update:
        every offer's coefficients, and each feature's scaling (its mean and deviation,
        the StandardScaler's, in the model's feature order)."""
        fitted = vars(self).get("_fitted_cache")
        if fitted is None:
            means, variances = self.scaler.means, self.scaler.vars
            scaling = [(f, means.get(f, 0.0), variances.get(f, 0.0) ** 0.5) for f in self.features]
            theta = np.einsum("kij,kj->ki", self.a_inv, self.b)
            fitted = self._fitted_cache = (theta, scaling)
        return fitted

    def _vector(self, x: dict[str, float]) -> np.ndarray:
        # The StandardScaler's transform, feature by feature, without building a dict.
        scaled = [
            (x[f] - mean) / deviation if deviation and f in x else 0.0
            for f, mean, deviation in self._fitted()[1]
        ]
        scaled.append(1.0)
        return np.array(scaled)

    def __getstate__(self) -> dict:
        return {k: v for k, v in vars(self).items() if k != "_fitted_cache"}

    def _grow(self, x: dict[str, float], offer_id: str) -> None:
        """Make room for new features (identity rows: nothing known) and new offers."""
        new = [f for f in x if f not in self.features]
        if new:
            self.features.extend(sorted(new))
            d = len(self.features) + 1
            grown = np.tile(np.eye(d) / self.ridge, (len(self.offers), 1, 1))
            old = self.a_inv.shape[1]
            # The bias stays last: old features keep their block, the bias its corner.
            keep = [*range(old - 1), d - 1]
            grown[np.ix_(range(len(self.offers)), keep, keep)] = self.a_inv
            b = np.zeros((len(self.offers), d))
            b[:, keep] = self.b
            self.a_inv, self.b = grown, b
        if offer_id not in self.offers:
            d = len(self.features) + 1
            self.offers[offer_id] = len(self.offers)
            self.a_inv = np.concatenate(
                [self.a_inv.reshape(-1, d, d), (np.eye(d) / self.ridge)[None]]
            )
            self.b = np.concatenate([self.b.reshape(-1, d), np.zeros((1, d))])

    def score(
        self, x: dict[str, float], offer_ids: tuple[str, ...]
    ) -> tuple[dict[str, float], dict[str, float]]:
        """Estimated acceptance probability and exploration bonus of each offer."""
        offers = self.offers
        known = [o for o in offer_ids if o in offers]
        estimates = {o: self.prior for o in offer_ids}
        bonus = {o: self.alpha for o in offer_ids}
        if known:
            v = self._vector(x)
            rows = [offers[o] for o in known]
            theta = self._fitted()[0]
            if rows != list(range(len(offers))):
                a_inv, theta = self.a_inv[rows], theta[rows]
            else:
                a_inv = self.a_inv
            means = np.clip(theta @ v + self.prior, 0.0, 1.0).tolist()
            widths = (self.alpha * np.sqrt(np.maximum((a_inv @ v) @ v, 0.0))).tolist()
            estimates.update(zip(known, means, strict=True))
            bonus.update(zip(known, widths, strict=True))
        return estimates, bonus

    def propensity(self, x: dict[str, float], offer_id: str) -> float:
        return self.score(x, (offer_id,))[0][offer_id]

    def learn_one(self, x: dict[str, float], offer_id: str, accepted: bool) -> None:
        self.scaler.learn_one(x)
        self._fitted_cache = None
        self._grow(x, offer_id)
        k = self.offers[offer_id]
        v = self._vector(x)
        a_inv = self.a_inv[k]
        av = a_inv @ v
        self.a_inv[k] = a_inv - np.outer(av, av) / (1.0 + v @ av)
        self.b[k] += (float(accepted) - self.prior) * v
        self.updates += 1
        self._fitted_cache = None
