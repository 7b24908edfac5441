"""Decoding raw record values: valid events become Events, anything else a DeadLetter
that says precisely what is wrong."""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any

import orjson
import pytest
from factories import (
    BUILDERS,
    customer,
    encode,
    interaction,
    limits,
    origin,
    outcome,
    settings,
    transaction,
)
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from operators.decode import decode
from operators.records import DeadLetter, Event


def run(kind: str, raw: bytes | None, key: bytes | None = b"c1") -> Event | DeadLetter:
    return decode(kind, raw, origin(kind, key), limits())


def rejected(kind: str, raw: bytes | None, key: bytes | None = b"c1") -> DeadLetter:
    result = run(kind, raw, key)
    assert isinstance(result, DeadLetter), f"expected a dead letter, got {result!r}"
    assert result.outcome == "dead_lettered"
    assert result.raw == raw, "a dead letter must carry the original bytes for replay"
    return result


# --- valid events ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_a_valid_event_of_each_topic_decodes(kind: str) -> None:
    body = BUILDERS[kind]()
    raw = encode(body)
    given_origin = origin(kind, b"c1", offset=17)

    event = decode(kind, raw, given_origin, limits())

    assert isinstance(event, Event)
    assert event.kind == kind
    assert event.customer_id == "c1"
    assert event.event_id == body["event_id"]
    assert event.origin == given_origin
    assert event.raw == raw
    assert "event_time" not in event.body


def test_event_time_becomes_epoch_seconds_whatever_the_offset() -> None:
    # 14:30 at +02:00 is 12:30 UTC.
    body = interaction(event_time="2025-03-03T14:30:00.250+02:00")

    event = run("interactions", encode(body))

    assert isinstance(event, Event)
    expected = datetime(2025, 3, 3, 12, 30, 0, 250000, tzinfo=timezone.utc).timestamp()
    assert event.event_time == pytest.approx(expected)


def test_amounts_are_converted_to_the_base_currency_keeping_the_original() -> None:
    rate = settings().bank.fx_rates["USD"]
    event = run("transactions", encode(transaction(amount=200.0, currency="USD")))

    assert isinstance(event, Event)
    assert event.body["amount"] == pytest.approx(200.0 * rate)
    assert event.body["amount_original"] == 200.0
    assert event.body["currency"] == "USD"


def test_base_currency_amounts_are_unchanged() -> None:
    base = settings().bank.base_currency
    event = run("transactions", encode(transaction(amount=99.99, currency=base)))

    assert isinstance(event, Event)
    assert event.body["amount"] == 99.99


def test_customer_record_keeps_typed_reference_data() -> None:
    event = run("customers", encode(customer(products=["savings", "credit_card"])))

    assert isinstance(event, Event)
    assert event.body["joined_on"] == date(2019, 5, 1)
    assert event.body["products"] == ["savings", "credit_card"]
    assert event.body["marketing_consent"] is True


def test_a_record_without_a_key_is_accepted() -> None:
    assert isinstance(run("outcomes", encode(outcome()), key=None), Event)


# --- rejections ----------------------------------------------------------------------


def test_malformed_json() -> None:
    letter = rejected("transactions", b'{"schema_version": 1, "event_id": ')

    assert letter.reason_code == "malformed_json"
    assert "malformed JSON" in letter.reason


def test_bytes_that_are_not_utf8() -> None:
    raw = encode(transaction()).replace(b"m-grocer", b"m-gr\xffcer")

    letter = rejected("transactions", raw)

    assert letter.reason_code == "malformed_json"
    assert "UTF-8" in letter.reason


@pytest.mark.parametrize(
    ("raw", "what"),
    [(b"[1, 2]", "list"), (b'"text"', "str"), (b"42", "int"), (b"null", "NoneType")],
)
def test_json_that_is_not_an_object(raw: bytes, what: str) -> None:
    letter = rejected("interactions", raw)

    assert letter.reason_code == "not_an_object"
    assert "expected a JSON object" in letter.reason
    assert what in letter.reason


@pytest.mark.parametrize(
    ("kind", "field"),
    [
        ("transactions", "amount"),
        ("transactions", "event_time"),
        ("interactions", "channel"),
        ("outcomes", "type"),
        ("customers", "rm_id"),
    ],
)
def test_missing_field_is_named(kind: str, field: str) -> None:
    body = BUILDERS[kind]()
    del body[field]

    letter = rejected(kind, encode(body))

    assert letter.reason_code == "schema"
    assert f"missing field '{field}'" in letter.reason
    assert letter.reason.startswith(f"{kind} schema v1")


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("transactions", "amount", "a lot"),
        ("transactions", "direction", "sideways"),
        ("transactions", "country", "Germany"),
        ("interactions", "severity", 9),
        ("customers", "products", "savings"),
        ("customers", "marketing_consent", "maybe"),
        ("transactions", "schema_version", 2),
        ("transactions", "customer_id", "has spaces"),
    ],
)
def test_wrong_type_or_value_names_the_field(kind: str, field: str, value: Any) -> None:
    body = BUILDERS[kind]()
    body[field] = value

    letter = rejected(kind, encode(body))

    assert letter.reason_code == "schema"
    assert f"field '{field}'" in letter.reason


def test_unknown_extra_field_is_named() -> None:
    letter = rejected("transactions", encode(transaction(amonut=12.0)))

    assert letter.reason_code == "schema"
    assert "unknown field 'amonut'" in letter.reason


