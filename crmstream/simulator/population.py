"""The bank's customers: who they are, what they hold, where they shop, what they need.

A customer is drawn from its own random stream (derived from the run seed and the
customer's index), so a customer looks the same whatever else the run contains. Profiles
are compact and share merchant records, because a run keeps every customer in memory.
"""

from __future__ import annotations

from datetime import date
from itertools import accumulate
from random import Random
from typing import NamedTuple

from crmstream.simulator import catalogue as cat
from crmstream.simulator.churn import ChurnPlan
from crmstream.simulator.clock import DAY, HOUR, to_date
from crmstream.simulator.config import SimulationConfig
from crmstream.simulator.fraud import FraudEpisode
from crmstream.simulator.records import new_device

PROFILE_BLOCK = (1 << 24) - 1  # block number of the stream that draws a customer's profile
_POPULATION = (1 << 40) - 1  # customer index of the stream that picks churners and victims
_FAVOURITE_POOL = 300  # merchants per country and category that customers frequent
_ONLINE_POOL = 100
_UNFAMILIAR_FROM = 500  # merchant numbers from here on are never anyone's favourite


class Merchant(NamedTuple):
    merchant_id: str
    mcc: str
    country: str
    currency: str
    price: float  # typical purchase relative to the customer's mean spend


class Merchants:
    """Merchant records shared by all customers, created on first use."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, str, int], Merchant] = {}

    def get(self, country: str, category: cat.Category, number: int) -> Merchant:
        key = (country, category.mcc, number)
        merchant = self._known.get(key)
        if merchant is None:
            # A fixed, well-spread price level per merchant: some shops are dearer.
            level = 0.75 + (number * 37 % 50) / 100
            merchant = Merchant(
                f"M{country}{category.mcc}{number:03d}",
                category.mcc,
                country,
                cat.currency_of(country),
                category.price * level,
            )
            self._known[key] = merchant
        return merchant

    def unfamiliar(
        self, rng: Random, country: str, categories: tuple[cat.Category, ...]
    ) -> Merchant:
        """A merchant no customer has among their favourites."""
        return self.get(country, rng.choice(categories), rng.randrange(_UNFAMILIAR_FROM, 1000))

    def travel(self, rng: Random, country: str) -> Merchant:
        category = rng.choices(_TRAVEL, cum_weights=_TRAVEL_CUM)[0]
        return self.get(country, category, rng.randrange(_FAVOURITE_POOL))

    def atm(self, rng: Random, country: str) -> str:
        return f"ATM{country}{rng.randrange(2000):04d}"


def _split(
    pairs: tuple[tuple[cat.Category, float], ...],
) -> tuple[tuple[cat.Category, ...], tuple[float, ...]]:
    """Categories and cumulative weights, ready for `Random.choices`."""
    return tuple(category for category, _ in pairs), tuple(accumulate(w for _, w in pairs))


_LOCAL, _LOCAL_CUM = _split(cat.LOCAL_CATEGORIES)
_ONLINE, _ONLINE_CUM = _split(cat.ONLINE_CATEGORIES)
_TRAVEL, _TRAVEL_CUM = _split(cat.TRAVEL_CATEGORIES)
_TRAVELLER_SHARE = {
    "mass": 0.12,
    "affluent": 0.3,
    "private": 0.45,
    "small_business": 0.15,
    "student": 0.25,
}
_SAVER_SHARE = {
    "mass": 0.1,
    "affluent": 0.5,
    "private": 0.6,
    "small_business": 0.2,
    "student": 0.03,
}
# Everyday rates by segment and channel habit: people who bank in branches log in less.
_HABIT_RATES = {
    (seg.name, habit): tuple(
        rate * (login_rate if name in ("login", "product_view") else 1.0)
        for name, rate in zip(cat.ACTIVITIES, seg.rates, strict=True)
    )
    for seg in cat.SEGMENTS
    for habit, login_rate in enumerate(cat.HABIT_LOGIN_RATE)
}
_CONSENT_SHARE = 0.82
_NEW_CUSTOMER_SHARE = 0.04


class Customer:
    """One customer's profile and the state that carries over from day to day."""

    __slots__ = (
        "account_id",
        "activity",
        "app_share",
        "bills",
        "birth_year",
        "branch_id",
        "change_until",
        "churn",
        "cid",
        "consent",
        "currency",
        "devices",
        "fraud",
        "habit",
        "home",
        "income",
        "index",
        "joined_on",
        "merchants",
        "needs",
        "offset",
        "online",
        "products",
        "rates",
        "rm_id",
        "salary_bank",
        "salary_day",
        "salary_kind",
        "salary_sec",
        "segment",
        "serial",
        "silent_from",
        "spend",
        "tag",
        "traveller",
        "trip",
        "windfall",
    )

    account_id: str
    activity: float  # scales all everyday rates: some people simply do more
    app_share: float
    bills: tuple[tuple[int, float, str, str, str, float], ...]  # day, second, kind, mcc, id, amount
    birth_year: int
    branch_id: str
    churn: ChurnPlan | None
    cid: str
    consent: bool
    currency: str
    devices: list[str]
    fraud: FraudEpisode | None
    habit: int  # index into the catalogue's channel habits
    home: str
    income: float  # monthly
    index: int
    joined_on: str
    merchants: tuple[Merchant, ...]  # favourites first
    needs: tuple[str, ...]  # hidden: offers this customer would welcome
    offset: float  # seconds after midnight at which this customer's simulated days begin
    online: tuple[Merchant, ...]
    products: list[str]
    rates: tuple[float, ...]  # per day before `activity`, catalogue.ACTIVITIES order; shared
    rm_id: str
    salary_bank: str
    salary_day: int  # day of month; 0: no regular income
    salary_kind: str  # salary, or transfer_in for an allowance
    salary_sec: float  # seconds after midnight UTC the income is booked
    segment: str
    serial: int  # numbers this customer's events
    change_until: float  # a record change is pending until then; no other starts before
    silent_from: float  # no activity from then on (closed or dormant)
    spend: float
    tag: str  # event id stem unique to run and customer
    traveller: bool
    trip: tuple[float, float, str] | None  # current or next trip: start, end, country
    windfall: tuple[float, float] | None  # one large inflow: time, amount


