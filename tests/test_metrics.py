"""The sink's bulk histogram update exposes what one observe per amount does."""

from __future__ import annotations

import random

import pytest
from prometheus_client import CollectorRegistry, Histogram

from sinks.metrics import observe_many


def _histogram(registry: CollectorRegistry) -> Histogram:
    return Histogram(
        "latency_seconds", "test", ["model"], buckets=(0.01, 0.1, 1.0), registry=registry
    )


def test_observe_many_matches_one_observe_per_amount() -> None:
    rng = random.Random(3)
    # Bucket edges exactly, values beyond the largest bound, zeros.
    amounts = [0.0, 0.01, 0.1, 1.0, 5.0, *(rng.expovariate(5) for _ in range(500))]
    one_by_one, bulk = CollectorRegistry(), CollectorRegistry()
    single = _histogram(one_by_one).labels("churn")
    for amount in amounts:
        single.observe(amount)
    batched = _histogram(bulk).labels("churn")
    observe_many(batched, amounts[:200])
    observe_many(batched, [])
    observe_many(batched, amounts[200:])

    def samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
        return {
            (sample.name, sample.labels.get("le", "")): sample.value
            for metric in registry.collect()
            for sample in metric.samples
            if not sample.name.endswith("_created")
        }

    expected, got = samples(one_by_one), samples(bulk)
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        # The sum may differ in the last bit: the amounts are added in another order.
        assert got[name] == pytest.approx(value, rel=1e-12), name
    assert expected["latency_seconds_bucket", "0.01"] == sum(a <= 0.01 for a in amounts)