def test_several_problems_are_all_reported_up_to_a_limit() -> None:
    body = transaction(extra_one=1, extra_two=2)
    del body["amount"]
    del body["country"]

    letter = rejected("transactions", encode(body))

    assert "missing field 'amount'" in letter.reason
    assert "and 1 more" in letter.reason


@pytest.mark.parametrize("amount", [-10.0, 0.0])
def test_amount_must_be_positive(amount: float) -> None:
    letter = rejected("transactions", encode(transaction(amount=amount)))

    assert letter.reason_code == "schema"
    assert "field 'amount'" in letter.reason
    assert "greater than 0" in letter.reason


def test_absurd_amount_is_judged_in_the_base_currency() -> None:
    maximum = settings().engine.max_amount
    gbp = settings().bank.fx_rates["GBP"]  # above 1: a GBP amount is worth more in EUR
    just_below_in_gbp = maximum / gbp * 1.001

    letter = rejected("transactions", encode(transaction(amount=just_below_in_gbp, currency="GBP")))

    assert letter.reason_code == "absurd_amount"
    assert "GBP" in letter.reason
    assert "engine.max_amount" in letter.reason
    # At the limit in the base currency itself is still accepted.
    assert isinstance(run("transactions", encode(transaction(amount=maximum))), Event)


def test_unknown_currency_names_it_and_the_setting() -> None:
    letter = rejected("transactions", encode(transaction(currency="JPY")))

    assert letter.reason_code == "unknown_currency"
    assert "'JPY'" in letter.reason
    assert "bank.fx_rates" in letter.reason


def test_naive_datetime_without_timezone() -> None:
    letter = rejected("transactions", encode(transaction(event_time="2025-03-03T12:00:00")))

    assert letter.reason_code == "schema"
    assert "field 'event_time'" in letter.reason
    assert "timezone" in letter.reason


def test_key_must_be_the_customer_id() -> None:
    letter = rejected("transactions", encode(transaction(customer_id="c1")), key=b"c2")

    assert letter.reason_code == "key_mismatch"
    assert "b'c2'" in letter.reason
    assert "'c1'" in letter.reason


def test_a_record_without_value() -> None:
    letter = rejected("customers", None)

    assert letter.reason_code == "empty"
    assert "no value" in letter.reason


def test_oversized_record_is_rejected_unread() -> None:
    maximum = settings().engine.max_record_bytes
    body = transaction()
    raw = encode(body)
    raw = raw[:-1] + b', "pad": "' + b"x" * (maximum - len(raw)) + b'"}'
    assert len(raw) > maximum

    letter = rejected("transactions", raw)

    assert letter.reason_code == "too_large"
    assert str(len(raw)) in letter.reason
    assert f"{maximum}-byte limit" in letter.reason


def test_the_dead_letter_points_back_at_the_record() -> None:
    given_origin = origin("outcomes", b"c1", offset=99)

    letter = decode("outcomes", b"{", given_origin, limits())

    assert isinstance(letter, DeadLetter)
    assert letter.origin == given_origin


# --- never raises ----------------------------------------------------------------------

KINDS = st.sampled_from(list(BUILDERS))
KEYS = st.one_of(st.none(), st.just(b"c1"), st.binary(max_size=8))
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
    st.sampled_from(["EUR", "USD", "XXX", "DE", "debit", "credit", "login", "mobile_app"]),
    st.datetimes(timezones=st.one_of(st.none(), st.timezones())).map(lambda d: d.isoformat()),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def mutated_bodies(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A valid body of some topic with fields dropped, replaced or added at random."""
    kind = draw(KINDS)
    body = BUILDERS[kind]()
    if kind == "transactions":
        body["amount"] = draw(st.floats(min_value=0.01, max_value=1e7))
        body["currency"] = draw(st.sampled_from(["EUR", "USD", "GBP", "CHF", "JPY"]))
    for name in draw(st.lists(st.sampled_from(sorted(body)), max_size=3, unique=True)):
        if draw(st.booleans()):
            del body[name]
        else:
            body[name] = draw(JSON_VALUES)
    body.update(draw(st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=2)))
    return kind, body


@hypothesis_settings(max_examples=300, deadline=None)
@given(kind=KINDS, raw=st.binary(max_size=300), key=KEYS)
def test_arbitrary_bytes_never_raise(kind: str, raw: bytes, key: bytes | None) -> None:
    result = run(kind, raw, key)

    assert isinstance(result, DeadLetter | Event)


@hypothesis_settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=mutated_bodies(), key=KEYS)
def test_arbitrary_json_objects_never_raise(
    case: tuple[str, dict[str, Any]], key: bytes | None
) -> None:
    kind, body = case
    raw = orjson.dumps(body)

    result = run(kind, raw, key)

    assert isinstance(result, DeadLetter | Event)
    if isinstance(result, Event):
        assert isinstance(result.event_time, float)
        if kind == "transactions":
            assert 0 < result.body["amount"] <= settings().engine.max_amount
    else:
        assert result.reason_code
        assert result.reason


# --- known bug ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("transactions", "amount", True),
        ("transactions", "amount", "12.5"),
        ("transactions", "event_time", 1741003200),
        ("customers", "marketing_consent", "yes"),
        ("interactions", "severity", "5"),
    ],
)
def test_values_of_the_wrong_json_type_are_not_coerced(kind: str, field: str, value: Any) -> None:
    body = BUILDERS[kind]()
    body[field] = value

    letter = rejected(kind, encode(body))

    assert letter.reason_code == "schema"
    assert f"field '{field}'" in letter.reason
