"""Plain-word reasons for scores, ranked by how much each pushed the score up."""

from __future__ import annotations

from collections.abc import Callable

_Phrase = Callable[[float, dict[str, float]], str | None]


def _pct(value: float) -> str:
    return f"{100 * value:.0f}%"


_CHURN_PHRASES: dict[str, _Phrase] = {
    "days_since_login": lambda v, x: f"no login for {v:.0f} days" if v >= 7 else None,
    "login_trend": lambda v, x: (
        f"logins at {_pct(v)} of their 30-day rate"
        if v < 0.6 and x.get("logins_30d", 0) >= 2
        else None
    ),
    "spend_trend": lambda v, x: (
        f"card spending at {_pct(v)} of its 30-day rate" if v < 0.5 else None
    ),
    "inflow_trend": lambda v, x: f"inflows at {_pct(v)} of their 30-day rate" if v < 0.5 else None,
    "complaints_30d": lambda v, x: (
        f"{v:.0f} complaint{'s' if v != 1 else ''} in 30 days" if v >= 1 else None
    ),
    "external_outflow_share": lambda v, x: (
        f"{_pct(v)} of 30-day outflows went to other banks" if v >= 0.2 else None
    ),
    "nps": lambda v, x: (
        f"last satisfaction score {v:.0f}/10" if x.get("nps_known") and v <= 6 else None
    ),
    "closure_requested": lambda v, x: "asked to close the account" if v else None,
    "days_since_transaction": lambda v, x: f"no transaction for {v:.0f} days" if v >= 14 else None,
    "net_flow_ratio": lambda v, x: "money flowing out faster than in" if v <= -0.3 else None,
}

_ANOMALY_PHRASES: dict[str, _Phrase] = {
    "amount_vs_usual": lambda v, x: f"amount {v:.1f}x the customer's usual" if v >= 3 else None,
    "new_country": lambda v, x: "new country" if v else None,
    "new_device": lambda v, x: "new device" if v else None,
    "new_merchant": lambda v, x: "new merchant" if v else None,
    "count_1h": lambda v, x: f"{v:.0f} card payments in the last hour" if v >= 5 else None,
    "hours_since_password_reset": lambda v, x: (
        f"password reset {v:.0f} h before" if v < 24 else None
    ),
    "hours_since_new_device": lambda v, x: (
        f"first login from a new device {v:.0f} h before" if v < 24 else None
    ),
    "night": lambda v, x: "at night (00:00-06:00 UTC)" if v else None,
}


def _ranked(
    phrases: dict[str, _Phrase], x: dict[str, float], weight: dict[str, float], top: int
) -> list[str]:
    found = []
    for name, phrase in phrases.items():
        if name in x and (text := phrase(x[name], x)) is not None:
            found.append((weight.get(name, 0.0), text))
    found.sort(key=lambda pair: -pair[0])
    return [text for _, text in found[:top]]


def churn_reasons(x: dict[str, float], contributions: dict[str, float], top: int = 3) -> list[str]:
    """
    >>> churn_reasons({"days_since_login": 21.0, "complaints_30d": 2.0},
    ...               {"days_since_login": 1.5, "complaints_30d": 0.4})
    ['no login for 21 days', '2 complaints in 30 days']
    """
    return _ranked(_CHURN_PHRASES, x, contributions, top)


# Without per-feature attributions from the detector, rank by how rare each signal is.
_ANOMALY_WEIGHT = {
    "new_device": 5.0,
    "hours_since_password_reset": 4.5,
    "hours_since_new_device": 4.0,
    "amount_vs_usual": 3.5,
    "count_1h": 3.0,
    "new_country": 2.5,
    "new_merchant": 1.5,
    "night": 1.0,
}


def anomaly_reasons(x: dict[str, float], top: int = 3) -> list[str]:
    """
    >>> anomaly_reasons({"amount_vs_usual": 12.0, "new_country": 1.0, "night": 0.0})
    ["amount 12.0x the customer's usual", 'new country']
    """
    return _ranked(_ANOMALY_PHRASES, x, _ANOMALY_WEIGHT, top)
