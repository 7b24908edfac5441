"""Fraud episodes: account takeover and card testing.

*Account takeover*: the fraudster resets the password, logs in from a new device, then
spends large sums online in a foreign country with that device. *Card testing*: a stolen
card number is tried with a burst of tiny online payments at unfamiliar merchants, often
followed by one larger payment. The customer reports it, and every fraudulent payment is
confirmed well after it happened (at least `CONFIRMATION_DELAY_MIN`, which is longer than
any delivery delay, so a confirmation never overtakes its transaction in the stream).
"""

from __future__ import annotations

from random import Random
from typing import TYPE_CHECKING, Any

from crmstream.simulator import catalogue as cat
from crmstream.simulator.clock import DAY, HOUR, MINUTE, iso_seconds
from crmstream.simulator.records import new_device

if TYPE_CHECKING:
    from crmstream.simulator.config import SimEvent
    from crmstream.simulator.records import Block

CONFIRMATION_DELAY_MIN = 8 * HOUR


class FraudEpisode:
    """One planted episode; records which of its transactions were actually emitted."""

    __slots__ = ("customer_id", "device_id", "emitted", "kind", "start")

    def __init__(self, customer_id: str, rng: Random, start: float, end: float) -> None:
        self.customer_id = customer_id
        self.kind = "ato" if rng.random() < 0.5 else "card_testing"
        self.start = start + rng.uniform(0.1, 0.9) * (end - start)
        self.device_id: str | None = None
        self.emitted: dict[str, float] = {}  # transaction event id -> event time

    def observe(self, event: SimEvent) -> None:
        self.emitted[event.value["event_id"]] = event.event_time

    def fact(self) -> dict[str, Any] | None:
        """The ground-truth line; None if none of its transactions was emitted."""
        if not self.emitted:
            return None
        return {
            "fact": "fraud_episode",
            "customer_id": self.customer_id,
            "type": self.kind,
            "start": iso_seconds(self.start),
            "end": iso_seconds(max(self.emitted.values())),
            "transaction_ids": sorted(self.emitted, key=self.emitted.__getitem__),
            "device_id": self.device_id,
        }


def episode_events(block: Block, episode: FraudEpisode, day_start: float, day_end: float) -> None:
    """The whole episode, generated on the day it starts."""
    if not day_start <= episode.start < day_end:
        return
    if episode.kind == "ato":
        payments, end = _takeover(block, episode)
    else:
        payments, end = _card_testing(block, episode)
    _confirm(block, payments, end)


def _takeover(block: Block, episode: FraudEpisode) -> tuple[list[str], float]:
    rng = block.rng
    c = block.c
    device = new_device(rng)
    episode.device_id = device
    channel = rng.choice(("web", "mobile_app"))
    t = episode.start
    block.interaction(t, channel, "password_reset", {"device_id": device})
    t += rng.uniform(1, 15) * MINUTE
    block.interaction(t, channel, "login", {"device_id": device})
    country = rng.choice(cat.FRAUD_COUNTRIES)
    currency = cat.currency_of(country)
    payments = []
    for _ in range(rng.randint(2, 8)):
        t += rng.uniform(2, 40) * MINUTE
        merchant = block.world.merchants.unfamiliar(rng, country, cat.CASHOUT_CATEGORIES)
        amount = round(max(rng.uniform(300, 2500), c.spend * rng.uniform(8, 30)), 2)
        event_id = block.transaction(
            t, amount, "card_online", "debit", merchant.mcc, merchant.merchant_id,
            country, currency, device, None, tags=(episode,),
        )  # fmt: skip
        if event_id is not None:
            payments.append(event_id)
    return payments, t


def _card_testing(block: Block, episode: FraudEpisode) -> tuple[list[str], float]:
    rng = block.rng
    merchants = block.world.merchants
    country = rng.choice(cat.FRAUD_COUNTRIES)
    t = episode.start
    payments = []

    def pay(amount: float, categories: tuple[cat.Category, ...]) -> None:
        merchant = merchants.unfamiliar(rng, country, categories)
        event_id = block.transaction(
            t, amount, "card_online", "debit", merchant.mcc, merchant.merchant_id,
            merchant.country, merchant.currency, None, None, tags=(episode,),
        )  # fmt: skip
        if event_id is not None:
            payments.append(event_id)

    for _ in range(rng.randint(5, 30)):
        pay(round(rng.uniform(0.5, 2.0), 2), cat.TESTING_CATEGORIES)
        t += rng.uniform(3, 45)
    if rng.random() < 0.5:
        t += rng.uniform(5, 60) * MINUTE
        pay(round(rng.uniform(150, 900), 2), cat.CASHOUT_CATEGORIES)
    return payments, t


def _confirm(block: Block, payments: list[str], end: float) -> None:
    """The customer calls about it; the bank confirms each payment as fraud later."""
    rng = block.rng
    reported = end + rng.uniform(1, 30) * HOUR
    block.interaction(
        reported, rng.choice(("call_centre", "mobile_app", "branch")), "support_contact"
    )
    confirmed = max(end + CONFIRMATION_DELAY_MIN, reported + rng.uniform(1 * HOUR, 2 * DAY))
    for transaction_id in payments:
        block.outcome(confirmed, "fraud_confirmed", transaction_id, tags=("fraud_confirmed",))
        confirmed += rng.uniform(1, 20)
