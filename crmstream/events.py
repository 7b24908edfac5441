"""Event schemas, version 1, for the four input topics.

These definitions are the source of truth; `crmstream schemas` writes them as JSON Schema
files to `config/schemas/`, and a test keeps those files in step with this module.

Every event carries `schema_version`, `event_id` (unique per topic, used to apply an event
once), `customer_id` (an opaque token, never a name or account number) and `event_time`
(ISO 8601 with a timezone). Unknown fields are rejected so that a producer's typo is seen
at once rather than silently ignored.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Literal

from pydantic import AwareDatetime, ConfigDict, Field, StringConstraints, TypeAdapter
from typing_extensions import NotRequired, TypedDict

SCHEMA_VERSION = 1

Token = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
]
CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
CountryCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")]
MerchantCategory = Annotated[str, StringConstraints(pattern=r"^[0-9]{4}$")]
Amount = Annotated[float, Field(gt=0, allow_inf_nan=False)]

Channel = Literal["mobile_app", "web", "branch", "call_centre", "chatbot", "email", "social"]
CHANNELS: tuple[str, ...] = Channel.__args__  # type: ignore[attr-defined]

TransactionKind = Literal[
    "card_present",
    "card_online",
    "atm",
    "transfer_in",
    "transfer_out",
    "salary",
    "bill_payment",
    "direct_debit",
]
InteractionType = Literal[
    "login",
    "product_view",
    "support_contact",
    "complaint",
    "survey",
    "offer_impression",
    "offer_accepted",
    "offer_declined",
    "password_reset",
    "closure_request",
]
OutcomeType = Literal["fraud_confirmed", "fraud_false_alarm", "account_closed", "offer_converted"]
Segment = Literal["mass", "affluent", "private", "small_business", "student"]

_strict = ConfigDict(extra="forbid", str_strip_whitespace=False)


class Transaction(TypedDict):
    """A card or account movement, keyed by `customer_id`."""

    __pydantic_config__ = _strict  # type: ignore[misc]

    schema_version: Literal[1]
    event_id: Token
    customer_id: Token
    account_id: Token
    event_time: AwareDatetime
    amount: Amount
    currency: CurrencyCode
    direction: Literal["debit", "credit"]
    kind: TransactionKind
    merchant_category: MerchantCategory | None
    merchant_id: Token | None
    country: CountryCode
    device_id: Token | None
    counterparty_bank: Token | None


class Interaction(TypedDict):
    """A contact on any channel; optional fields depend on `type`."""

    __pydantic_config__ = _strict  # type: ignore[misc]

    schema_version: Literal[1]
    event_id: Token
    customer_id: Token
    event_time: AwareDatetime
    channel: Channel
    type: InteractionType
    device_id: NotRequired[Token | None]
    product: NotRequired[Token | None]
    offer_id: NotRequired[Token | None]
    severity: NotRequired[Annotated[int, Field(ge=1, le=5)] | None]
    nps: NotRequired[Annotated[int, Field(ge=0, le=10)] | None]


class Outcome(TypedDict):
    """A label that arrives later: fraud confirmation, account closure, offer conversion."""

    __pydantic_config__ = _strict  # type: ignore[misc]

    schema_version: Literal[1]
    event_id: Token
    customer_id: Token
    event_time: AwareDatetime
    type: OutcomeType
    transaction_id: NotRequired[Token | None]
    offer_id: NotRequired[Token | None]


class Customer(TypedDict):
    """Reference data for one customer; the record with the latest `event_time` wins."""

    __pydantic_config__ = _strict  # type: ignore[misc]

    schema_version: Literal[1]
    event_id: Token
    customer_id: Token
    event_time: AwareDatetime
    segment: Segment
    rm_id: Token
    branch_id: Token
    products: list[Token]
    marketing_consent: bool
    joined_on: date
    birth_year: NotRequired[Annotated[int, Field(ge=1900, le=2100)] | None]


ADAPTERS: dict[str, TypeAdapter] = {
    "transactions": TypeAdapter(Transaction),
    "interactions": TypeAdapter(Interaction),
    "outcomes": TypeAdapter(Outcome),
    "customers": TypeAdapter(Customer),
}

TOPIC_KINDS: tuple[str, ...] = tuple(ADAPTERS)


def json_schema(kind: str) -> dict:
    """The JSON Schema document for one topic's events."""
    schema = ADAPTERS[kind].json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://crmstream.example/schemas/{kind}.v{SCHEMA_VERSION}.schema.json"
    return schema
