"""Card and account numbers: found in every form a producer may write them, masked to
the last four characters with nothing else changed, and kept out of everything the
decoder returns and everything the dead-letter sink sends."""

from __future__ import annotations

import re
import time
from typing import Any

import orjson
import pytest
from confluent_kafka import KafkaError, KafkaException
from factories import TOPICS, encode, limits, origin, transaction
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from operators.decode import _decode, decode
from operators.privacy import (
    SENSITIVE_IDENTIFIER,
    mask_fields,
    mask_raw,
    mask_reason,
    mask_text,
    protect,
    was_masked,
)
from operators.records import DeadLetter, Event, Origin
from sinks.dead_letter import TRUNCATED_VALUE_BYTES, _Partition


def luhn_valid(digits: str) -> bool:
    """An implementation independent of the one under test."""
    checksum = 0
    for i, d in enumerate(int(c) for c in reversed(digits)):
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        checksum += d
    return checksum % 10 == 0


def complete(prefix: str) -> str:
    """`prefix` plus the check digit that makes it pass Luhn."""
    return next(prefix + str(d) for d in range(10) if luhn_valid(prefix + str(d)))


def grouped(digits: str, sizes: tuple[int, ...], separator: str) -> str:
    parts, at = [], 0
    for size in sizes:
        parts.append(digits[at : at + size])
        at += size
    return separator.join(parts)


# Published test card numbers of the major schemes, 13 to 19 digits.
CARDS = [
    "4111111111111111",  # Visa
    "4222222222222",  # Visa, 13 digits
    "5555555555554444",  # Mastercard
    "2223003122003222",  # Mastercard 2-series
    "378282246310005",  # American Express
    "30569309025904",  # Diners Club, 14 digits
    "6011111111111117",  # Discover
    "3530111333300000",  # JCB
    complete("627198765432109876"),  # UnionPay-like, 19 digits
]
LAYOUTS = {13: (4, 3, 3, 3), 14: (4, 6, 4), 15: (4, 6, 5), 16: (4, 4, 4, 4), 19: (4, 4, 4, 4, 3)}
IBANS = [
    "DE89370400440532013000",
    "GB29NWBK60161331926819",
    "FR1420041010050500013M02606",
    "NO9386011117947",
    "BE68539007547034",
    "CH9300762011623852957",
]


def assert_masked(masked: str, original: str) -> None:
    """Same length and layout, last four kept, every other digit or letter a '*'."""
    assert len(masked) == len(original)
    significant = [i for i, c in enumerate(original) if c.isalnum()]
    for i in significant[:-4]:
        assert masked[i] == "*", (original, masked)
    for i in significant[-4:]:
        assert masked[i] == original[i]
    for i, c in enumerate(original):
        if not c.isalnum():
            assert masked[i] == c


# --- what is masked --------------------------------------------------------------------


@pytest.mark.parametrize("card", CARDS)
def test_a_card_number_written_contiguously_keeps_only_its_last_four(card: str) -> None:
    masked, count = mask_text(card)
    assert count == 1
    assert masked == "*" * (len(card) - 4) + card[-4:]


@pytest.mark.parametrize("card", [c for c in CARDS if len(c) in LAYOUTS])
@pytest.mark.parametrize("separator", [" ", "-"])
def test_a_card_number_in_its_printed_layout_is_masked_keeping_the_layout(
    card: str, separator: str
) -> None:
    printed = grouped(card, LAYOUTS[len(card)], separator)
    masked, count = mask_text(f"paid with {printed}, thanks")
    assert count == 1
    assert_masked(masked[len("paid with ") : -len(", thanks")], printed)
    assert masked.startswith("paid with ") and masked.endswith(", thanks")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A trailing code after the card: the card is still found.
        ("4111-1111-1111-1111-123", "****-****-****-1111-123"),
        # Another group before it: the card starts at a later group.
        ("1234-4111-1111-1111-1111", "1234-****-****-****-1111"),
        ("ref 12 4111 1111 1111 1111", "ref 12 **** **** **** 1111"),
        # Letters around it do not hide it.
        ("card4111111111111111x", "card************1111x"),
        # Two in one string.
        ("4111111111111111/5555555555554444", "************1111/************4444"),
    ],
)
def test_card_numbers_are_found_inside_longer_text(text: str, expected: str) -> None:
    assert mask_text(text)[0] == expected