def next_trip(rng: Random, c: Customer, after: float) -> tuple[float, float, str]:
    gap = rng.uniform(10, 60) if c.traveller else rng.uniform(60, 240)
    begin = after + gap * DAY
    country = rng.choices(cat.TRIP_COUNTRIES, weights=cat.TRIP_WEIGHTS)[0]
    if country == c.home:
        country = "ES"
    return begin, begin + rng.uniform(3, 12) * DAY, country


class World:
    """Everything shared by one run: period, seed streams, merchants, managers, plans."""

    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.start = config.start_ts
        self.end = config.end_ts
        self.start_date = to_date(self.start)
        self.merchants = Merchants()
        zigzag = config.seed * 2 if config.seed >= 0 else -config.seed * 2 - 1
        self._seed_base = zigzag << 64
        self.run_tag = f"{zigzag:x}"  # in event ids, so runs with other seeds never clash
        self.rng = Random()
        rms = config.relationship_managers
        branches = max(1, (rms + 4) // 5)
        self.managers = tuple((f"RM{i + 1:04d}", f"BR{i % branches + 1:03d}") for i in range(rms))
        picker = Random(self.stream_key(_POPULATION, 0))
        n_churn = round(config.customers * config.churn_fraction)
        n_fraud = round(config.customers * config.fraud_fraction)
        chosen = picker.sample(range(config.customers), n_churn + n_fraud)
        self.churners = frozenset(chosen[:n_churn])
        self.victims = frozenset(chosen[n_churn:])
        self.churn_plans: list[ChurnPlan] = []
        self.fraud_episodes: list[FraudEpisode] = []

    def stream_key(self, index: int, block: int) -> int:
        """Seed of the random stream for one customer and one simulated day."""
        return self._seed_base | index << 24 | block

    def customer(self, index: int) -> Customer:
        rng = self.rng
        rng.seed(self.stream_key(index, PROFILE_BLOCK))
        c = Customer()
        seg = rng.choices(cat.SEGMENTS, cum_weights=cat.SEGMENT_CUM)[0]
        c.index = index
        c.cid = f"C{index:07d}"
        c.tag = f"{self.run_tag}-{index}-"
        c.account_id = f"A{index:07d}"
        c.segment = seg.name
        c.rm_id, c.branch_id = self.managers[rng.randrange(len(self.managers))]
        c.home = rng.choices(cat.HOME_COUNTRIES, weights=cat.HOME_WEIGHTS)[0]
        c.currency = cat.currency_of(c.home)
        c.birth_year = rng.randint(*seg.birth_years)
        age = self.start_date.year - c.birth_year
        c.joined_on = self._joined_on(rng, seg.name, c.birth_year)
        c.consent = rng.random() < _CONSENT_SHARE
        c.income = round(rng.uniform(*seg.income), 2)
        c.spend = seg.spend * rng.lognormvariate(0, 0.3)
        c.habit = rng.choices(range(4), weights=seg.habits)[0]
        c.app_share = cat.HABIT_LOGIN_APP_SHARE[c.habit]
        c.activity = rng.lognormvariate(0, 0.35)
        c.rates = _HABIT_RATES[seg.name, c.habit]
        c.devices = [new_device(rng) for _ in range(rng.choice((1, 1, 2, 2, 3)))]
        family = seg.name in ("mass", "affluent") and 27 <= age <= 42 and rng.random() < 0.35
        c.traveller = rng.random() < _TRAVELLER_SHARE[seg.name]
        saver = rng.random() < _SAVER_SHARE[seg.name]
        c.products = self._products(rng, seg.name, age)
        c.needs = self._needs(rng, c, family, saver)
        c.merchants = self._favourites(rng, c.home, family)
        c.online = tuple(
            self.merchants.get(
                rng.choices(cat.ONLINE_COUNTRIES, weights=cat.ONLINE_WEIGHTS)[0],
                rng.choices(_ONLINE, cum_weights=_ONLINE_CUM)[0],
                rng.randrange(_ONLINE_POOL),
            )
            for _ in range(rng.randint(3, 9))
        )
        self._income(rng, c, seg.name)
        c.bills = self._bills(rng, c, seg.name)
        span = self.end - self.start
        c.windfall = (
            (self.start + rng.random() * span, round(c.income * rng.uniform(3, 12), 2))
            if saver and rng.random() < 0.6
            else None
        )
        c.trip = next_trip(rng, c, self.start - rng.uniform(10, 60) * DAY)
        c.offset = rng.random() * DAY
        c.serial = 0
        c.change_until = 0.0
        c.silent_from = float("inf")
        c.churn = None
        c.fraud = None
        if index in self.churners:
            c.churn = ChurnPlan(c.cid, rng, self.start, self.end)
            c.silent_from = c.churn.silent_from
            self.churn_plans.append(c.churn)
        elif index in self.victims:
            c.fraud = FraudEpisode(c.cid, rng, self.start, self.end)
            self.fraud_episodes.append(c.fraud)
        return c

    def _joined_on(self, rng: Random, segment: str, birth_year: int) -> str:
        latest = self.start_date.toordinal() - 1
        if rng.random() < _NEW_CUSTOMER_SHARE:
            return date.fromordinal(latest - rng.randrange(60)).isoformat()
        adult = date(max(birth_year + 18, 1990), 1, 1).toordinal()
        earliest = min(adult, latest - 30)
        if segment == "student":
            earliest = max(earliest, latest - 5 * 365)
        return date.fromordinal(rng.randint(earliest, latest)).isoformat()

    @staticmethod
    def _products(rng: Random, segment: str, age: int) -> list[str]:
        wealthy = segment in ("affluent", "private")
        odds = {
            "savings": 0.6 if wealthy else 0.35,
            "credit_card": 0.15 if segment == "student" else 0.45,
            "travel_card": 0.04,
            "personal_loan": 0.0 if segment == "student" else 0.08,
            "mortgage": 0.3 if wealthy and age > 30 else (0.1 if age > 30 else 0.0),
            "investment_fund": 0.5 if wealthy else 0.05,
            "insurance": 0.3 if segment != "student" else 0.05,
            "term_deposit": 0.2 if wealthy else 0.03,
        }
        return ["current_account"] + [p for p in cat.PRODUCT_OFFERS if rng.random() < odds[p]]

    @staticmethod
    def _needs(rng: Random, c: Customer, family: bool, saver: bool) -> tuple[str, ...]:
        """What this customer would say yes to; it leaves traces in their behaviour."""
        wanted: list[str] = []
        if c.traveller:
            wanted.append("travel_card")
        if saver:
            wanted += ["savings", rng.choice(("term_deposit", "investment_fund"))]
        if family:
            wanted += ["mortgage", "insurance"] if c.birth_year <= 1996 else ["insurance"]
        if c.activity * c.rates[cat.ACTIVITIES.index("card_online")] > 0.9:
            wanted.append("credit_card")
        if c.segment in ("mass", "small_business") and rng.random() < 0.07:
            wanted.append("personal_loan")
        return tuple(sorted({need for need in wanted if need not in c.products}))

    def _favourites(self, rng: Random, home: str, family: bool) -> tuple[Merchant, ...]:
        categories = rng.choices(_LOCAL, cum_weights=_LOCAL_CUM, k=rng.randint(10, 28))
        if family:
            categories += list(cat.FAMILY_CATEGORIES)
            rng.shuffle(categories)
        return tuple(
            self.merchants.get(home, category, rng.randrange(_FAVOURITE_POOL))
            for category in categories
        )

    @staticmethod
    def _income(rng: Random, c: Customer, segment: str) -> None:
        c.salary_bank = rng.choice((*cat.OTHER_BANKS, cat.OWN_BANK))
        c.salary_sec = rng.uniform(2, 6) * HOUR
        if segment == "small_business":
            c.salary_day, c.salary_kind = 0, "salary"  # paid by its clients instead
        elif segment == "student":
            c.salary_day, c.salary_kind = rng.choice((1, 1, 15, 28)), "transfer_in"
        else:
            c.salary_day, c.salary_kind = rng.choice((1, 15, 25, 26, 27, 28, 28)), "salary"

    def _bills(
        self, rng: Random, c: Customer, segment: str
    ) -> tuple[tuple[int, float, str, str, str, float], ...]:
        scale = {"private": 2.5, "affluent": 1.5, "student": 0.5}.get(segment, 1.0)
        bills = []
        for bill in cat.BILLS:
            if bill.mcc == "6513" and "mortgage" in c.products:
                bill = cat.MORTGAGE_BILL
            if rng.random() >= bill.share or (
                segment == "student" and bill.mcc in ("6300", "6012")
            ):
                continue
            biller = self.merchants.get(c.home, cat.Category(bill.mcc, 1.0), rng.randrange(40))
            bills.append(
                (
                    rng.randint(1, 28),
                    rng.uniform(1, 5) * HOUR,
                    bill.kind,
                    bill.mcc,
                    biller.merchant_id,
                    round(rng.uniform(bill.low, bill.high) * scale, 2),
                )
            )
        return tuple(bills)
