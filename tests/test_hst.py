"""FlatHalfSpaceTrees is River's MinMaxScaler | HalfSpaceTrees, scored the same, only faster."""

from __future__ import annotations

import pickle
import random

import pytest
from river import anomaly, compose, preprocessing

from online_models.anomaly import DETECTOR_FEATURES
from online_models.hst import FlatHalfSpaceTrees
from online_models.registry import build

FEATURES = ("amount", "count_1h", "new_country", "night")


def _stream(n: int, seed: int) -> list[dict[str, float]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        row = {
            "amount": rng.lognormvariate(3, 0.5),
            "count_1h": float(rng.randint(0, 4)),
            "new_country": float(rng.random() < 0.02),
            "night": float(rng.random() < 0.1),
        }
        if i % 97 == 0:  # now and then, an outlier that widens the ranges
            row["amount"] *= 40
        rows.append(row)
    return rows


@pytest.mark.parametrize("seed", [1, 5])
def test_scores_equal_rivers_pipeline_on_the_same_stream(seed: int) -> None:
    river = compose.Pipeline(
        preprocessing.MinMaxScaler(),
        anomaly.HalfSpaceTrees(n_trees=6, height=5, window_size=50, seed=seed),
    )
    flat = FlatHalfSpaceTrees(sorted(FEATURES), n_trees=6, height=5, window_size=50, seed=seed)
    for x in _stream(600, seed):
        assert flat.score_one(x) == pytest.approx(river.score_one(x), abs=1e-12)
        river.learn_one(x)
        flat.learn_one(x)
    assert flat.updates == 600


def test_scores_the_same_whether_or_not_a_transaction_was_scored_before_learning() -> None:
    scored_first = FlatHalfSpaceTrees(FEATURES, window_size=40, seed=2)
    learned_only = FlatHalfSpaceTrees(FEATURES, window_size=40, seed=2)
    probe = {"amount": 900.0, "count_1h": 4.0, "new_country": 1.0, "night": 1.0}
    for x in _stream(300, 2):
        scored_first.score_one(x)
        scored_first.learn_one(x)
        learned_only.learn_one(x)
    assert scored_first.score_one(probe) == learned_only.score_one(probe)


def test_unusual_transactions_score_higher_and_missing_features_are_tolerated() -> None:
    detector = FlatHalfSpaceTrees(FEATURES, seed=3)
    assert detector.score_one({"amount": 10.0}) == 0.0  # nothing learned yet
    for x in _stream(1000, 3):
        detector.learn_one(x)
    usual = detector.score_one({"amount": 20.0, "count_1h": 1.0, "new_country": 0.0, "night": 0.0})
    odd = detector.score_one({"amount": 5000.0, "count_1h": 4.0, "new_country": 1.0, "night": 1.0})
    assert 0.0 <= usual < odd <= 1.0
    assert 0.0 <= detector.score_one({"amount": 20.0}) <= 1.0


def test_checkpoint_resumes_with_identical_scores() -> None:
    detector = FlatHalfSpaceTrees(FEATURES, seed=4)
    stream = _stream(800, 4)
    for x in stream[:500]:
        detector.learn_one(x)
    resumed = pickle.loads(pickle.dumps(detector))
    for x in stream[500:]:
        assert resumed.score_one(x) == detector.score_one(x)
        resumed.learn_one(x)
        detector.learn_one(x)


def test_needs_features() -> None:
    with pytest.raises(ValueError, match="at least one feature"):
        FlatHalfSpaceTrees([])


def test_the_engines_detector_scores_as_the_river_pipeline_it_replaces() -> None:
    rng = random.Random(9)
    engine, river = (
        build("anomaly", "half_space_trees", 42),
        build("anomaly", "river_half_space_trees", 42),
    )
    for _ in range(700):
        x = {name: rng.random() for name in DETECTOR_FEATURES} | {"usual_amount": 12.0}
        assert engine.score_one(x) == pytest.approx(river.score_one(x), abs=1e-12)
        engine.learn_one(x)
        river.learn_one(x)