@pytest.mark.parametrize(
    "text",
    [
        "4111111111111112",  # fails Luhn
        "411111111111",  # 12 digits
        "41111111111111111111",  # 20 digits: a longer number, not a card
        "0000000000000000",  # passes Luhn, but no card starts with 0
        "0.4111111111111111",  # the fraction of a decimal number
        "12.345678901234567",
        "T2-12345-678901",  # a structured id: not a card layout
        "T7f-123456-1234567",
        "2025-03-03T12:00:00.123456+00:00",
        "C0000123 A0000123 MDE5411042 RM0001 BR001",
    ],
)
def test_what_is_not_a_card_number_is_left_alone(text: str) -> None:
    assert mask_text(text) == (text, 0)


@pytest.mark.parametrize("iban", IBANS)
def test_an_iban_compact_spaced_or_lower_case_keeps_only_its_last_four(iban: str) -> None:
    spaced = " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))
    for form in (iban, spaced, iban.lower()):
        masked, count = mask_text(f"to {form} please")
        assert count == 1, form
        assert_masked(masked[3:-7], form)


@pytest.mark.parametrize(
    "text",
    [
        "DE88370400440532013000",  # wrong check digits
        "DE8937040044053201300",  # one character short for DE
        "DE893704004405320130001",  # one too many
        "XY89370400440532013000",  # not an IBAN country
        "xDE89370400440532013000",  # inside a longer word
    ],
)
def test_what_is_not_an_iban_is_left_alone(text: str) -> None:
    assert mask_text(text) == (text, 0)


def test_masking_twice_is_masking_once() -> None:
    once, _ = mask_text("4111 1111 1111 1111 and DE89370400440532013000")
    assert mask_text(once) == (once, 0)
    assert mask_raw(once.encode()) == (once.encode(), 0)


# No two of these letters make an IBAN country code, so only the card can match.
_AROUND = st.text(alphabet="qwz ,;:/", max_size=20)


@given(
    before=_AROUND,
    after=_AROUND,
    length=st.sampled_from(sorted(LAYOUTS)),
    digits=st.text(alphabet="0123456789", min_size=18, max_size=18),
    layout=st.sampled_from(["plain", " ", "-"]),
)
@hypothesis_settings(max_examples=300, deadline=None)
def test_any_card_number_anywhere_is_masked_and_nothing_else_changes(
    before: str, after: str, length: int, digits: str, layout: str
) -> None:
    card = complete("4" + digits[: length - 2])
    printed = card if layout == "plain" else grouped(card, LAYOUTS[length], layout)
    text = before + printed + after

    masked, count = mask_text(text)

    assert count == 1
    middle = masked[len(before) : len(masked) - len(after)]
    assert masked[: len(before)] == before and masked[len(masked) - len(after) :] == after
    assert_masked(middle, printed)
    assert re.sub(r"[^0-9]", "", middle) == card[-4:]


def test_fields_are_masked_in_place_at_any_depth_and_named() -> None:
    body: dict[str, Any] = {
        "merchant_id": "4111-1111-1111-1111",
        "products": ["current_account", "DE89370400440532013000"],
        "nested": {"deeper": [{"note": "card 5555 5555 5555 4444"}]},
        "amount": 4111111111111111,  # numbers are not strings: the raw bytes cover them
        "device_id": None,
    }
    assert mask_fields(body) == ["merchant_id", "nested.deeper.0.note", "products.1"]
    assert body["merchant_id"] == "****-****-****-1111"
    assert body["products"] == ["current_account", "******************3000"]
    assert body["nested"]["deeper"][0]["note"] == "card **** **** **** 4444"


def test_reasons_lose_long_digit_runs_even_without_a_checksum() -> None:
    # A value cut short by the reason's 40-character limit defeats the Luhn check.
    cut = "field 'merchant_id': bad (got 'xxxxxxxxxxxxxxxxxxxxxxxx411111111111...')"
    assert (
        mask_reason(cut)
        == "field 'merchant_id': bad (got 'xxxxxxxxxxxxxxxxxxxxxxxx************...')"
    )
    assert "1234567890123" not in mask_reason("ids 1234567890123 and 42")
    assert mask_reason("record is 70000 bytes, above the 65536-byte limit") == (
        "record is 70000 bytes, above the 65536-byte limit"
    )


