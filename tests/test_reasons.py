"""Reasons: plain words, ranked by how much each signal pushed the score up."""

from __future__ import annotations

import pytest

from operators.reasons import anomaly_reasons, churn_reasons

AT_RISK = {
    "days_since_login": 21.0,
    "complaints_30d": 2.0,
    "external_outflow_share": 0.35,
    "nps": 3.0,
    "nps_known": 1.0,
    "closure_requested": 1.0,
}


def test_churn_reasons_are_ranked_by_contribution() -> None:
    contributions = {
        "days_since_login": 0.2,
        "complaints_30d": 1.4,
        "external_outflow_share": 0.9,
        "nps": 0.1,
        "closure_requested": 0.05,
    }

    assert churn_reasons(AT_RISK, contributions) == [
        "2 complaints in 30 days",
        "35% of 30-day outflows went to other banks",
        "no login for 21 days",
    ]
    # Other weights, other order.
    contributions["closure_requested"] = 3.0
    assert churn_reasons(AT_RISK, contributions, top=2) == [
        "asked to close the account",
        "2 complaints in 30 days",
    ]


@pytest.mark.parametrize(
    ("features", "text"),
    [
        ({"days_since_login": 7.0}, "no login for 7 days"),
        ({"login_trend": 0.25, "logins_30d": 8.0}, "logins at 25% of their 30-day rate"),
        ({"spend_trend": 0.1}, "card spending at 10% of its 30-day rate"),
        ({"inflow_trend": 0.0}, "inflows at 0% of their 30-day rate"),
        ({"complaints_30d": 1.0}, "1 complaint in 30 days"),
        ({"nps": 6.0, "nps_known": 1.0}, "last satisfaction score 6/10"),
        ({"closure_requested": 1.0}, "asked to close the account"),
        ({"days_since_transaction": 30.0}, "no transaction for 30 days"),
        ({"net_flow_ratio": -0.5}, "money flowing out faster than in"),
    ],
)
def test_each_churn_signal_in_plain_words(features: dict[str, float], text: str) -> None:
    assert churn_reasons(features, dict.fromkeys(features, 1.0)) == [text]


@pytest.mark.parametrize(
    "features",
    [
        {"days_since_login": 2.0},
        {"login_trend": 0.25, "logins_30d": 1.0},  # too few logins to speak of a trend
        {"spend_trend": 0.9},
        {"complaints_30d": 0.0},
        {"external_outflow_share": 0.1},
        {"nps": 2.0, "nps_known": 0.0},  # the default NPS when none was given
        {"nps": 9.0, "nps_known": 1.0},
        {"closure_requested": 0.0},
        {"net_flow_ratio": 0.1},
    ],
)
def test_unremarkable_values_give_no_churn_reason(features: dict[str, float]) -> None:
    assert churn_reasons(features, dict.fromkeys(features, 5.0)) == []


def test_anomaly_reasons_rank_the_rarest_signals_first() -> None:
    features = {
        "night": 1.0,
        "new_merchant": 1.0,
        "new_country": 1.0,
        "amount_vs_usual": 12.0,
        "new_device": 1.0,
        "hours_since_password_reset": 72.0,
    }

    assert anomaly_reasons(features) == [
        "new device",
        "amount 12.0x the customer's usual",
        "new country",
    ]
    assert anomaly_reasons(features, top=10)[-2:] == ["new merchant", "at night (00:00-06:00 UTC)"]


def test_anomaly_reasons_in_plain_words() -> None:
    features = {
        "hours_since_password_reset": 2.0,
        "hours_since_new_device": 5.0,
        "count_1h": 6.0,
    }

    assert anomaly_reasons(features) == [
        "password reset 2 h before",
        "first login from a new device 5 h before",
        "6 card payments in the last hour",
    ]


def test_an_ordinary_transaction_has_no_anomaly_reasons() -> None:
    ordinary = {
        "amount_vs_usual": 1.1,
        "new_country": 0.0,
        "new_device": 0.0,
        "new_merchant": 0.0,
        "count_1h": 1.0,
        "hours_since_password_reset": 72.0,
        "hours_since_new_device": 72.0,
        "night": 0.0,
        "log_amount": 4.0,
    }

    assert anomaly_reasons(ordinary) == []
