"""The model seam: which implementation serves each role is a configuration value."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from online_models.anomaly import DETECTOR_FEATURES, HalfSpaceTreesDetector
from online_models.bandit import LinUCBOffers
from online_models.churn import LogisticChurn
from online_models.hst import FlatHalfSpaceTrees
from online_models.offers import LogisticPerOffer

CHURN: dict[str, Callable[[int], Any]] = {
    "logistic": lambda seed: LogisticChurn(),
    # For the engine's own labels: they come in bursts (a closure labels all of a
    # customer's pending snapshots at once, quiet horizons resolve in daily waves), and
    # while the model is young its "stayed" labels all come from snapshots taken when the
    # profile had seen little of each customer. A small step averages over the bursts
    # instead of chasing each (measured with `python -m benchmarks.models`).
    "logistic_small_step": lambda seed: LogisticChurn(learning_rate=0.0005),
}
ANOMALY: dict[str, Callable[[int], Any]] = {
    # The same trees and scores as River's pipeline ("river_half_space_trees"), at less cost.
    "half_space_trees": lambda seed: FlatHalfSpaceTrees(sorted(DETECTOR_FEATURES), seed=seed),
    "river_half_space_trees": lambda seed: HalfSpaceTreesDetector(seed=seed),
}
OFFERS: dict[str, Callable[[int], Any]] = {
    "logistic_per_offer": lambda seed: LogisticPerOffer(),
    "linucb": lambda seed: LinUCBOffers(),
}
ROLES = {"churn": CHURN, "anomaly": ANOMALY, "offers": OFFERS}


def build(role: str, name: str, seed: int) -> Any:
    choices = ROLES[role]
    if name not in choices:
        raise ValueError(
            f"models.{role} = {name!r} is not a known {role} model; choose one of {sorted(choices)}"
        )
    return choices[name](seed)
