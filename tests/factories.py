"""Builders for the unit tests of the operators: raw events, decoded events, profiles,
scores and outputs, with realistic defaults from the shipped configuration.

Everything here is plain data; nothing talks to Kafka or Redis.
"""

from __future__ import annotations

import dataclasses
import itertools
from datetime import datetime, timezone
from functools import cache
from typing import Any

import orjson

from crmstream.settings import Settings, load_settings
from flows.engine import decision_config, model_choice, profile_config
from operators.decisions import DecisionConfig, alert_id
from operators.decode import DecodeLimits, decode
from operators.profile import CustomerState, ProfileConfig, ProfileLogic, profile_fields
from operators.records import Alert, Event, Origin, Output, Scored, ScoreRequest
from operators.windows import TOTAL_NAMES, UNITS

HOUR = 3600.0
DAY = 86400.0
# A Monday, 12:00 UTC: far from midnight, so "night" features stay off unless asked for.
T0 = datetime(2025, 3, 3, 12, 0, tzinfo=timezone.utc).timestamp()

TOPICS = {
    "transactions": "crm.transactions",
    "interactions": "crm.interactions",
    "outcomes": "crm.outcomes",
    "customers": "crm.customers",
}

_ids = itertools.count(1)


def next_id(prefix: str = "ev") -> str:
    return f"{prefix}-{next(_ids)}"


@cache
def settings() -> Settings:
    """The shipped defaults (the session fixture has cleared CRMSTREAM_* variables)."""
    return load_settings()


def limits(s: Settings | None = None) -> DecodeLimits:
    s = s or settings()
    return DecodeLimits(
        max_record_bytes=s.engine.max_record_bytes,
        max_amount=s.engine.max_amount,
        fx_rates=dict(s.bank.fx_rates),
    )


def profile_logic(**changes: Any) -> ProfileLogic:
    """ProfileLogic on the shipped configuration, with ProfileConfig fields replaced."""
    config: ProfileConfig = profile_config(settings())
    return ProfileLogic(dataclasses.replace(config, **changes))


def decisions_config(**changes: Any) -> DecisionConfig:
    return dataclasses.replace(decision_config(settings()), **changes)


def shard_choice():
    return model_choice(settings())


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, tz=timezone.utc).isoformat()


# --- raw bodies, as producers write them ------------------------------------------------


def transaction(
    customer_id: str = "c1", at: float = T0, amount: float = 42.5, **fields: Any
) -> dict[str, Any]:
    body = {
        "schema_version": 1,
        "event_id": next_id("tx"),
        "customer_id": customer_id,
        "account_id": "acc-1",
        "event_time": iso(at),
        "amount": amount,
        "currency": "EUR",
        "direction": "debit",
        "kind": "card_present",
        "merchant_category": "5411",
        "merchant_id": "m-grocer",
        "country": "DE",
        "device_id": None,
        "counterparty_bank": None,
    }
    body.update(fields)
    return body


def interaction(
    customer_id: str = "c1", at: float = T0, type: str = "login", **fields: Any
) -> dict[str, Any]:
    body = {
        "schema_version": 1,
        "event_id": next_id("in"),
        "customer_id": customer_id,
        "event_time": iso(at),
        "channel": "mobile_app",
        "type": type,
    }
    body.update(fields)
    return body


def outcome(
    customer_id: str = "c1", at: float = T0, type: str = "account_closed", **fields: Any
) -> dict[str, Any]:
    body = {
        "schema_version": 1,
        "event_id": next_id("out"),
        "customer_id": customer_id,
        "event_time": iso(at),
        "type": type,
    }
    body.update(fields)
    return body


def customer(customer_id: str = "c1", at: float = T0 - DAY, **fields: Any) -> dict[str, Any]:
    body = {
        "schema_version": 1,
        "event_id": next_id("cu"),
        "customer_id": customer_id,
        "event_time": iso(at),
        "segment": "mass",
        "rm_id": "rm-1",
        "branch_id": "br-1",
        "products": ["current_account"],
        "marketing_consent": True,
        "joined_on": "2019-05-01",
        "birth_year": 1985,
    }
    body.update(fields)
    return body


BUILDERS = {
    "transactions": transaction,
    "interactions": interaction,
    "outcomes": outcome,
    "customers": customer,
}


def origin(kind: str, key: bytes | None = b"c1", offset: int = 0) -> Origin:
    return Origin(TOPICS[kind], 0, offset, key, T0)


def encode(body: dict[str, Any]) -> bytes:
    return orjson.dumps(body)


def event(kind: str, body: dict[str, Any]) -> Event:
    """Decode a body through the real decoder; fails the test if it is rejected."""
    result = decode(kind, encode(body), origin(kind, body["customer_id"].encode()), limits())
    assert isinstance(result, Event), result
    return result


def tx(customer_id: str = "c1", at: float = T0, amount: float = 42.5, **fields: Any) -> Event:
    return event("transactions", transaction(customer_id, at, amount, **fields))


def contact(customer_id: str = "c1", at: float = T0, type: str = "login", **fields: Any) -> Event:
    return event("interactions", interaction(customer_id, at, type, **fields))


def closed(customer_id: str = "c1", at: float = T0, **fields: Any) -> Event:
    return event("outcomes", outcome(customer_id, at, **fields))


