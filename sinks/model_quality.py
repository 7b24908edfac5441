"""Prequential model quality, published live: every (prediction, label) pair as labels arrive.

Each pair is a prediction made before its label was known (churn: at the snapshot;
offers: at the impression; anomalies: when the transaction was scored), matched with the
label once it resolved. Quality is tracked per model over a rolling window, without any
customer id in the labels of the metrics.
"""

from __future__ import annotations

import logging
import math
from collections import deque

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from river import drift, metrics

from sinks.metrics import (
    MODEL_AUC,
    MODEL_CALIBRATION_ERROR,
    MODEL_DRIFTS,
    MODEL_LABELS,
    MODEL_LOG_LOSS,
    MODEL_MEAN_PREDICTED,
    MODEL_POSITIVE_RATE,
)

log = logging.getLogger(__name__)

QualityPair = tuple[str, float, bool]
_EPS = 1e-15


def log_loss(p: float, y: bool) -> float:
    p = min(max(p, _EPS), 1 - _EPS)
    return -math.log(p if y else 1 - p)


def expected_calibration_error(pairs: deque[tuple[float, bool]], bins: int = 10) -> float:
    """Mean gap between predicted and observed rates over equal-width probability bins."""
    totals = [0.0] * bins
    hits = [0] * bins
    counts = [0] * bins
    for p, y in pairs:
        b = min(bins - 1, int(p * bins))
        totals[b] += p
        hits[b] += y
        counts[b] += 1
    n = len(pairs)
    return sum(abs(totals[b] - hits[b]) for b in range(bins) if counts[b]) / n if n else 0.0


class ModelQuality:
    """Rolling ROC AUC, log loss and calibration of one model, with ADWIN watching the loss.

    >>> quality = ModelQuality("churn", window=100)
    >>> for i in range(200):
    ...     quality.update(0.9 if i % 2 else 0.1, bool(i % 2))
    >>> round(quality.auc.get(), 2), quality.drifts
    (1.0, 0)
    """

    def __init__(self, model: str, window: int = 5000) -> None:
        self.model = model
        self.auc = metrics.RollingROCAUC(window_size=window)
        self.pairs: deque[tuple[float, bool]] = deque(maxlen=window)
        self.loss_sum = 0.0
        self.losses: deque[float] = deque(maxlen=window)
        self.detector = drift.ADWIN()
        self.drifts = 0

    def update(self, p: float, y: bool) -> None:
        self.auc.update(y, p)
        loss = log_loss(p, y)
        if len(self.losses) == self.losses.maxlen:
            self.loss_sum -= self.losses[0]
        self.losses.append(loss)
        self.loss_sum += loss
        self.pairs.append((p, y))
        self.detector.update(loss)
        if self.detector.drift_detected:
            self.drifts += 1
            MODEL_DRIFTS.labels(self.model).inc()
            log.warning(
                "drift detected in %s model loss (ADWIN): mean loss now %.3f over %d labels",
                self.model,
                self.detector.estimation,
                self.detector.width,
            )

    def publish(self) -> None:
        n = len(self.pairs)
        if not n:
            return
        MODEL_AUC.labels(self.model).set(self.auc.get())
        MODEL_LOG_LOSS.labels(self.model).set(self.loss_sum / n)
        MODEL_CALIBRATION_ERROR.labels(self.model).set(expected_calibration_error(self.pairs))
        MODEL_MEAN_PREDICTED.labels(self.model).set(sum(p for p, _ in self.pairs) / n)
        MODEL_POSITIVE_RATE.labels(self.model).set(sum(y for _, y in self.pairs) / n)


class _Partition(StatelessSinkPartition[QualityPair]):
    def __init__(self) -> None:
        self.models: dict[str, ModelQuality] = {}

    def write_batch(self, items: list[QualityPair]) -> None:
        touched = set()
        for model, p, y in items:
            quality = self.models.get(model)
            if quality is None:
                quality = self.models[model] = ModelQuality(model)
            quality.update(p, y)
            MODEL_LABELS.labels(model).inc()
            touched.add(model)
        for model in touched:
            self.models[model].publish()


class ModelQualitySink(DynamicSink[QualityPair]):
    """Each worker tracks the labels its customers resolve."""

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition:
        return _Partition()
