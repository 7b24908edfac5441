"""Card and account numbers never get past the decoder.

Identifiers on the input topics are opaque tokens, but a producer bug (a card number
pasted into `merchant_id`, a customer keyed by PAN) or a hostile record can still carry a
primary account number (PAN) or an IBAN. The decoder is the one step every record passes,
so `protect` runs there: whatever comes out of it (events, their profile state and
recovery snapshots, Redis, alerts, dead letters, logs, metrics) never holds one.

What counts:

- **PAN-like**: 13-19 digits passing the Luhn check, written contiguously or in the
  layouts cards are printed in (4-4-4-4, 4-4-4-4-1..3, 4-4-4-1..4, 4-6-5, 4-6-4,
  4-3-3-3) with one kind of separator (space or dash). The first digit is 1-9: no card
  is issued under major industry identifier 0, while zero-padded internal numbers are
  common. Digits right after "<digit>." are a fraction, not a card. Free-form groupings
  such as `T2-12345-678901` (a simulator event id) are deliberately not PAN-like: with
  any grouping allowed, the Luhn check alone would flag one in ten long structured ids.
- **IBAN-like**: a country code of the IBAN registry, two check digits and the national
  part, exactly the registry's length for that country, compact or with single spaces,
  passing the ISO 7064 MOD 97-10 check.

Masking keeps the layout and the last four characters: `4111111111111111` becomes
`************1111`, `4111 1111 1111 1111` becomes `**** **** **** 1111`. Masked output
never matches again, so masking twice is masking once.

In raw bytes (dead letters keep the producer's bytes for replay) the same values are
found whether written in ASCII, in another Unicode digit script or as JSON `\\uXXXX`
escapes, and only their characters change: everything else stays byte-identical.

Cost: a record with neither 13 digits in a row (spaces and dashes ignored) nor two
letters, two digits and 15 letters or digits in a row costs a few `bytes.translate`
passes and substring searches, 1.5-3 µs for a typical event; only a record that passes
that screen meets the regular expressions, and only then are its fields walked.
"""

from __future__ import annotations

import re
import unicodedata
from array import array
from bisect import bisect_right
from dataclasses import replace
from typing import Any

from operators.records import DeadLetter, Event, Origin

MASK = "*"
# Identifiers whose value *is* the identity: masking them would merge customers or make
# distinct events duplicates, so an event carrying a card or account number there is
# dead-lettered (masked) instead of applied.
IDENTITY_FIELDS: tuple[str, ...] = ("customer_id", "event_id")
SENSITIVE_IDENTIFIER = "sensitive_identifier"
# Above this many candidates in one record, it is hostile or garbage: every digit in it is
# masked at C speed instead of checking candidates one by one in Python.
CANDIDATE_BUDGET = 2000
# Likewise for JSON escapes: a 64 KiB record written with ensure_ascii holds far fewer.
ESCAPE_BUDGET = 20000

IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22,
    "BH": 22, "BI": 27, "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24,
    "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24, "FI": 18,
    "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27,
    "GT": 28, "HN": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20,
    "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20,
    "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24,
    "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24,
    "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "SO": 23, "ST": 25,
    "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
    "YE": 30,
}  # fmt: skip

# --- patterns, over text normalised to ASCII digits -------------------------------------
#
# Each pattern starts with a character class so the regex engine skips ahead quickly;
# the boundary checks are lookbehinds placed after the first character.

_PAN = re.compile(
    r"[1-9](?<![0-9][0-9])(?<![0-9]\.[0-9])"  # not inside a number nor its fraction
    r"(?:[0-9]{12,18}"
    r"|[0-9]{3}(?P<a>[ -])[0-9]{4}(?P=a)[0-9]{4}(?P=a)[0-9]{1,4}(?:(?P=a)[0-9]{1,3})?"
    r"|[0-9]{3}(?P<b>[ -])[0-9]{6}(?P=b)[0-9]{4,5}"
    r"|[0-9]{3}(?P<c>[ -])[0-9]{3}(?P=c)[0-9]{3}(?P=c)[0-9]{3})"
    r"(?![0-9])"
)
# The check digits of an IBAN, after a country code that starts a word.
_IBAN_CHECK_DIGITS = re.compile(r"[0-9]{2}(?<=(?<![A-Za-z0-9])[A-Za-z]{2}[0-9]{2})")
_IBAN_NEXT = re.compile(r" ?([A-Za-z0-9])")
_ALNUM = re.compile(r"[A-Za-z0-9]")

