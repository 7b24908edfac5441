"""Prometheus metrics of the engine, served on /metrics by each process."""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Sequence

from prometheus_client import Counter, Gauge, Histogram, start_http_server

# Event-time latency spans seconds to hours (late data); ingest latency is milliseconds.
_EVENT_TIME_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 21600, 86400)
_INGEST_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_SCORE_BUCKETS = tuple(round(0.05 * i, 2) for i in range(1, 21))

EVENTS = Counter(
    "crmstream_events_total",
    "Input events by topic and outcome (ok, dead_lettered, late, duplicate).",
    ["topic", "outcome"],
)
DEAD_LETTERS = Counter(
    "crmstream_dead_letters_total",
    "Records sent to the dead-letter topic, by source topic and reason code.",
    ["topic", "reason"],
)
EVENT_TIME_LATENCY = Histogram(
    "crmstream_event_time_to_redis_seconds",
    "From an event's own event time to its effect being written to Redis.",
    buckets=_EVENT_TIME_BUCKETS,
)
INGEST_LATENCY = Histogram(
    "crmstream_ingest_to_redis_seconds",
    "From the event's arrival on the broker (message timestamp) to its effect in Redis.",
    buckets=_INGEST_BUCKETS,
)
REDIS_WRITE_ERRORS = Counter(
    "crmstream_redis_write_errors_total", "Redis pipeline writes that failed (each is retried)."
)
REDIS_RETRIES = Counter(
    "crmstream_redis_retries_total", "Retries of Redis pipeline writes after an error."
)
REDIS_UP = Gauge("crmstream_redis_up", "1 when the last Redis write succeeded, 0 while failing.")
REDIS_BATCH_SECONDS = Histogram(
    "crmstream_redis_write_batch_seconds",
    "Time to write one batch to Redis, retries included.",
    buckets=_INGEST_BUCKETS,
)
ALERTS = Counter(
    "crmstream_alerts_total", "Alerts emitted to RMs, by type and severity.", ["type", "severity"]
)
ALERTS_COOLED_DOWN = Counter(
    "crmstream_alerts_cooled_down_total",
    "Alerts an event qualified for but did not send: the customer had one of the type within "
    "its cool-down (alerts.cooldown_seconds).",
    ["type"],
)
ALERTS_SUPPRESSED = Counter(
    "crmstream_alerts_replayed_total",
    "Alerts refused by Redis because the same alert id was already emitted (replays).",
)
SCORES = Histogram(
    "crmstream_score",
    "Distribution of the latest model scores, by model.",
    ["model"],
    buckets=_SCORE_BUCKETS,
)
CONSUMER_LAG = Gauge(
    "crmstream_kafka_consumer_lag_messages",
    "Messages in the partition not yet read by the engine (librdkafka statistics).",
    ["topic", "partition"],
)
DORMANT_MARKED = Counter(
    "crmstream_customers_marked_dormant_total",
    "Profiles whose stage was set to dormant after a silence of lifecycle.dormant_after_days.",
)


def observe_many(histogram: Histogram, amounts: Sequence[float]) -> None:
    """`histogram.observe(a)` for each amount, in one update per bucket instead of per amount.

    The sink records several histograms per event; one `observe` per event and histogram
    was a tenth of its cost. prometheus-client has no bulk observe, so this adds to the
    histogram's own per-bucket values (each amount counts in the first bucket whose upper
    bound holds it, as `observe` does); a test checks the exposition matches.
    """
    if not amounts:
        return
    bounds = histogram._upper_bounds
    for index, count in Tally(bisect_left(bounds, amount) for amount in amounts).items():
        histogram._buckets[index].inc(count)
    histogram._sum.inc(sum(amounts))


def serve(host: str, port: int) -> None:
    """Expose the default registry (with process and platform collectors) over HTTP."""
    start_http_server(port, addr=host)


# Model quality, prequential: predictions made before their labels, matched when labels
# resolve. Labelled by model only, never by customer.
MODEL_LABELS = Counter(
    "crmstream_model_labels_total",
    "Labels resolved and matched with an earlier prediction.",
    ["model"],
)
MODEL_AUC = Gauge(
    "crmstream_model_roc_auc", "Rolling ROC AUC over the last 5,000 labels.", ["model"]
)
MODEL_LOG_LOSS = Gauge("crmstream_model_log_loss", "Rolling mean log loss.", ["model"])
MODEL_CALIBRATION_ERROR = Gauge(
    "crmstream_model_calibration_error",
    "Expected calibration error (10 bins) over the rolling window.",
    ["model"],
)
MODEL_MEAN_PREDICTED = Gauge(
    "crmstream_model_mean_predicted",
    "Mean predicted probability over the rolling window.",
    ["model"],
)
MODEL_POSITIVE_RATE = Gauge(
    "crmstream_model_positive_rate", "Observed positive rate over the rolling window.", ["model"]
)
MODEL_DRIFTS = Counter(
    "crmstream_model_drift_detections_total",
    "ADWIN detections of a change in a model's loss.",
    ["model"],
)
MODEL_UPDATES = Gauge(
    "crmstream_model_updates",
    "Learning steps of each model replica: the version of its checkpoint.",
    ["model", "shard"],
)