def reference(customer_id: str = "c1", at: float = T0 - DAY, **fields: Any) -> Event:
    return event("customers", customer(customer_id, at, **fields))


# The profile hash fields the README documents (section "Redis keys").
PROFILE_FIELDS = frozenset(
    [
        "customer_id",
        "segment",
        "rm_id",
        "branch_id",
        "stage",
        "value_tier",
        "churn_risk",
        "churn_reasons",
        "anomaly_score",
        "anomaly_reasons",
        "next_best_offer",
        "next_best_offer_channel",
        "next_best_offer_propensity",
        "next_best_offer_reasons",
        "model_versions",
        "recency_days",
        "frequency_30d",
        "monetary_30d",
        "days_since_last_activity",
        "last_activity_at",
        "channel_mix_30d",
        "features",
        "products",
        "marketing_consent",
        "tenure_days",
        "last_nps",
        "updated_at",
    ]
)


# --- what flows after the profile step ------------------------------------------------


def profile(
    reference_fields: dict[str, Any] | None = None,
    aggregates: dict[str, float] | None = None,
    at: float = T0,
    **fields: Any,
) -> dict[str, Any]:
    """A profile as the profile step builds it, for a known customer active an hour ago,
    with `aggregates` totals and top-level `fields` replaced."""
    logic = profile_logic()
    state = CustomerState()
    logic.apply(state, reference(at=at - 400 * DAY, **(reference_fields or {})))
    result = profile_fields(state, at)
    totals = result["aggregates"].values
    for name, value in (aggregates or {}).items():
        index = TOTAL_NAMES.index(name)
        totals[index] = value * UNITS[index]
    result.update(recency_days=0.04, days_since_last_activity=0.04, last_activity_at=at - 3600)
    result.update(fields)
    return result


def scored(
    event: Event,
    churn_risk: float = 0.1,
    anomaly_score: float | None = None,
    anomaly_reasons: list[str] | None = None,
    churn_reasons: list[str] | None = None,
    offer_propensities: dict[str, float] | None = None,
    profile_data: dict[str, Any] | None = None,
) -> Scored:
    request = ScoreRequest(
        customer_id=event.customer_id,
        event=event,
        profile=profile_data if profile_data is not None else profile(at=event.event_time),
        churn_features={},
        anomaly_features=None,
        offer_context=None,
    )
    return Scored(
        request=request,
        churn_risk=churn_risk,
        churn_reasons=churn_reasons or [],
        anomaly_score=anomaly_score,
        anomaly_reasons=anomaly_reasons or [],
        offer_propensities=offer_propensities or {},
        model_versions={"churn": "logistic@0", "anomaly": "half_space_trees@0"},
    )


def alert(
    customer_id: str = "c1",
    rm_id: str = "rm-1",
    type: str = "churn_risk",
    event_id: str | None = None,
    at: float = T0,
) -> Alert:
    event_id = event_id or next_id("tx")
    return Alert(
        alert_id=alert_id(type, customer_id, f"transactions:{event_id}"),
        type=type,
        severity="high",
        customer_id=customer_id,
        rm_id=rm_id,
        event_time=at,
        reasons=("churn risk 0.91", "no login for 21 days"),
        scores={"churn_risk": 0.91},
        event_id=event_id,
    )


def output(
    customer_id: str = "c1",
    rm_id: str = "rm-1",
    churn_risk: float = 0.25,
    previous_rm_id: str | None = None,
    alerts: list[Alert] | None = None,
    at: float = T0,
    last_activity: float | None = None,
    **profile_fields_: Any,
) -> Output:
    """An Output as the decision step makes it, with every documented profile field;
    the customer was last active at `last_activity` (default: the event time)."""
    last_activity = at if last_activity is None else last_activity
    fields: dict[str, Any] = {
        "customer_id": customer_id,
        "segment": "mass",
        "rm_id": rm_id,
        "branch_id": "br-1",
        "stage": "mature",
        "value_tier": "silver",
        "churn_risk": round(churn_risk, 4),
        "churn_reasons": ["no login for 21 days"],
        "anomaly_score": "",
        "anomaly_reasons": [],
        "next_best_offer": "savings",
        "next_best_offer_channel": "mobile_app",
        "next_best_offer_propensity": 0.05,
        "next_best_offer_reasons": ["estimated acceptance 5% x value 120 on mobile_app"],
        "model_versions": {"churn": "logistic@3"},
        "recency_days": 1.5,
        "frequency_30d": 12.0,
        "monetary_30d": 640.25,
        "days_since_last_activity": round((at - last_activity) / DAY, 2),
        "last_activity_at": iso(last_activity),
        "channel_mix_30d": {"mobile_app": 1.0},
        "features": {"spend_count_30d": 12.0},
        "products": ["current_account"],
        "marketing_consent": 1,
        "tenure_days": 2000.0,
        "last_nps": "",
        "updated_at": iso(at),
    }
    fields.update(profile_fields_)
    return Output(
        customer_id=customer_id,
        rm_id=rm_id,
        previous_rm_id=previous_rm_id,
        profile=fields,
        churn_risk=churn_risk,
        alerts=alerts or [],
        event_time=at,
        broker_time=at + 1.0,
        topic=TOPICS["transactions"],
        last_activity=last_activity,
        scores={"churn_risk": round(churn_risk, 4)},
    )