# Non-ASCII decimal digits, found at C speed, and every digit for the fail-closed path.
_NON_ASCII_DIGIT = re.compile(r"(?![0-9])\d")
_ANY_DIGIT = re.compile(r"\d")
# Any \\uXXXX escape, for the fail-closed path.
_ANY_ESCAPE = re.compile(r"\\u[0-9a-fA-F]{4}")
# A JSON escape: a surrogate pair, one \uXXXX, or a one-character escape such as \" or \\.
_ESCAPE = re.compile(
    r"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|\\u[0-9a-fA-F]{4}|\\.", re.S
)


def _table(**classes: bytes) -> bytes:
    table = bytearray(b"." * 256)
    for target, members in classes.items():
        for byte in members:
            table[byte] = ord(target)
    return bytes(table)


_DIGITS = b"0123456789"
_LETTERS = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_DIGIT_CLASS = _table(d=_DIGITS)  # digits -> "d", separators deleted, the rest "."
_CHAR_CLASS = _table(d=_DIGITS, a=_LETTERS)
_ALNUM_CLASS = _table(a=_DIGITS + _LETTERS)  # letters and digits alike -> "a"
_MASK_DIGITS = bytes.maketrans(_DIGITS, MASK.encode() * 10)

# What masked output looks like: nine or more mask characters (the fewest a 13-digit PAN
# leaves), possibly separated. Tokens cannot contain "*", so valid events never do.
_MASKED = re.compile(rb"\*(?:(?:[ -]|\\u00(?i:20|2d))?\*){8,}")
# Reasons are diagnostics: a long digit run, Luhn or not, is not needed to fix a record
# (its bytes travel with it), and a value cut short ("...") defeats any checksum.
_LONG_DIGITS = re.compile(r"[0-9](?:[ -]?[0-9]){12,}|[0-9](?:[ -]?[0-9]){5,}(?=\.\.\.)")

# --- checks ---------------------------------------------------------------------------

_DOUBLED = (0, 2, 4, 6, 8, 1, 3, 5, 7, 9)


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) check every card number passes; `digits` is ASCII digits."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        digit = ord(char) - 48
        total += _DOUBLED[digit] if position & 1 else digit
    return total % 10 == 0


def iban_ok(iban: str) -> bool:
    """ISO 13616: the registry's length for the country and MOD 97-10 over the
    rearranged text (letters count 10-35)."""
    iban = iban.upper()
    if IBAN_LENGTHS.get(iban[:2]) != len(iban) or not (iban.isascii() and iban.isalnum()):
        return False
    return int("".join(str(int(c, 36)) for c in iban[4:] + iban[:4])) % 97 == 1


class _Hostile(Exception):
    """More candidates than CANDIDATE_BUDGET: mask every digit instead."""


def _pan_positions(match: re.Match[str]) -> list[int] | None:
    """Indices to mask if the match is a card number (or starts with one), else None."""
    text = match.group()
    start = match.start()
    separator = match.group("a") or match.group("b") or match.group("c")
    if separator is None:
        return list(range(start, match.end() - 4)) if luhn_ok(text) else None
    groups = text.split(separator)
    # A trailing group may be something else ("4111-1111-1111-1111-123" ends in a code):
    # try the longest prefix of whole groups first, while it can still be a PAN.
    for keep in range(len(groups), 0, -1):
        digits = "".join(groups[:keep])
        if len(digits) < 13:
            break
        if luhn_ok(digits):
            positions = [
                start + i for i, char in enumerate(text) if char != separator
            ]  # digit indices, in order
            return positions[: len(digits) - 4]
    return None


def _iban_positions(text: str, match: re.Match[str]) -> tuple[int, list[int]] | None:
    """End of the IBAN whose check digits `match` found, and the indices to mask."""
    begin = match.start() - 2
    country = text[begin : begin + 2].upper()
    length = IBAN_LENGTHS.get(country)
    if length is None:
        return None
    positions = list(range(begin, begin + 4))
    pos = match.end()
    while len(positions) < length:
        step = _IBAN_NEXT.match(text, pos)
        if step is None:
            return None
        positions.append(step.start(1))
        pos = step.end()
    if _ALNUM.match(text, pos):
        return None  # longer than this country's IBAN: some other identifier
    if not iban_ok("".join(text[i] for i in positions)):
        return None
    return pos, positions[:-4]


def _find(norm: str, pans: bool = True, ibans: bool = True) -> tuple[list[int], int]:
    """Indices of `norm` (ASCII digits) to mask, and how many values they belong to;
    `pans` and `ibans` say which of the two to look for."""
    positions: list[int] = []
    count = tried = 0
    pos = 0 if pans else len(norm)
    while (match := _PAN.search(norm, pos)) is not None:
        tried += 1
        if tried > CANDIDATE_BUDGET:
            raise _Hostile
        found = _pan_positions(match)
        if found is None:
            # A card number may start at a later group ("1234-4111-1111-1111-1111").
            pos = match.start() + 1
            continue
        positions.extend(found)
        count += 1
        pos = match.end()
    pos = 0 if ibans else len(norm)
    while (match := _IBAN_CHECK_DIGITS.search(norm, pos)) is not None:
        tried += 1
        if tried > CANDIDATE_BUDGET:
            raise _Hostile
        iban = _iban_positions(norm, match)
        if iban is None:
            pos = match.end()
            continue
        pos, found = iban
        positions.extend(found)
        count += 1
    return positions, count


