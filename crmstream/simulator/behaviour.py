"""One customer's day: everyday activity, income and bills, trips, offers, life changes,
plus the churn and fraud milestones planted for that day.

Everyday activities are a Poisson number of events per day with an hour-of-day rhythm;
which activity each event is follows the customer's own rates, bent by churn drift.
"""

from __future__ import annotations

from collections.abc import Collection
from itertools import accumulate
from math import exp, floor
from random import Random
from typing import TYPE_CHECKING

from crmstream.simulator import catalogue as cat
from crmstream.simulator.churn import drift_rates, leaving_events
from crmstream.simulator.clock import (
    DAY,
    HOUR,
    MINUTE,
    calendar_day,
    hour_table,
    time_in_day,
)
from crmstream.simulator.fraud import episode_events
from crmstream.simulator.population import next_trip
from crmstream.simulator.records import Block, Item, new_device

if TYPE_CHECKING:
    from crmstream.simulator.population import Customer, World

_SHOP = hour_table(cat.SHOPPING_HOURS)
_SCREEN = hour_table(cat.SCREEN_HOURS)
_OFFICE = hour_table(cat.OFFICE_HOURS)
_ACTIVITY = tuple(range(len(cat.ACTIVITIES)))
_RHYTHM = {
    "card_present": _SHOP,
    "card_online": _SCREEN,
    "atm": _SHOP,
    "login": _SCREEN,
    "product_view": _SCREEN,
    "support_contact": _OFFICE,
    "transfer_out": _SCREEN,
    "transfer_in": _OFFICE,
    "offer": _SCREEN,
    "complaint": _OFFICE,
    "survey": _SCREEN,
}
_SUPPORT_CUM = tuple(tuple(accumulate(weights)) for weights in cat.HABIT_SUPPORT_WEIGHTS)
_ATM_NOTES = (20, 50, 100, 200, 300, 500)
_BUSIEST_WEEKDAY = max(cat.WEEKDAY_SHOPPING)
LEAVING = 0.2  # drift progress from which a churner's complaints and surveys turn sour
_FALSE_ALARM_CHANCE = 0.05  # of unusual legitimate payments, flagged and then cleared
_PRODUCT_OFFERS = frozenset(cat.PRODUCT_OFFERS)
_ACCEPT_IF_NEEDED = 0.3
_ACCEPT_OTHERWISE = 0.012
_DECLINE = 0.3
_SEGMENT_TASTE = {"student": 0.8, "private": 0.7}
_CONVERTS = 0.85
# Chances per day of a record change that nothing else causes.
_CONSENT_WITHDRAWN = 0.0007
_RM_CHANGED = 0.0004
_NEW_PHONE = 0.002


def acceptance_chance(
    offer_id: str, needs: Collection[str], segment: str, consent: bool, leaving: bool
) -> float:
    """Probability that a customer accepts `offer_id` once shown it: the planted truth.

    A product offer is welcome when it meets one of the customer's hidden `needs` and
    rarely otherwise; a customer who is `leaving` (a churner past `LEAVING` of its drift
    that day, see `leaving_on`) turns product offers down but is drawn to retention ones.
    Some segments are choosier, and without marketing `consent` (the offer was seen on a
    service screen) every chance is lower. Every simulated answer follows this chance, so
    a policy's expected acceptance can be computed exactly rather than estimated.

    >>> acceptance_chance("savings", ("savings",), "mass", True, False)
    0.3
    >>> acceptance_chance("savings", ("savings",), "mass", True, True)  # leaving: no
    0.003
    """
    if offer_id in _PRODUCT_OFFERS:
        if leaving:
            return _ACCEPT_OTHERWISE / 4
        chance = _ACCEPT_IF_NEEDED if offer_id in needs else _ACCEPT_OTHERWISE
    else:
        chance = 0.12 if leaving else 0.03
    return chance * _SEGMENT_TASTE.get(segment, 1.0) * (1.0 if consent else 0.4)


def leaving_on(c: Customer, at: float, start: float) -> bool:
    """Whether customer `c` is leaving on its simulated day that holds the moment `at`.

    `start` is the run's start. A customer's days begin at its own offset after midnight,
    and whether a churner is leaving is decided once per day, at the day's middle, as
    `Day.run` does.
    """
    plan = c.churn
    if plan is None:
        return False
    day_start = start + c.offset + floor((at - start - c.offset) / DAY) * DAY
    return plan.progress(day_start + DAY / 2) >= LEAVING


