"""Building event values as plain dicts, exactly as they are produced.

Validation with pydantic would cost more than generating the event, so values are built
by hand to match `crmstream.events` v1; the tests check every one of them against the
schemas instead.
"""

from __future__ import annotations

from random import Random
from typing import TYPE_CHECKING, Any

from crmstream.simulator.clock import iso

if TYPE_CHECKING:
    from crmstream.simulator.population import Customer, World

# A tag travels with an event until it is yielded: a string is a counter name for the
# ground-truth summary; anything else is an object with an `observe(event)` method.
Tags = tuple[Any, ...]
Item = tuple[int, str, dict[str, Any], Tags]  # (event time in ms, kind, value, tags)


def new_device(rng: Random) -> str:
    """A device id not seen before (40 random bits make a clash negligible)."""
    return f"d{rng.getrandbits(40):010x}"


def customer_record(c: Customer, ms: int) -> dict[str, Any]:
    """The customer's reference record as it stands now."""
    c.serial += 1
    return {
        "schema_version": 1,
        "event_id": f"P{c.tag}{c.serial}",
        "customer_id": c.cid,
        "event_time": iso(ms),
        "segment": c.segment,
        "rm_id": c.rm_id,
        "branch_id": c.branch_id,
        "products": list(c.products),
        "marketing_consent": c.consent,
        "joined_on": c.joined_on,
        "birth_year": c.birth_year,
    }


class Block:
    """Collects one customer's events generated for one simulated day.

    Events may be scheduled beyond the day (an outcome days later); only events outside
    the simulated period are dropped, and the builders then return None.
    """

    __slots__ = ("c", "items", "rng", "world")

    def __init__(self, c: Customer, rng: Random, world: World) -> None:
        self.c = c
        self.rng = rng
        self.world = world
        self.items: list[Item] = []

    def _stamp(self, t: float) -> int | None:
        world = self.world
        if t < world.start or t >= world.end:
            return None
        return round(t * 1000)

    def transaction(
        self,
        t: float,
        amount: float,
        kind: str,
        direction: str,
        mcc: str | None,
        merchant: str | None,
        country: str,
        currency: str,
        device: str | None,
        bank: str | None,
        tags: Tags = (),
    ) -> str | None:
        """Add a transaction; returns its event id (None when outside the period)."""
        ms = self._stamp(t)
        if ms is None:
            return None
        c = self.c
        c.serial += 1
        event_id = f"T{c.tag}{c.serial}"
        self.items.append(
            (
                ms,
                "transactions",
                {
                    "schema_version": 1,
                    "event_id": event_id,
                    "customer_id": c.cid,
                    "account_id": c.account_id,
                    "event_time": iso(ms),
                    "amount": amount,
                    "currency": currency,
                    "direction": direction,
                    "kind": kind,
                    "merchant_category": mcc,
                    "merchant_id": merchant,
                    "country": country,
                    "device_id": device,
                    "counterparty_bank": bank,
                },
                tags,
            )
        )
        return event_id

    def interaction(
        self,
        t: float,
        channel: str,
        kind: str,
        extra: dict[str, Any] | None = None,
        tags: Tags = (),
    ) -> bool:
        """Add an interaction; `extra` holds the optional fields its type uses."""
        ms = self._stamp(t)
        if ms is None:
            return False
        c = self.c
        c.serial += 1
        value = {
            "schema_version": 1,
            "event_id": f"I{c.tag}{c.serial}",
            "customer_id": c.cid,
            "event_time": iso(ms),
            "channel": channel,
            "type": kind,
        }
        if extra:
            value.update(extra)
        self.items.append((ms, "interactions", value, tags))
        return True

    def outcome(
        self,
        t: float,
        kind: str,
        transaction_id: str | None = None,
        offer_id: str | None = None,
        tags: Tags = (),
    ) -> bool:
        ms = self._stamp(t)
        if ms is None:
            return False
        c = self.c
        c.serial += 1
        value: dict[str, Any] = {
            "schema_version": 1,
            "event_id": f"O{c.tag}{c.serial}",
            "customer_id": c.cid,
            "event_time": iso(ms),
            "type": kind,
        }
        if transaction_id is not None:
            value["transaction_id"] = transaction_id
        if offer_id is not None:
            value["offer_id"] = offer_id
        self.items.append((ms, "outcomes", value, tags))
        return True

    def customer_update(self, t: float) -> bool:
        """Re-send the customer's record after a change made to it at `t`."""
        ms = self._stamp(t)
        if ms is None:
            return False
        self.items.append((ms, "customers", customer_record(self.c, ms), ("customer_update",)))
        return True
