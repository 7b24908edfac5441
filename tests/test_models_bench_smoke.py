"""The models benchmark: its statistics are exact, and `--quick` writes every report section.

The quick run is too small for the models to learn much, so only the harness and the shape
of the reports are checked here, never whether a model beats its baseline.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.models import ClusterBootstrap, roc_auc

ROOT = Path(__file__).resolve().parent.parent


def brute_force_auc(scores: list[float], labels: list[bool]) -> float:
    """Every positive against every negative; ties count half."""
    positives = [s for s, y in zip(scores, labels, strict=True) if y]
    negatives = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def test_roc_auc_matches_the_pairwise_definition_with_ties_and_weights() -> None:
    rng = random.Random(5)
    scores = [
        rng.choice((0.1, 0.2, 0.3, 0.4)) + rng.random() * (rng.random() < 0.5) for _ in range(300)
    ]
    labels = [rng.random() < 0.3 + 0.3 * (s > 0.5) for s in scores]
    expected = brute_force_auc(scores, labels)
    assert roc_auc(np.array(scores), np.array(labels)) == pytest.approx(expected)
    # Integer weights are the same as repeating rows.
    weights = [rng.randint(0, 3) for _ in scores]
    repeated_scores = [s for s, w in zip(scores, weights, strict=True) for _ in range(w)]
    repeated_labels = [y for y, w in zip(labels, weights, strict=True) for _ in range(w)]
    weighted = roc_auc(np.array(scores), np.array(labels), np.array(weights, dtype=float))
    assert weighted == pytest.approx(brute_force_auc(repeated_scores, repeated_labels))
    assert np.isnan(roc_auc(np.array([0.1, 0.2]), np.array([True, True])))


def test_cluster_bootstrap_brackets_the_point_estimate() -> None:
    rng = np.random.default_rng(3)
    customers = np.repeat(np.arange(200), 5)
    labels = rng.random(len(customers)) < 0.3
    good = labels + rng.normal(0, 0.8, len(customers))
    noise = rng.normal(0, 1, len(customers))
    result = ClusterBootstrap(customers, seed=1).aucs({"good": good, "noise": noise}, labels)
    low, high = result["good"]["ci95"]
    assert low <= result["good"]["roc_auc"] <= high
    assert result["noise"]["good_minus_this_ci95"][0] > 0


def test_quick_run_writes_every_section(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.models", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    report = json.loads((tmp_path / "models.json").read_text())
    for section in (
        "machine",
        "versions",
        "seeds",
        "sizes",
        "churn",
        "anomalies",
        "offers",
        "cost",
    ):
        assert section in report, section
    assert report["machine"]["cores"] and report["machine"]["cpu_model"]
    assert report["versions"]["river"]
    assert report["sizes"]["events_processed"] == report["sizes"]["events"] > 0

    churn = report["churn"]
    assert churn["pairing_matches_engine_quality_pairs"]
    assert {"model", "days_since_last_activity"} <= set(churn["all_snapshots"])
    assert "label_closed" in churn["at_horizon"]

    anomalies = report["anomalies"]
    alerts, flags = anomalies["alerts"], anomalies["transaction_flags"]
    for method in ("engine", "amount_threshold", "plain_half_space_trees"):
        for view in (alerts, flags):
            assert {"flags", "precision", "recall", "episodes"} <= set(view[method])
        # Every baseline is given the engine's budget: as many flags, and (through the same
        # cool-down, which a flag more can change by one alert) as many alerts.
        assert flags[method]["flags"] == flags["engine"]["flags"]
        engine_alerts = alerts["engine"]["flags"]
        assert engine_alerts <= alerts[method]["flags"] <= engine_alerts + 2
    # Held back by the cool-down is still judged suspicious.
    assert flags["engine"]["flags"] >= alerts["engine"]["flags"]
    assert "median_fraudulent_payments_before_first_flag" in alerts["engine"]["episodes"]["ato"]

    offers = report["offers"]
    impressions = offers["all_impressions"]
    assert impressions["impressions"] > 0
    assert {"engine", "random", "most_popular"} <= set(impressions["value_per_impression"])
    ips = offers["ips"]["decision_log_as_written"]
    assert ips["action_probability_consistent_with_eligible_set"] == 1.0
    # The log holds the decision in force at every impression where an offer was eligible.
    log = offers["decision_log"]
    assert log["held_back_decisions_logged"] == log["held_back_impressions_with_eligible_offers"]
    assert log["logged_with_nothing_eligible"] == 0
    assert 0 < log["decisions_logged_all_customers"] <= log["impressions_all_customers"]

    calls = report["cost"]["per_call_models_us"]
    for name in ("churn_predict", "anomaly_score_and_learn", "offers_score_all"):
        assert calls[name]["n"] > 0
    assert report["cost"]["per_event_steps_us"]["decide"]["n"] > 0

    text = (tmp_path / "models.md").read_text()
    for heading in ("## Churn", "## Anomalies", "## Next-best-offer", "## Per-event cost"):
        assert heading in text
    assert "Machine:" in text and "Seeds:" in text
