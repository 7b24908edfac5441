"""The online models learn in the right direction; the registry and the shard around them."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest
from factories import DAY, T0, contact, profile_logic, reference, settings, shard_choice, tx

from crmstream.settings import Settings
from flows.engine import _KeyedStep, _restore_shard, model_choice
from online_models.anomaly import HalfSpaceTreesDetector
from online_models.churn import LogisticChurn
from online_models.fraud import FraudScorer
from online_models.offers import LogisticPerOffer
from online_models.registry import ROLES, build
from online_models.shard import ModelShard, shard_of
from operators.profile import CustomerState
from operators.records import ScoreRequest
from sinks.model_quality import ModelQuality, expected_calibration_error

LEAVING = {"days_since_login": 40.0, "complaints_30d": 2.0, "net_flow_ratio": -0.6}
STAYING = {"days_since_login": 1.0, "complaints_30d": 0.0, "net_flow_ratio": 0.3}


def _noisy(x: dict[str, float], rng: random.Random) -> dict[str, float]:
    return {k: v + rng.gauss(0, 0.1 + abs(v) * 0.05) for k, v in x.items()}


def test_churn_probability_moves_towards_what_it_learnt() -> None:
    rng = random.Random(5)
    model = LogisticChurn()
    before_leaving, before_staying = (
        model.predict_proba_one(LEAVING),
        model.predict_proba_one(STAYING),
    )

    for _ in range(300):
        model.learn_one(_noisy(LEAVING, rng), True)
        model.learn_one(_noisy(STAYING, rng), False)

    assert model.predict_proba_one(LEAVING) > max(0.8, before_leaving)
    assert model.predict_proba_one(STAYING) < min(0.2, before_staying)
    assert model.updates == 600


def test_churn_contributions_point_at_the_features_that_raise_risk() -> None:
    rng = random.Random(6)
    model = LogisticChurn()
    for _ in range(300):
        model.learn_one(_noisy(LEAVING, rng), True)
        model.learn_one(_noisy(STAYING, rng), False)

    contributions = model.contributions(LEAVING)

    assert contributions["days_since_login"] > 0
    assert contributions["complaints_30d"] > 0
    assert model.contributions(STAYING)["days_since_login"] < 0


def test_offer_propensity_is_the_prior_until_warm_then_learns() -> None:
    rng = random.Random(7)
    model = LogisticPerOffer(prior=0.05, warmup=20)
    rich, poor = {"log_inflow_30d": 9.0}, {"log_inflow_30d": 5.0}
    for _ in range(9):
        model.learn_one(_noisy(rich, rng), "savings", True)
        model.learn_one(_noisy(poor, rng), "savings", False)
    assert model.propensity(rich, "savings") == 0.05  # 18 responses: not warm yet

    for _ in range(60):
        model.learn_one(_noisy(rich, rng), "savings", True)
        model.learn_one(_noisy(poor, rng), "savings", False)

    assert model.propensity(rich, "savings") > 0.7
    assert model.propensity(poor, "savings") < 0.3
    # Each offer has its own model: another offer knows nothing yet.
    assert model.propensity(rich, "mortgage") == 0.05
    assert model.updates == 138


def _transaction_features(rng: random.Random, odd: bool = False) -> dict[str, float]:
    if odd:
        return {
            "log_amount": 8.5,
            "amount_vs_usual": 40.0,
            "new_merchant": 1.0,
            "new_country": 1.0,
            "new_device": 1.0,
            "online": 1.0,
            "night": 1.0,
            "count_1h": 9.0,
            "log_amount_1h": 9.0,
            "count_24h": 12.0,
            "hours_since_password_reset": 0.5,
            "hours_since_new_device": 0.5,
        }
    return {
        "log_amount": rng.gauss(3.5, 0.5),
        "amount_vs_usual": abs(rng.gauss(1.0, 0.3)),
        "new_merchant": float(rng.random() < 0.1),
        "new_country": 0.0,
        "new_device": 0.0,
        "online": float(rng.random() < 0.3),
        "night": float(rng.random() < 0.05),
        "count_1h": float(rng.randint(0, 2)),
        "log_amount_1h": rng.gauss(3.5, 0.8),
        "count_24h": float(rng.randint(0, 6)),
        "hours_since_password_reset": 72.0,
        "hours_since_new_device": 72.0,
    }


def test_half_space_trees_scores_an_outlier_above_typical_transactions() -> None:
    rng = random.Random(8)
    detector = HalfSpaceTreesDetector(seed=3)
    for _ in range(600):
        detector.learn_one(_transaction_features(rng))

    typical = [detector.score_one(_transaction_features(rng)) for _ in range(50)]
    outlier = detector.score_one(_transaction_features(rng, odd=True))

    assert all(0.0 <= s <= 1.0 for s in [*typical, outlier])
    assert outlier > max(typical)


def test_the_detector_ignores_raw_amounts_and_other_fields() -> None:
    rng = random.Random(9)
    detector = HalfSpaceTreesDetector(seed=3)
    for _ in range(300):
        detector.learn_one(_transaction_features(rng))
    x = _transaction_features(rng)

    assert detector.score_one({**x, "usual_amount": 1e9, "merchant": 7.0}) == detector.score_one(x)


# --- registry ----------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["churn", "anomaly", "offers"])
def test_registry_rejects_an_unknown_model_naming_the_setting(role: str) -> None:
    with pytest.raises(ValueError, match=rf"models\.{role} = 'nonesuch' is not a known") as raised:
        build(role, "nonesuch", 1)

    assert str(sorted(ROLES[role])) in str(raised.value)


def test_an_unknown_model_in_the_settings_fails_at_start() -> None:
    base: Settings = settings()
    bad = base.model_copy(update={"models": base.models.model_copy(update={"anomaly": "lof"})})

    with pytest.raises(ValueError, match=r"models\.anomaly = 'lof'.*half_space_trees"):
        model_choice(bad)


def test_the_shipped_choices_build() -> None:
    shard = ModelShard(shard_choice())

    assert shard.versions() == {
        "churn": "logistic_small_step@0",
        "anomaly": "half_space_trees@0",
        "offers": "linucb@0",
        "shard": "",  # not known until it serves its first customer
    }


# --- the shard -----------------------------------------------------------------------------------


def _requests() -> tuple[ScoreRequest, ScoreRequest]:
    """A real transaction request and a real interaction request for one customer."""
    logic = profile_logic()
    state = CustomerState()
    logic.apply(state, reference(at=T0 - DAY))
    (payment,) = logic.apply(state, tx(at=T0))
    (login,) = logic.apply(state, contact(at=T0 + 60))
    assert isinstance(payment, ScoreRequest) and isinstance(login, ScoreRequest)
    return payment, login


OFFERS = ("savings", "mortgage")


def test_shard_learns_from_labels_before_scoring() -> None:
    payment, _ = _requests()
    fresh = ModelShard(shard_choice()).handle(payment, OFFERS)
    quiet = {**payment.churn_features, "days_since_login": 0.0, "complaints_30d": 0.0}
    payment.labels = [("churn", payment.churn_features, True)] * 60 + [("churn", quiet, False)] * 60

    scored = ModelShard(shard_choice()).handle(payment, OFFERS)

    assert scored.churn_risk > fresh.churn_risk
    assert scored.model_versions["churn"] == "logistic_small_step@120"


def test_churn_risk_is_the_prior_until_both_outcomes_were_learned() -> None:
    payment, _ = _requests()
    payment.labels = [("churn", payment.churn_features, True)] * 200

    scored = ModelShard(shard_choice()).handle(payment, OFFERS)

    assert scored.churn_risk == 0.05


def test_shard_versions_count_updates_of_each_model() -> None:
    payment, login = _requests()
    shard = ModelShard(shard_choice())
    login.labels = [("offer", login.offer_context, ("savings", True))]

    scored_payment = shard.handle(payment, OFFERS)
    scored_login = shard.handle(login, OFFERS)

    shard_id = shard_of(payment.customer_id, shard.choice.shards)
    assert scored_payment.model_versions == {
        "churn": "logistic_small_step@0",
        "anomaly": "half_space_trees@1",
        "offers": "linucb@0",
        "shard": shard_id,
    }
    assert scored_login.model_versions == {
        "churn": "logistic_small_step@0",
        "anomaly": "half_space_trees@1",
        "offers": "linucb@1",
        "shard": shard_id,
    }


def test_shard_scores_what_each_event_needs() -> None:
    payment, login = _requests()
    shard = ModelShard(shard_choice())

    scored_payment = shard.handle(payment, OFFERS)
    scored_login = shard.handle(login, OFFERS)

    assert scored_payment.anomaly_score is not None
    assert scored_payment.offer_propensities == {}
    assert scored_login.anomaly_score is None
    assert set(scored_login.offer_propensities) == set(OFFERS)
    assert 0.0 <= scored_login.churn_risk <= 1.0
    assert scored_login.request is login


def test_shard_of_spreads_customers_and_is_stable() -> None:
    shards = settings().engine.model_shards
    owners = {shard_of(f"cust-{i}", shards) for i in range(200)}

    assert owners == {str(i) for i in range(shards)}
    # The same in every process (unlike Python's salted hash()): crc32 of the id.
    assert shard_of("cust-7", 8) == "6"


def test_model_quality_tracks_auc_loss_calibration_and_drift() -> None:
    quality = ModelQuality("test-model", window=500)
    rng = random.Random(5)
    for _ in range(500):  # a good model: positives score high
        y = rng.random() < 0.3
        quality.update(0.8 if y else 0.2, y)
    good_auc = quality.auc.get()
    for _ in range(1500):  # then it turns useless and badly calibrated
        y = rng.random() < 0.3
        quality.update(0.9, y)
    assert good_auc == 1.0
    assert quality.auc.get() == pytest.approx(0.5, abs=0.01)
    assert quality.drifts >= 1
    assert expected_calibration_error(quality.pairs) == pytest.approx(0.6, abs=0.05)


# --- fraud scoring: quarantine and verdicts -------------------------------------------------


def _scorer(**options: Any) -> FraudScorer:
    return FraudScorer(HalfSpaceTreesDetector(seed=2), **options)


def test_candidates_wait_for_their_verdict_and_confirmed_fraud_never_trains_the_detector() -> None:
    scorer = _scorer(quarantine_rank=0.0)
    scorer.score_one("c1:fraud", 0.0, {"log_amount": 9.0})
    scorer.score_one("c1:benign", 1.0, {"log_amount": 3.0})
    assert scorer.detector.updates == 0  # both held back

    assert scorer.feedback("c1:fraud", fraud=True) == [("anomaly", 0.0, True)]
    assert scorer.detector.updates == 0
    assert scorer.feedback("c1:benign", fraud=False) == [("anomaly", 0.0, False)]
    assert scorer.detector.updates == 1
    assert scorer.reranker.seen == {True: 1, False: 1}
    assert scorer.feedback("c1:unknown", fraud=True) == []  # never a candidate: no pair


def test_without_holding_candidates_the_detector_learns_each_once_at_scoring() -> None:
    scorer = _scorer(quarantine_rank=0.0, hold_candidates=False, verdict_window_seconds=100.0)
    scorer.score_one("c1:fraud", 0.0, {"log_amount": 9.0})
    scorer.score_one("c1:benign", 1.0, {"log_amount": 3.0})
    assert scorer.detector.updates == 2  # learned at once, fraud or not

    # Verdicts still train the re-ranker, but never the detector a second time.
    assert scorer.feedback("c1:fraud", fraud=True) == [("anomaly", 0.0, True)]
    assert scorer.feedback("c1:benign", fraud=False) == [("anomaly", 0.0, False)]
    scorer.score_one("c1:late", 500.0, {"log_amount": 3.0})
    _, released = scorer.score_one("c1:later", 700.0, {"log_amount": 3.0})
    assert released == [("anomaly", 0.0, False)]  # c1:late's window passed
    assert scorer.detector.updates == 4
    assert scorer.reranker.seen == {True: 1, False: 2}


def test_a_zero_feedback_weight_ranks_by_the_detector_alone() -> None:
    def ranks_once_warm(weight: float) -> tuple[float, float]:
        """Ranks of two equally unusual payments, one of the kind verdicts confirmed."""
        rng = random.Random(7)
        scorer = FraudScorer(_GivenScore(), quarantine_rank=0.0, feedback_weight=weight)
        for i in range(1_500):
            x = {"raw": rng.random(), "night": float(rng.random() < 0.5)}
            scorer.score_one(f"c:{i}", float(i), x)
            scorer.feedback(f"c:{i}", fraud=x["night"] == 1.0 and x["raw"] > 0.5)
        assert scorer.reranker.warm
        night, _ = scorer.score_one("c:night", 2_000.0, {"raw": 0.8, "night": 1.0})
        day, _ = scorer.score_one("c:day", 2_001.0, {"raw": 0.8, "night": 0.0})
        return night, day

    night, day = ranks_once_warm(0.0)
    assert night == pytest.approx(day, abs=1e-3)
    night, day = ranks_once_warm(0.5)
    assert night > day + 0.05
    with pytest.raises(ValueError, match="supervised_weight"):
        FraudScorer(_GivenScore(), feedback_weight=1.5)


def test_candidates_without_a_verdict_are_learned_as_legitimate_after_the_window() -> None:
    scorer = _scorer(quarantine_rank=0.0, verdict_window_seconds=100.0, capacity=10)
    scorer.score_one("c1:a", 0.0, {"log_amount": 3.0})
    _, released = scorer.score_one("c1:b", 50.0, {"log_amount": 3.0})
    assert released == []
    _, released = scorer.score_one("c1:c", 150.0, {"log_amount": 3.0})
    assert released == [("anomaly", 0.0, False)]
    assert list(scorer.quarantine) == ["c1:b", "c1:c"]
    assert scorer.detector.updates == 1


def test_quarantine_is_bounded() -> None:
    scorer = _scorer(quarantine_rank=0.0, capacity=5)
    for i in range(20):
        scorer.score_one(f"c1:{i}", float(i), {"log_amount": 3.0})
    assert len(scorer.quarantine) == 5
    assert scorer.detector.updates == 15


def test_ordinary_transactions_train_the_detector_at_once() -> None:
    scorer = _scorer(quarantine_rank=0.99)
    rng = random.Random(4)
    for i in range(300):
        scorer.score_one(f"c1:{i}", float(i), _transaction_features(rng))
    assert scorer.detector.updates + len(scorer.quarantine) == 300
    assert len(scorer.quarantine) <= 3 + 300 // 100


def test_a_shard_resumes_from_its_checkpoint_exactly() -> None:
    payment, login = _requests()
    shard = ModelShard(shard_choice())
    login.labels = [("offer", login.offer_context, ("savings", True))]
    for _ in range(30):
        shard.handle(payment, OFFERS)
    shard.handle(login, OFFERS)

    checkpoint = _KeyedStep(shard, lambda s, r: [s.handle(r, OFFERS)]).snapshot()
    resumed = _restore_shard(checkpoint, shard_choice())

    assert resumed.versions() == shard.versions()
    assert resumed.versions()["anomaly"] != "half_space_trees@0"
    again, resumed_again = shard.handle(payment, OFFERS), resumed.handle(payment, OFFERS)
    assert resumed_again.anomaly_score == again.anomaly_score
    assert resumed_again.churn_risk == again.churn_risk
    assert resumed_again.offer_propensities == again.offer_propensities


def test_churn_explanation_agrees_with_the_prediction() -> None:
    model = LogisticChurn(warmup_per_class=5)
    rng = random.Random(2)
    for _ in range(200):
        churned = rng.random() < 0.3
        x = {
            "days_since_login": rng.gauss(30 if churned else 3, 3),
            "complaints_30d": float(churned),
        }
        model.learn_one(x, churned)
    x = {"days_since_login": 25.0, "complaints_30d": 1.0}
    probability, contributions = model.explain_one(x)
    assert probability == pytest.approx(model.predict_proba_one(x), abs=1e-9)
    assert contributions == pytest.approx(model.contributions(x))


def test_the_alert_budget_holds_when_the_stream_drifts() -> None:
    budget = settings().alerts.suspicious_budget
    scorer = FraudScorer(HalfSpaceTreesDetector(seed=5))
    rng = random.Random(9)
    flagged = {"before": 0, "after": 0}
    for i in range(12_000):
        drifted = i >= 6_000  # amounts triple and payments move online: a new normal
        x = _transaction_features(rng)
        if drifted:
            x = {**x, "log_amount": x["log_amount"] + 1.1, "online": 1.0}
        rank, _ = scorer.score_one(f"c:{i}", float(i), x)
        if i >= 1_000 and not 6_000 <= i < 7_000:  # after warm-up and re-adaptation
            flagged["after" if drifted else "before"] += rank >= 1 - budget
    for period, count in flagged.items():
        assert budget / 3 <= count / 5_000 <= 3 * budget, (period, count)


class _GivenScore:
    """A detector whose raw score is given with the features, to fix the score mix."""

    updates = 0

    def score_one(self, x: dict[str, float]) -> float:
        return x["raw"]

    def learn_one(self, x: dict[str, float]) -> None:
        self.updates += 1


def test_ranking_only_alertable_payments_spends_the_budget_on_them() -> None:
    """Payments below the alert minimum, however unusual, do not take the alert budget."""
    budget = settings().alerts.suspicious_budget

    def share_flagged(rank_all: bool) -> float:
        rng = random.Random(4)
        scorer = FraudScorer(_GivenScore(), quarantine_rank=2.0)
        flagged = alertable_seen = 0
        for i in range(20_000):
            alertable = rng.random() < 0.4
            # Tiny payments (card testing, say) are the more unusual ones here.
            x = {"raw": rng.random() if alertable else rng.uniform(0.9, 1.0)}
            rank, _ = scorer.score_one(f"c:{i}", float(i), x, alertable or rank_all)
            if alertable and i >= 2_000:
                alertable_seen += 1
                flagged += rank >= 1 - budget
        return flagged / alertable_seen

    assert budget / 1.5 <= share_flagged(rank_all=False) <= 1.5 * budget
    assert share_flagged(rank_all=True) < budget / 3  # among all, the budget goes unspent


def test_the_shard_ranks_payments_below_the_alert_minimum_without_recording_them() -> None:
    assert shard_choice().alert_min_amount == settings().alerts.suspicious_min_amount
    recorded = {}
    for minimum in (0.0, 100.0):
        payment, _ = _requests()  # a payment of 42.50
        shard = ModelShard(replace(shard_choice(), alert_min_amount=minimum))
        scored = shard.handle(payment, OFFERS)
        assert scored.anomaly_score is not None
        recorded[minimum] = len(shard.anomaly.reranker.detector_ranks.sorted)
    assert recorded == {0.0: 1, 100.0: 0}


def test_offers_are_not_scored_for_a_customer_who_may_receive_none() -> None:
    _, login = _requests()
    shard = ModelShard(shard_choice())
    assert shard.handle(login, OFFERS).offer_propensities  # consent, open account

    for change in ({"marketing_consent": False}, {"closed": True}):
        login.profile = {**login.profile, **change}
        assert shard.handle(login, OFFERS).offer_propensities == {}
