"""Half-Space Trees over a fixed feature set, stored flat: River's algorithm at a third of the cost.

River's `HalfSpaceTrees` keeps each tree as linked node objects, looks every feature up by
name at every node, and walks the trees twice per transaction (once to score, once to
learn), behind a `MinMaxScaler` that scales the features twice. Here the feature set is
fixed up front, so a transaction is scaled once into a list, each tree is an array in heap
order (children of node i at 2i+1 and 2i+2), and the path found while scoring is reused
by `learn_one` on the same transaction. The algorithm is the same (Tan, Ting & Liu 2011):
random splits with padding, mass profiles of a reference and a latest window swapped every
`window_size` learned transactions, and scoring with early stopping at 10 % of the window.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence

from river.base import AnomalyDetector


class FlatHalfSpaceTrees(AnomalyDetector):
    """Half-Space Trees with built-in online min-max scaling; high score = unusual.

    Features missing from a transaction follow the heavier branch (as River does); features
    not in `features` are ignored.

    >>> import random
    >>> rng = random.Random(7)
    >>> detector = FlatHalfSpaceTrees(["amount", "hour"], seed=7)
    >>> for _ in range(1000):
    ...     detector.learn_one({"amount": rng.gauss(50, 5), "hour": rng.uniform(8, 20)})
    >>> usual = detector.score_one({"amount": 50.0, "hour": 12.0})
    >>> odd = detector.score_one({"amount": 95.0, "hour": 3.0})
    >>> 0 <= usual < odd <= 1
    True
    """

    def __init__(
        self,
        features: Sequence[str],
        n_trees: int = 10,
        height: int = 8,
        window_size: int = 250,
        padding: float = 0.15,
        seed: int | None = None,
    ) -> None:
        if not features:
            raise ValueError("FlatHalfSpaceTrees needs at least one feature")
        self.features = tuple(features)
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.padding = padding
        self.seed = seed
        self.nodes = 2 ** (height + 1) - 1
        self.split_feature: list[int] = []
        self.split_at: list[float] = []
        rng = random.Random(seed)
        for _ in range(n_trees):
            feature, at = self._grow(rng)
            self.split_feature.extend(feature)
            self.split_at.extend(at)
        self.reference = [0] * (n_trees * self.nodes)  # mass of the last full window
        self.latest = [0] * (n_trees * self.nodes)  # mass of the window being filled
        self.low = [math.inf] * len(self.features)
        self.high = [-math.inf] * len(self.features)
        self.counter = 0
        self.first_window = True
        self.updates = 0
        # The path of the transaction scored last, reused when the same one is learned.
        self._scored: Mapping[str, float] | None = None
        self._scored_path: list[int] = []

    def _grow(self, rng: random.Random) -> tuple[list[int], list[float]]:
        """One tree's split features and thresholds in heap order, in the unit cube.

        A node splits a feature drawn with probability proportional to the width its
        ancestors left it, at a uniform point away from the edges by `padding`.
        """
        feature = [0] * self.nodes
        at = [0.0] * self.nodes
        width = len(self.features)
        # Depth-first with explicit bounds: (node, bounds per feature).
        stack = [(0, [(0.0, 1.0)] * width)]
        internal = 2**self.height - 1
        while stack:
            node, bounds = stack.pop()
            if node >= internal:
                continue
            spans = [b - a for a, b in bounds]
            chosen = rng.choices(range(width), weights=spans)[0]
            a, b = bounds[chosen]
            split = rng.uniform(a + self.padding * (b - a), b - self.padding * (b - a))
            feature[node], at[node] = chosen, split
            left, right = list(bounds), list(bounds)
            left[chosen], right[chosen] = (a, split), (split, b)
            stack.append((2 * node + 2, right))
            stack.append((2 * node + 1, left))
        return feature, at

    def _scaled(self, x: Mapping[str, float]) -> list[float | None]:
        values: list[float | None] = []
        for i, name in enumerate(self.features):
            value = x.get(name)
            if value is None:
                values.append(None)
                continue
            low, span = self.low[i], self.high[i] - self.low[i]
            values.append((value - low) / span if span > 0 else 0.0)
        return values

    def _walk(self, x: Mapping[str, float], score: bool) -> tuple[list[int], float]:
        """Every node each tree routes x through, root to leaf, tree after tree; and the
        reference mass along the way (weighted by depth, up to the first node lighter than
        10 % of the window) when `score`, in the same pass."""
        values = self._scaled(x)
        feature, at, latest, reference = (
            self.split_feature,
            self.split_at,
            self.latest,
            self.reference,
        )
        height, nodes = self.height, self.nodes
        limit = 0.1 * self.window_size
        path: list[int] = []
        append = path.append
        mass_sum = 0.0
        for base in range(0, self.n_trees * nodes, nodes):
            node = 0
            weight = 1 if score else 0
            for _ in range(height):
                index = base + node
                append(index)
                if weight:
                    mass = reference[index]
                    mass_sum += mass * weight
                    weight = 0 if mass < limit else weight << 1
                value = values[feature[index]]
                if value is None:
                    left = base + 2 * node + 1
                    node = 2 * node + (2 if latest[left] < latest[left + 1] else 1)
                else:
                    node = 2 * node + (1 if value < at[index] else 2)
            index = base + node
            append(index)
            if weight:
                mass_sum += reference[index] * weight
        return path, mass_sum

    def score_one(self, x: Mapping[str, float]) -> float:
        if self.first_window:
            return 0.0
        path, mass = self._walk(x, score=True)
        self._scored, self._scored_path = x, path
        return 1.0 - mass / (self.n_trees * self.window_size * (2 ** (self.height + 1) - 1))

    def learn_one(self, x: Mapping[str, float]) -> None:
        moved = False
        for i, name in enumerate(self.features):
            value = x.get(name)
            if value is None:
                continue
            if value < self.low[i]:
                self.low[i], moved = value, True
            if value > self.high[i]:
                self.high[i], moved = value, True
        # The scoring path holds unless this transaction widened a feature's range.
        path = self._scored_path if x is self._scored and not moved else self._walk(x, False)[0]
        self._scored = None
        latest = self.latest
        for index in path:
            latest[index] += 1
        self.updates += 1
        self.counter += 1
        if self.counter == self.window_size:
            self.reference, self.latest = latest, [0] * len(latest)
            self.first_window = False
            self.counter = 0