# --- masking text -----------------------------------------------------------------------


def _ascii_digits(text: str) -> str:
    """`text` with every Unicode decimal digit written as its ASCII digit (same length)."""
    return _NON_ASCII_DIGIT.sub(lambda m: str(unicodedata.digit(m.group())), text)


def _masked_at(text: str, positions: list[int]) -> str:
    chars = list(text)
    for i in positions:
        chars[i] = MASK
    return "".join(chars)


def mask_text(text: str) -> tuple[str, int]:
    """`text` with PAN-like and IBAN-like values masked, and how many were masked."""
    if len(text) < 13:  # shorter than any PAN or IBAN
        return text, 0
    norm = text if text.isascii() else _ascii_digits(text)
    try:
        positions, count = _find(norm)
    except _Hostile:
        return _mask_every_digit(text), 1
    return (_masked_at(text, positions), count) if count else (text, 0)


def mask_reason(reason: str) -> str:
    """A dead-letter reason without card or account numbers, nor long digit runs."""
    reason, _ = mask_text(reason)
    norm = reason if reason.isascii() else _ascii_digits(reason)
    spans = [m.span() for m in _LONG_DIGITS.finditer(norm)]
    if not spans:
        return reason
    positions = [i for a, b in spans for i in range(a, b) if norm[i].isdigit()]
    return _masked_at(reason, positions)


def mask_fields(body: dict[str, Any]) -> list[str]:
    """Mask every string value of a decoded body in place (nested lists and objects too);
    returns the masked fields' paths, e.g. `["merchant_id", "products.2"]`.

    Iterative, so a deeply nested value cannot exhaust the stack.
    """
    masked: list[str] = []
    stack: list[tuple[Any, str]] = [(body, "")]
    while stack:
        container, path = stack.pop()
        items = container.items() if isinstance(container, dict) else enumerate(container)
        for key, value in items:
            where = f"{path}{key}"
            if isinstance(value, str):
                clean, count = mask_text(value)
                if count:
                    container[key] = clean
                    masked.append(where)
            elif isinstance(value, (dict, list)):
                stack.append((value, where + "."))
    return sorted(masked)


# --- masking bytes ----------------------------------------------------------------------


def _screen(raw: bytes) -> tuple[bool, bool]:
    """Whether an ASCII record without escapes may hold a PAN, and an IBAN.

    A PAN needs 13 digits in a row once spaces and dashes are removed; an IBAN needs two
    letters followed by two digits, and 15 letters or digits in a row once spaces are
    removed. Each test is a `bytes.translate` and a substring search, so a record that
    holds neither costs about a microsecond and a long run of letters or of digits alone
    never reaches the regular expressions.
    """
    pans = b"ddddddddddddd" in raw.translate(_DIGIT_CLASS, b" -")
    ibans = b"aaaaaaaaaaaaaaa" in raw.translate(_ALNUM_CLASS, b" ") and (
        b"aadd" in raw.translate(_CHAR_CLASS)  # rarely reached: long runs are rare
    )
    return pans, ibans


def _escaped_char(token: str) -> str:
    """What a JSON escape means for detection: a digit as its ASCII digit, space, dash
    and ASCII letters as themselves, anything else as "~" (neither digit nor letter)."""
    if len(token) < 6:  # \" or \\, or a \u cut short (garbage, not JSON)
        return "~"
    units = [int(token[i + 2 : i + 6], 16) for i in range(0, len(token), 6)]
    if len(units) == 2:
        decoded = chr(0x10000 + ((units[0] - 0xD800) << 10) + (units[1] - 0xDC00))
    else:
        decoded = chr(units[0])
    if decoded.isdecimal():
        return str(unicodedata.digit(decoded))
    if decoded in " -" or (decoded.isascii() and decoded.isalpha()):
        return decoded
    return "~"


def _decode_escapes(text: str) -> tuple[str, array, array, array]:
    """`text` with each JSON escape replaced by one character (see `_escaped_char`), and
    where each escape sat: its index in the result, its start and end in `text`."""
    pieces: list[str] = []
    at_norm, at_start, at_end = array("q"), array("q"), array("q")
    last = 0
    norm_length = 0
    for match in _ESCAPE.finditer(text):
        start, end = match.span()
        pieces.append(text[last:start])
        pieces.append(_escaped_char(match.group()))
        norm_length += start - last
        at_norm.append(norm_length)
        at_start.append(start)
        at_end.append(end)
        norm_length += 1
        last = end
    pieces.append(text[last:])
    return "".join(pieces), at_norm, at_start, at_end


