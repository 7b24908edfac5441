"""Turn raw detector scores into calibrated ranks so a threshold holds an alert budget.

A raw anomaly score means little on its own and drifts with the stream. Its rank among the
recent scores does not: alerting when the rank is at least 1 - budget alerts on about
`budget` of the traffic, whatever the detector's scale and however the stream drifts.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import deque


class RollingQuantile:
    """Rank of a value among the last `window` values seen.

    >>> ranks = RollingQuantile(window=100, warmup=10)
    >>> for i in range(100):
    ...     ranks.learn_one(float(i))
    >>> ranks.rank(95.5), ranks.rank(-1.0), ranks.rank(1000.0)
    (0.96, 0.0, 1.0)
    """

    def __init__(self, window: int = 5000, warmup: int = 500) -> None:
        self.window = window
        self.warmup = warmup
        self.order: deque[float] = deque()
        self.sorted: list[float] = []

    @property
    def ready(self) -> bool:
        return len(self.sorted) >= self.warmup

    def rank(self, value: float) -> float:
        """Share of recent values strictly below `value` (0 until warmed up)."""
        if not self.ready:
            return 0.0
        return bisect_left(self.sorted, value) / len(self.sorted)

    def learn_one(self, value: float) -> None:
        self.order.append(value)
        insort(self.sorted, value)
        if len(self.order) > self.window:
            old = self.order.popleft()
            del self.sorted[bisect_left(self.sorted, old)]