# --- raw bytes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # JSON escapes of digits, separators and letters decode to a card or an IBAN.
        (b'{"m":"\\u0034111111111111111"}', b'{"m":"************1111"}'),
        (
            b'{"m":"4111\\u00201111\\u00201111\\u00201111"}',
            b'{"m":"****\\u0020****\\u0020****\\u00201111"}',
        ),
        (b'{"m":"\\u0044E89370400440532013000"}', b'{"m":"******************3000"}'),
        # Other digit scripts: fullwidth, literal and escaped.
        (
            '{"m":"４１１１１１１１１１１１１１１１"}'.encode(),
            '{"m":"************１１１１"}'.encode(),
        ),
        (
            b'{"m":"\\uff14\\uff11\\uff11\\uff11' + b"1" * 12 + b'"}',
            b'{"m":"' + b"*" * 12 + b'1111"}',
        ),
        # Escapes cut short (garbage, not JSON) are left as they are.
        (b'\\u12 \\u 4111111111111111 \\"', b'\\u12 \\u ************1111 \\"'),
        # Undecodable bytes around it survive unchanged.
        (b'\xff\xfe{"m":"4111111111111111"\x80}', b'\xff\xfe{"m":"************1111"\x80}'),
    ],
)
def test_raw_bytes_are_masked_whatever_the_encoding_and_otherwise_kept(
    raw: bytes, expected: bytes
) -> None:
    masked, count = mask_raw(raw)
    assert (masked, count) == (expected, 1)
    assert was_masked(masked)


def test_raw_bytes_without_a_card_number_are_returned_as_they_are() -> None:
    raw = encode(transaction())
    masked, count = mask_raw(raw)
    assert masked is raw and count == 0
    assert not was_masked(raw)


def test_hostile_records_are_masked_in_bounded_time() -> None:
    for raw in (
        b"4111 1111 1111 1111 " * 200_000,  # 4 MB of card numbers: every digit masked
        b"1-" * 2_000_000,  # 2 million candidate starts
        b"\\u0034" * 500_000,  # 3 MB of escapes
        b"7" * 4_000_000,  # one 4-million-digit number: not a card
    ):
        started = time.perf_counter()
        masked, _ = mask_raw(raw)
        assert time.perf_counter() - started < 2.0
        assert not re.search(rb"4111|\\u0034", masked[:-4])


# --- the decoder's hook -------------------------------------------------------------------


def decoded(body: dict[str, Any], key: bytes | None = b"c1") -> Event | DeadLetter:
    return decode("transactions", encode(body), origin("transactions", key), limits())


def test_an_event_with_a_card_number_in_a_field_is_applied_with_it_masked_everywhere() -> None:
    body = transaction(merchant_id="4111-1111-1111-1111", account_id="DE89370400440532013000")

    event = decoded(body)

    assert isinstance(event, Event)
    assert event.body["merchant_id"] == "****-****-****-1111"
    assert event.body["account_id"] == "******************3000"
    assert b"4111-1111" not in event.raw and b"DE8937" not in event.raw
    # The raw bytes stay a valid record of the same event (for a later dead letter).
    assert orjson.loads(event.raw) == {
        **body,
        "merchant_id": "****-****-****-1111",
        "account_id": "******************3000",
    }


@pytest.mark.parametrize("field", ["customer_id", "event_id"])
def test_an_identifier_holding_a_card_number_is_dead_lettered_masked(field: str) -> None:
    card = "4111111111111111"
    body = transaction(**{field: card})
    key = card.encode() if field == "customer_id" else b"c1"

    letter = decoded(body, key)

    assert isinstance(letter, DeadLetter)
    assert letter.reason_code == SENSITIVE_IDENTIFIER
    assert field in letter.reason and card not in letter.reason
    assert card.encode() not in letter.raw and b"************1111" in letter.raw
    assert letter.origin.key == (b"************1111" if field == "customer_id" else b"c1")


def test_a_message_key_holding_a_card_number_is_never_passed_on() -> None:
    letter = decoded(transaction(), b"4111111111111111")
    assert isinstance(letter, DeadLetter)
    assert letter.reason_code == "key_mismatch"
    assert letter.origin.key == b"************1111"
    assert "4111111111111111" not in letter.reason


def test_a_schema_error_does_not_quote_the_card_number_back() -> None:
    letter = decoded(transaction(merchant_id="4111 1111 1111 1111"))
    assert isinstance(letter, DeadLetter) and letter.reason_code == "schema"
    assert "merchant_id" in letter.reason and "**** **** **** 1111" in letter.reason
    assert b"4111 1111" not in letter.raw