def _masked_through_escapes(
    text: str, positions: list[int], at_norm: array, at_start: array, at_end: array
) -> str:
    """Mask the original characters (or whole escapes) behind normalised indices."""
    pieces = []
    last = 0
    for i in sorted(set(positions)):
        k = bisect_right(at_norm, i) - 1
        if k >= 0 and at_norm[k] == i:
            start, end = at_start[k], at_end[k]
        else:
            # Characters between two escapes map one to one.
            start = i if k < 0 else at_end[k] + (i - at_norm[k] - 1)
            end = start + 1
        pieces.append(text[last:start])
        pieces.append(MASK)
        last = end
    pieces.append(text[last:])
    return "".join(pieces)


def _mask_every_digit(text: str) -> str:
    """Fail closed, for hostile records only: every digit and every \\u escape (which may
    be a digit) becomes the mask character, at C speed."""
    return _ANY_DIGIT.sub(MASK, _ANY_ESCAPE.sub(MASK, text))


def mask_raw(raw: bytes) -> tuple[bytes, int]:
    """The record's bytes with PAN-like and IBAN-like values masked, and how many.

    Undecodable bytes survive unchanged (surrogateescape), so apart from the masked
    characters the result is byte-identical to `raw`.
    """
    if len(raw) < 13:  # shorter than any PAN or IBAN, even written compactly
        return raw, 0
    if raw.isascii() and b"\\" not in raw:
        pans, ibans = _screen(raw)
        if not (pans or ibans):
            return raw, 0
        try:
            positions, count = _find(raw.decode("ascii"), pans, ibans)
        except _Hostile:
            return raw.translate(_MASK_DIGITS), 1
        if not count:
            return raw, 0
        out = bytearray(raw)
        for i in positions:
            out[i] = 42  # "*"
        return bytes(out), count
    text = raw.decode("utf-8", "surrogateescape")
    if text.count("\\") > ESCAPE_BUDGET:
        return _mask_every_digit(text).encode("utf-8", "surrogateescape"), 1
    norm, at_norm, at_start, at_end = _decode_escapes(_ascii_digits(text))
    try:
        positions, count = _find(norm)
    except _Hostile:
        return _mask_every_digit(text).encode("utf-8", "surrogateescape"), 1
    if not count:
        return raw, 0
    masked = _masked_through_escapes(text, positions, at_norm, at_start, at_end)
    return masked.encode("utf-8", "surrogateescape"), count


def was_masked(raw: bytes | None) -> bool:
    """True if `raw` carries a masked value (nine or more mask characters in a run)."""
    return raw is not None and _MASKED.search(raw) is not None


# --- the decoder's hook -------------------------------------------------------------------


def _masked_origin(origin: Origin) -> tuple[Origin, int]:
    if origin.key is None:
        return origin, 0
    key, count = mask_raw(origin.key)
    return (replace(origin, key=key), count) if count else (origin, 0)


def protect(result: Event | DeadLetter) -> Event | DeadLetter:
    """Mask card and account numbers in what the decoder returns, before anything sees it.

    An event whose `customer_id` or `event_id` (or message key) holds one is dead-lettered
    as `sensitive_identifier`: masking those would merge customers or turn distinct
    events into duplicates.
    """
    if isinstance(result, DeadLetter):
        return protect_dead_letter(result)
    origin, key_count = _masked_origin(result.origin)
    raw, raw_count = mask_raw(result.raw)
    if not raw_count and not key_count:
        return result  # every string of the body is in the raw bytes: nothing to mask
    fields = mask_fields(result.body)
    identity = [f for f in IDENTITY_FIELDS if f in fields] or (
        ["the message key"] if key_count else []
    )
    if identity:
        return DeadLetter(
            "dead_lettered",
            SENSITIVE_IDENTIFIER,
            f"{' and '.join(identity)} {'holds' if len(identity) == 1 else 'hold'} a card "
            "or account number (masked here); identifiers must be opaque tokens",
            origin,
            raw,
        )
    result.raw = raw
    return result


def protect_dead_letter(letter: DeadLetter) -> DeadLetter:
    """The dead letter with its bytes, key and reason masked (the same object if clean)."""
    origin, key_count = _masked_origin(letter.origin)
    raw, raw_count = mask_raw(letter.raw) if letter.raw is not None else (None, 0)
    reason = mask_reason(letter.reason)
    if not key_count and not raw_count and reason == letter.reason:
        return letter
    return replace(letter, origin=origin, raw=raw, reason=reason)
