"""Turn raw Kafka record values into validated events, or say precisely what is wrong."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from crmstream.events import ADAPTERS
from operators.privacy import protect
from operators.records import DeadLetter, Event, Origin


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    max_record_bytes: int
    max_amount: float
    fx_rates: dict[str, float]


def _rejection(code: str, reason: str, origin: Origin, raw: bytes | None) -> DeadLetter:
    return DeadLetter("dead_lettered", code, reason, origin, raw)


def describe_schema_errors(kind: str, exc: ValidationError, limit: int = 3) -> str:
    parts = []
    for error in exc.errors()[:limit]:
        where = ".".join(str(p) for p in error["loc"]) or "record"
        if error["type"] == "missing":
            parts.append(f"missing field '{where}'")
        elif error["type"] == "extra_forbidden":
            parts.append(f"unknown field '{where}'")
        else:
            given = repr(error.get("input"))
            if len(given) > 40:
                given = given[:37] + "..."
            parts.append(f"field '{where}': {error['msg']} (got {given})")
    more = exc.error_count() - limit
    suffix = f"; and {more} more" if more > 0 else ""
    return f"{kind} schema v1: " + "; ".join(parts) + suffix


def _why_not_json(raw: bytes, error: dict) -> str:
    try:
        raw.decode()
    except UnicodeDecodeError as exc:
        return f"malformed JSON: not valid UTF-8 at byte {exc.start}"
    return f"malformed JSON: {error['ctx']['error']}"


def decode(
    kind: str, raw: bytes | None, origin: Origin, limits: DecodeLimits
) -> Event | DeadLetter:
    """Parse and validate one record of the given topic kind.

    Amounts are converted to the base currency here, so every later step works in one
    currency; `body["amount_original"]` keeps what the customer saw. Card and account
    numbers are masked on the way out (operators/privacy.py), so no later step, state,
    sink, log or metric can see one.
    """
    return protect(_decode(kind, raw, origin, limits))


def _decode(
    kind: str, raw: bytes | None, origin: Origin, limits: DecodeLimits
) -> Event | DeadLetter:
    if raw is None:
        return _rejection("empty", "record has no value (tombstone or null)", origin, raw)
    if len(raw) > limits.max_record_bytes:
        return _rejection(
            "too_large",
            f"record is {len(raw)} bytes, above the {limits.max_record_bytes}-byte limit",
            origin,
            raw,
        )
    try:
        # Strict: "12.5" is not an amount and "yes" is not consent; JSON's own types only.
        body = ADAPTERS[kind].validate_json(raw, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            return _rejection("malformed_json", _why_not_json(raw, first), origin, raw)
        if not first["loc"] and first["type"] in ("dict_type", "model_type"):
            return _rejection(
                "not_an_object",
                f"expected a JSON object, got {type(first['input']).__name__}",
                origin,
                raw,
            )
        return _rejection("schema", describe_schema_errors(kind, exc), origin, raw)

    customer_id = body["customer_id"]
    if origin.key is not None and origin.key != customer_id.encode():
        return _rejection(
            "key_mismatch",
            f"message key {origin.key[:64]!r} differs from customer_id {customer_id!r}; "
            "producers must key by customer_id",
            origin,
            raw,
        )
    if kind == "transactions":
        rate = limits.fx_rates.get(body["currency"])
        if rate is None:
            return _rejection(
                "unknown_currency",
                f"unknown currency {body['currency']!r}; add its rate to bank.fx_rates",
                origin,
                raw,
            )
        amount = body["amount"] * rate
        if amount > limits.max_amount:
            return _rejection(
                "absurd_amount",
                f"amount {body['amount']:.2f} {body['currency']} exceeds engine.max_amount "
                f"({limits.max_amount:.0f} base currency)",
                origin,
                raw,
            )
        body["amount_original"] = body["amount"]
        body["amount"] = amount
    event_time = body.pop("event_time").timestamp()
    return Event(kind, customer_id, body["event_id"], event_time, body, origin, raw)