def test_free_text_a_producer_should_not_send_is_dead_lettered_masked() -> None:
    letter = decoded({**transaction(), "note": "card 5555 5555 5555 4444 exp 12/27"})
    assert isinstance(letter, DeadLetter)
    assert letter.reason == "transactions schema v1: unknown field 'note'"
    assert b'"note":"card **** **** **** 4444 exp 12/27"' in letter.raw


def test_a_clean_record_goes_through_untouched() -> None:
    raw = encode(transaction())
    result = decode("transactions", raw, origin("transactions"), limits())
    assert isinstance(result, Event) and result.raw is raw


def test_masking_costs_little_per_event() -> None:
    """The hook's cost on events without card numbers (the stream) and with one."""
    clean = [encode(transaction(event_id=f"tx-{i}", amount=10.0 + i)) for i in range(2000)]
    carded = [
        encode(transaction(event_id=f"tx-{i}", merchant_id="4111-1111-1111-1111"))
        for i in range(500)
    ]
    given_origin = origin("transactions")

    def per_event(records: list[bytes]) -> float:
        best = float("inf")
        for _ in range(5):
            fresh = [_decode("transactions", r, given_origin, limits()) for r in records]
            started = time.perf_counter()
            for result in fresh:
                protect(result)
            best = min(best, (time.perf_counter() - started) / len(records))
        return best * 1e6

    clean_us = per_event(clean)
    carded_us = per_event(carded)
    print(f"masking cost: {clean_us:.2f} µs per clean event, {carded_us:.2f} µs with a card")
    assert clean_us < 10.0
    assert carded_us < 100.0


# --- the dead-letter sink -----------------------------------------------------------------


class RecordingProducer:
    """Stands in for confluent_kafka.Producer: keeps what was produced."""

    def __init__(self, max_bytes: int = 1_000_000) -> None:
        self.max_bytes = max_bytes
        self.sent: list[dict[str, Any]] = []

    def produce(self, topic: str, value: bytes | None, key: bytes | None, headers, on_delivery):
        if value is not None and len(value) > self.max_bytes:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        self.sent.append({"value": value, "key": key, **{k: v.decode() for k, v in headers}})

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0


def letter(raw: bytes | None, key: bytes | None = b"c1", reason: str = "bad") -> DeadLetter:
    return DeadLetter(
        "dead_lettered", "broker_error", reason, Origin(TOPICS["transactions"], 0, 7, key, 0.0), raw
    )


def sent_through_sink(*letters: DeadLetter, max_bytes: int = 1_000_000) -> list[dict[str, Any]]:
    producer = RecordingProducer(max_bytes)
    _Partition(producer, "crm.dead-letter").write_batch(list(letters))  # type: ignore[arg-type]
    return producer.sent


def test_the_sink_masks_what_never_went_through_the_decoder_and_says_so() -> None:
    # A broker error's record is dead-lettered by the flow without decoding.
    (sent,) = sent_through_sink(
        letter(b"pay 4111 1111 1111 1111", key=b"5555555555554444", reason="at 4111111111111111")
    )
    assert sent["value"] == b"pay **** **** **** 1111"
    assert sent["key"] == b"************4444"
    assert sent["crmstream.reason"] == "at ************1111"
    assert sent["crmstream.masked"] == "1"


def test_the_sink_flags_a_letter_the_decoder_already_masked() -> None:
    masked = decoded({**transaction(), "note": "4111111111111111"})
    assert isinstance(masked, DeadLetter)
    (sent,) = sent_through_sink(masked)
    assert sent["value"] == masked.raw and sent["crmstream.masked"] == "1"


def test_the_sink_sends_a_clean_record_byte_for_byte() -> None:
    raw = b'{"schema_version": 1, "event_id": "x1", '
    (sent,) = sent_through_sink(letter(raw), letter(None))[:1]
    assert sent["value"] == raw and sent["key"] == b"c1" and sent["crmstream.masked"] == "0"


def test_a_record_too_large_for_the_producer_is_sent_truncated_instead_of_stopping() -> None:
    raw = b"x" * 3_000_000
    (sent,) = sent_through_sink(letter(raw), max_bytes=1_000_000)
    assert sent["value"] == raw[:TRUNCATED_VALUE_BYTES]
    assert sent["crmstream.truncated_from"] == "3000000"
