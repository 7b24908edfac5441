"""Customers who leave: a drift of weeks, then a closure or plain silence.

During the drift a churner logs in and spends less, complains more (and more severely),
answers surveys badly, stops receiving salary (it moved to the new bank) and moves money
out to another bank. Most then ask to close, and the account is closed a few days later;
the rest simply go dormant. Either way nothing more is heard from them.
"""

from __future__ import annotations

from random import Random
from typing import TYPE_CHECKING, Any

from crmstream.simulator import catalogue as cat
from crmstream.simulator.clock import DAY, HOUR, iso_seconds

if TYPE_CHECKING:
    from crmstream.simulator.config import SimEvent
    from crmstream.simulator.records import Block

DORMANT_SHARE = 0.3
CLOSURE_CHANNELS = ("branch", "call_centre", "web")


def _local_hours(first: int, last: int) -> tuple[int, ...]:
    return tuple((hour - cat.LOCAL_UTC_OFFSET_HOURS) % 24 for hour in range(first, last))


_OFFICE = _local_hours(9, 17)  # closure requests: branch and call-centre hours
_WAKING = _local_hours(8, 22)  # large transfers are made by people, not batch jobs
# How much of each everyday activity is left at full drift (catalogue.ACTIVITIES order),
# and how many extra complaints, support contacts and surveys per day it brings.
_REMAINING = (0.15, 0.2, 0.25, 0.1, 0.3, 1.0, 0.5, 0.3, 1.0, 1.0, 1.0)
_EXTRA = (0, 0, 0, 0, 0, 0.06, 0, 0, 0, 0.06, 0.04)


def _at(rng: Random, t: float, hours: tuple[int, ...]) -> float:
    """A moment on the same UTC day as `t`, in one of `hours`."""
    return t - t % DAY + rng.choice(hours) * HOUR + rng.random() * HOUR


class ChurnPlan:
    """When and how one customer leaves; observes its own closure being emitted."""

    __slots__ = (
        "closed_at",
        "closure_emitted",
        "customer_id",
        "dormant",
        "drift_start",
        "length",
        "new_bank",
        "salary_stop",
        "silent_from",
        "transfers",
    )

    def __init__(self, customer_id: str, rng: Random, start: float, end: float) -> None:
        self.customer_id = customer_id
        self.drift_start = start + max(0.25 * DAY, rng.uniform(0.03, 0.5) * (end - start))
        self.length = rng.uniform(7, 21) * DAY
        self.dormant = rng.random() < DORMANT_SHARE
        drift_end = self.drift_start + self.length
        self.silent_from = drift_end if self.dormant else _at(rng, drift_end, _OFFICE)
        self.closed_at = self.silent_from + rng.uniform(2, 7) * DAY
        self.new_bank = rng.choice(cat.OTHER_BANKS)
        self.salary_stop = self.drift_start + rng.uniform(0.35, 0.6) * self.length
        self.transfers = tuple(
            sorted(
                _at(rng, self.drift_start + rng.uniform(0.55, 0.95) * self.length, _WAKING)
                for _ in range(rng.randint(1, 2))
            )
        )
        self.closure_emitted: float | None = None

    def progress(self, t: float) -> float:
        """0 before the drift, rising to 1 at its end."""
        if t <= self.drift_start:
            return 0.0
        return min(1.0, (t - self.drift_start) / self.length)

    def observe(self, event: SimEvent) -> None:
        self.closure_emitted = event.event_time

    def fact(self, now: float) -> dict[str, Any] | None:
        """The ground-truth line, as far as the run got by `now`; None if not yet begun."""
        if self.drift_start > now:
            return None
        if self.closure_emitted is not None:
            closure: str | None = iso_seconds(self.closure_emitted)
        elif self.dormant and self.silent_from <= now:
            closure = "dormant"
        else:
            closure = None  # still drifting, or closure falls after the run
        return {
            "fact": "churner",
            "customer_id": self.customer_id,
            "drift_start": iso_seconds(self.drift_start),
            "closure": closure,
            "silent_from": iso_seconds(self.silent_from),
            "ending": "dormant" if self.dormant else "closure",
        }


def drift_rates(rates: tuple[float, ...], progress: float) -> tuple[float, ...]:
    """Everyday activity rates of a customer who is `progress` of the way out."""
    return tuple(
        rate * (1.0 - (1.0 - remaining) * progress) + extra * progress
        for rate, remaining, extra in zip(rates, _REMAINING, _EXTRA, strict=True)
    )


def leaving_events(block: Block, plan: ChurnPlan, day_start: float, day_end: float) -> None:
    """The planted milestones of a churn that fall in this day."""
    c = block.c
    rng = block.rng
    for t in plan.transfers:
        if day_start <= t < day_end and t < plan.silent_from:
            amount = c.income * rng.uniform(1.5, 6.0)
            block.transaction(
                t, round(amount, 2), "transfer_out", "debit", None, None,
                c.home, c.currency, rng.choice(c.devices), plan.new_bank,
            )  # fmt: skip
    if not plan.dormant and day_start <= plan.silent_from < day_end:
        block.interaction(
            plan.silent_from, rng.choice(CLOSURE_CHANNELS), "closure_request",
            tags=("closure_request",),
        )  # fmt: skip
        block.outcome(plan.closed_at, "account_closed", tags=(plan,))
