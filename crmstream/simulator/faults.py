"""What goes wrong between a bank's systems and the topics: delay, re-sending, garbage.

Faults are drawn after a day's events are generated, from the same random stream, so the
underlying events of a seed stay the same whatever fault rates are chosen. Reference
records are never delayed, so a customer's first record always comes before its events.
"""

from __future__ import annotations

from random import Random
from typing import Any

import orjson

from crmstream.simulator.clock import HOUR, MINUTE
from crmstream.simulator.config import SimEvent, SimulationConfig
from crmstream.simulator.records import Item, Tags

BAD_REASONS: tuple[str, ...] = (
    "malformed_json",
    "missing_field",
    "wrong_type",
    "negative_amount",
    "absurd_amount",
    "unknown_currency",
    "unknown_customer",
    "non_utf8",
)
_REASONS_BY_KIND = {
    "transactions": BAD_REASONS,
    "interactions": (
        "malformed_json",
        "missing_field",
        "wrong_type",
        "unknown_customer",
        "non_utf8",
    ),
    "outcomes": ("malformed_json", "missing_field", "wrong_type", "unknown_customer", "non_utf8"),
    # A record for an unknown customer would announce it, so that reason is left out here.
    "customers": ("malformed_json", "missing_field", "wrong_type", "non_utf8"),
}
_REQUIRED = {
    "transactions": ("event_id", "customer_id", "event_time", "amount", "currency", "kind"),
    "interactions": ("event_id", "customer_id", "event_time", "channel", "type"),
    "outcomes": ("event_id", "customer_id", "event_time", "type"),
    "customers": ("event_id", "customer_id", "event_time", "segment", "products"),
}
_WRONG_TYPES: dict[str, tuple[tuple[str, Any], ...]] = {
    "transactions": (("amount", "12,50 EUR"), ("direction", 1), ("country", 276)),
    "interactions": (("channel", 7), ("severity", "high"), ("nps", [9])),
    "outcomes": (("type", 3), ("event_time", "yesterday")),
    "customers": (("products", "current_account"), ("marketing_consent", "maybe")),
}
UNKNOWN_CURRENCIES: tuple[str, ...] = ("XAU", "ZWL", "VES", "KPW", "XXX")
# Far above any sensible engine.max_amount, yet short of 13 digits, which would look like
# a card number to a data-loss scanner.
ABSURD_AMOUNTS = (1e9, 1e10)
OUT_OF_ORDER_DELAY = (5.0, 5 * MINUTE)
LATE_DELAY = (1.5 * HOUR, 6 * HOUR)
DUPLICATE_DELAY = (0.5, 2 * MINUTE)

Entry = tuple[float, SimEvent, Tags]  # (emission time, event, tags)


def deliver(items: list[Item], key: str, rng: Random, config: SimulationConfig) -> list[Entry]:
    """When each event is emitted, plus any duplicates and malformed records."""
    late = config.late_fraction
    delayed = late + config.out_of_order_fraction
    duplicate = config.duplicate_fraction
    bad = config.bad_fraction
    entries: list[Entry] = []
    for ms, kind, value, tags in items:
        t = ms / 1000
        event = SimEvent(kind, key, value, t)
        emit = t
        if kind != "customers":
            if delayed:
                draw = rng.random()
                if draw < late:
                    emit = t + rng.uniform(*LATE_DELAY)
                    tags = (*tags, "late")
                elif draw < delayed:
                    emit = t + rng.uniform(*OUT_OF_ORDER_DELAY)
                    tags = (*tags, "out_of_order")
            if duplicate and rng.random() < duplicate:
                entries.append((emit + rng.uniform(*DUPLICATE_DELAY), event, ("duplicate",)))
        entries.append((emit, event, tags))
        if bad and rng.random() < bad:
            entries.append(_bad_record(rng, config, event))
    return entries


def _bad_record(rng: Random, config: SimulationConfig, event: SimEvent) -> Entry:
    """A broken sibling of `event`, with its own event id, as raw bytes."""
    reason = rng.choice(_REASONS_BY_KIND[event.kind])
    value = dict(event.value)
    value["event_id"] += "x"
    key = event.key
    if reason == "missing_field":
        del value[rng.choice(_REQUIRED[event.kind])]
    elif reason == "wrong_type":
        field, wrong = rng.choice(_WRONG_TYPES[event.kind])
        value[field] = wrong
    elif reason == "negative_amount":
        value["amount"] = -value["amount"]
    elif reason == "absurd_amount":
        value["amount"] = round(rng.uniform(*ABSURD_AMOUNTS), 2)
    elif reason == "unknown_currency":
        value["currency"] = rng.choice(UNKNOWN_CURRENCIES)
    elif reason == "non_utf8":
        value["event_id"] += "\u00e9"  # re-encoded below as Latin-1 would have it
    elif reason == "unknown_customer":
        # Indices from `customers` upwards are never announced in this run.
        key = f"C{config.customers + rng.randrange(1, 1_000_000):07d}"
        value["customer_id"] = key
    raw = orjson.dumps(value)
    if reason == "malformed_json":
        raw = raw[: rng.randrange(1, len(raw) - 1)]
    elif reason == "non_utf8":
        raw = raw.replace("\u00e9".encode(), b"\xe9")
    return event.event_time, SimEvent(event.kind, key, raw, event.event_time), (f"bad:{reason}",)