def _poisson(rng: Random, mean: float) -> int:
    """Knuth's method: fine for the few events per day a customer has."""
    if mean > 30.0:
        return max(0, round(rng.gauss(mean, mean**0.5)))
    limit = exp(-mean)
    count = 0
    product = rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


class Day:
    """Generates one customer's events for the 24 hours from `start`."""

    __slots__ = ("block", "c", "leaving", "merchants", "rng", "start", "trip")

    def __init__(self, c: Customer, rng: Random, world: World, start: float) -> None:
        self.block = Block(c, rng, world)
        self.c = c
        self.rng = rng
        self.merchants = world.merchants
        self.start = start
        while c.trip is not None and c.trip[1] <= start:
            c.trip = next_trip(rng, c, c.trip[1])
        self.trip = c.trip if c.trip is not None and c.trip[0] < start + DAY else None
        self.leaving = False

    def run(self) -> list[Item]:
        c = self.c
        rng = self.rng
        start = self.start
        end = start + DAY
        rates = c.rates
        plan = c.churn
        if plan is not None:
            progress = plan.progress(start + DAY / 2)
            if progress > 0.0:
                rates = drift_rates(rates, progress)
                self.leaving = progress >= LEAVING
        silent = c.silent_from
        cum = list(accumulate(rates))
        count = _poisson(rng, cum[-1] * c.activity)
        if count:
            for activity in rng.choices(_ACTIVITY, cum_weights=cum, k=count):
                t = time_in_day(rng, _RHYTHMS[activity], start)
                if t < silent:
                    _HANDLERS[activity](self, t)
        self._scheduled(end, plan.salary_stop if plan is not None else silent)
        if plan is not None:
            leaving_events(self.block, plan, start, end)
        if c.fraud is not None:
            episode_events(self.block, c.fraud, start, end)
        if end < silent:
            self._life_changes()
        return self.block.items

    # -- everyday activities, in catalogue.ACTIVITIES order --------------------------

    def card_present(self, t: float) -> None:
        rng = self.rng
        if rng.random() * _BUSIEST_WEEKDAY > cat.WEEKDAY_SHOPPING[calendar_day(int(t // DAY))[1]]:
            return
        c = self.c
        trip = self.trip
        if trip is not None and trip[0] <= t < trip[1]:
            merchant = self.merchants.travel(rng, trip[2])
            unusual = 3.0  # abroad, a smaller surprise is enough to hold a payment
        else:
            favourites = c.merchants
            merchant = favourites[int(len(favourites) * rng.random() ** 2.2)]
            unusual = 6.0
        amount = self._amount(c.spend * merchant.price)
        event_id = self.block.transaction(
            t, amount, "card_present", "debit", merchant.mcc, merchant.merchant_id,
            merchant.country, merchant.currency, None, None,
        )  # fmt: skip
        self._maybe_false_alarm(t, event_id, amount, unusual)

    def card_online(self, t: float) -> None:
        c = self.c
        rng = self.rng
        merchant = c.online[int(len(c.online) * rng.random() ** 1.8)]
        device = rng.choice(c.devices) if rng.random() < 0.6 else None
        amount = self._amount(c.spend * merchant.price)
        event_id = self.block.transaction(
            t, amount, "card_online", "debit", merchant.mcc, merchant.merchant_id,
            merchant.country, merchant.currency, device, None,
        )  # fmt: skip
        self._maybe_false_alarm(t, event_id, amount, 6.0)

    def atm(self, t: float) -> None:
        c = self.c
        rng = self.rng
        trip = self.trip
        country = trip[2] if trip is not None and trip[0] <= t < trip[1] else c.home
        reach = min(len(_ATM_NOTES), 1.5 + c.spend / 15)
        amount = float(_ATM_NOTES[int(reach * rng.random())])
        self.block.transaction(
            t, amount, "atm", "debit", cat.ATM_MCC, self.merchants.atm(rng, country),
            country, cat.currency_of(country), None, None,
        )  # fmt: skip

    def login(self, t: float) -> None:
        channel, device = self._screen()
        self.block.interaction(t, channel, "login", {"device_id": device})

    def product_view(self, t: float) -> None:
        rng = self.rng
        needs = self.c.needs
        if needs and rng.random() < 0.6:
            product = rng.choice(needs)
        else:
            product = rng.choice(cat.PRODUCT_OFFERS)
        channel, device = self._screen()
        self.block.interaction(
            t, channel, "product_view", {"product": product, "device_id": device}
        )

    def support_contact(self, t: float) -> None:
        self.block.interaction(t, self._contact_channel(), "support_contact")

    def transfer_out(self, t: float) -> None:
        c = self.c
        rng = self.rng
        amount = c.income * rng.lognormvariate(-2.2, 0.8)
        device = rng.choice(c.devices) if rng.random() < 0.7 else None
        bank = cat.OWN_BANK if rng.random() < 0.6 else None
        self.block.transaction(
            t, round(amount + 1.0, 2), "transfer_out", "debit", None, None,
            c.home, c.currency, device, bank,
        )  # fmt: skip

    def transfer_in(self, t: float) -> None:
        c = self.c
        rng = self.rng
        amount = c.income * rng.lognormvariate(-2.0, 0.9)
        self.block.transaction(
            t, round(amount + 1.0, 2), "transfer_in", "credit", None, None,
            c.home, c.currency, None, rng.choice((*cat.OTHER_BANKS, cat.OWN_BANK)),
        )  # fmt: skip

    def offer(self, t: float) -> None:
        """An impression, and sometimes an answer; acceptance follows the hidden needs."""
        c = self.c
        rng = self.rng
        if not c.consent and rng.random() < 0.6:
            return  # without consent only service screens show offers
        if rng.random() < 0.12:
            offer_id = rng.choice(cat.RETENTION_OFFERS)
        else:
            choices = [offer for offer in cat.PRODUCT_OFFERS if offer not in c.products]
            if not choices:
                return
            offer_id = rng.choice(choices)
        screen, _ = self._screen()
        channel = "email" if c.consent and rng.random() < 0.35 else screen
        block = self.block
        block.interaction(
            t, channel, "offer_impression", {"offer_id": offer_id}, ("offer_impression",)
        )
        answer = rng.random()
        chance = acceptance_chance(offer_id, c.needs, c.segment, c.consent, self.leaving)
        if answer < chance:
            self._accept(t + rng.uniform(0.5, 120) * MINUTE, screen, offer_id)
        elif answer < chance + _DECLINE:
            block.interaction(
                t + rng.uniform(0.2, 60) * MINUTE, screen, "offer_declined",
                {"offer_id": offer_id}, ("offer_declined",),
            )  # fmt: skip

    def complaint(self, t: float) -> None:
        rng = self.rng
        cum = cat.SEVERITY_CUM_LEAVING if self.leaving else cat.SEVERITY_CUM_CONTENT
        severity = rng.choices(cat.SEVERITY, cum_weights=cum)[0]
        extra: dict[str, object] = {"severity": severity}
        if rng.random() < 0.5:
            extra["product"] = rng.choice(self.c.products)
        self.block.interaction(t, self._contact_channel(), "complaint", extra)

    def survey(self, t: float) -> None:
        rng = self.rng
        cum = cat.NPS_CUM_LEAVING if self.leaving else cat.NPS_CUM_CONTENT
        nps = rng.choices(cat.NPS, cum_weights=cum)[0]
        channel = "email" if rng.random() < 0.5 else "mobile_app"
        self.block.interaction(t, channel, "survey", {"nps": nps})

    # -- helpers -------------------------------------------------------------------------

    def _amount(self, mean: float) -> float:
        return round(max(0.5, mean * self.rng.lognormvariate(0.0, 0.55)), 2)

    def _screen(self) -> tuple[str, str]:
        """A channel the customer logs in on, and the device they use there."""
        c = self.c
        rng = self.rng
        channel = "mobile_app" if rng.random() < c.app_share else "web"
        return channel, rng.choice(c.devices)

    def _contact_channel(self) -> str:
        return self.rng.choices(cat.SUPPORT_CHANNELS, cum_weights=_SUPPORT_CUM[self.c.habit])[0]

    def _maybe_false_alarm(
        self, t: float, event_id: str | None, amount: float, ratio: float
    ) -> None:
        """An unusual but genuine payment is sometimes held, checked and cleared."""
        if event_id is None or amount < ratio * self.c.spend:
            return
        rng = self.rng
        if rng.random() < _FALSE_ALARM_CHANCE:
            self.block.outcome(
                t + rng.uniform(0.5 * HOUR, 2 * DAY), "fraud_false_alarm", event_id,
                tags=("fraud_false_alarm",),
            )  # fmt: skip

    def _accept(self, t: float, channel: str, offer_id: str) -> None:
        """Acceptance, then (usually) conversion and, for a product, the new record."""
        c = self.c
        rng = self.rng
        block = self.block
        is_product = offer_id in _PRODUCT_OFFERS
        if is_product and t <= c.change_until:
            return  # one record change at a time keeps re-sent records in order
        block.interaction(t, channel, "offer_accepted", {"offer_id": offer_id}, ("offer_accepted",))
        if rng.random() >= _CONVERTS:
            return
        if not is_product:
            converted = t + rng.uniform(1 * HOUR, 2 * DAY)
            block.outcome(
                converted, "offer_converted", offer_id=offer_id, tags=("offer_converted",)
            )
            return
        converted = t + rng.uniform(2 * HOUR, 5 * DAY)
        c.products.append(offer_id)
        block.outcome(converted, "offer_converted", offer_id=offer_id, tags=("offer_converted",))
        c.change_until = converted + MINUTE
        block.customer_update(c.change_until)

    def _scheduled(self, end: float, income_stop: float) -> None:
        """Salary or allowance, monthly bills and any one-off windfall in this day."""
        c = self.c
        rng = self.rng
        block = self.block
        start = self.start
        silent = c.silent_from
        first = int(start // DAY)
        for day in (first, first + 1):
            day_of_month = calendar_day(day)[0]
            midnight = day * DAY
            if day_of_month == c.salary_day:
                t = midnight + c.salary_sec
                if start <= t < end and t < income_stop:
                    amount = round(c.income * rng.uniform(0.98, 1.02), 2)
                    block.transaction(
                        t, amount, c.salary_kind, "credit", None, None,
                        c.home, c.currency, None, c.salary_bank,
                    )  # fmt: skip
            for bill_day, second, kind, mcc, merchant, amount in c.bills:
                if bill_day != day_of_month:
                    continue
                t = midnight + second
                if start <= t < end and t < silent:
                    if mcc == "4900":  # utilities vary with use
                        amount = round(amount * rng.uniform(0.85, 1.15), 2)
                    block.transaction(
                        t, amount, kind, "debit", mcc, merchant, c.home, c.currency, None, None
                    )
        if c.windfall is not None and start <= c.windfall[0] < end and c.windfall[0] < silent:
            block.transaction(
                c.windfall[0], c.windfall[1], "transfer_in", "credit", None, None,
                c.home, c.currency, None, rng.choice(cat.OTHER_BANKS),
            )  # fmt: skip

    def _life_changes(self) -> None:
        """Consent withdrawn, a new relationship manager, or a new phone."""
        c = self.c
        rng = self.rng
        draw = rng.random()
        if draw >= _CONSENT_WITHDRAWN + _RM_CHANGED + _NEW_PHONE:
            return
        t = time_in_day(rng, _SCREEN, self.start)
        if draw < _CONSENT_WITHDRAWN + _RM_CHANGED:
            if t <= c.change_until:
                return
            if draw < _CONSENT_WITHDRAWN:
                if not c.consent:
                    return
                c.consent = False
            else:
                c.rm_id, c.branch_id = self.block.world.managers[
                    rng.randrange(len(self.block.world.managers))
                ]
            c.change_until = t
            self.block.customer_update(t)
            return
        device = new_device(rng)
        c.devices = [*c.devices[-2:], device]
        channel = "mobile_app" if rng.random() < c.app_share else "web"
        if rng.random() < 0.2:  # some set a new password on the new phone
            self.block.interaction(t, channel, "password_reset", {"device_id": device})
            t += rng.uniform(1, 10) * MINUTE
        self.block.interaction(t, channel, "login", {"device_id": device})


_RHYTHMS = tuple(_RHYTHM[name] for name in cat.ACTIVITIES)
_HANDLERS = tuple(getattr(Day, name) for name in cat.ACTIVITIES)


def live_day(c: Customer, rng: Random, world: World, start: float) -> list[Item]:
    """All events this customer generates for the 24 hours from `start`."""
    return Day(c, rng, world, start).run()
