"""Reference data of the simulated bank: segments, products, offers, merchant categories,
countries and daily rhythms.

Numbers are plausible rather than measured; they are chosen so that the signals the
engine's models should find (churn drift, fraud bursts, hidden needs) stand out against
ordinary variation without being trivially separable. Currencies are limited to those in
the shipped `bank.fx_rates`, so every legitimate amount can be converted.
"""

from __future__ import annotations

from itertools import accumulate
from typing import NamedTuple

OWN_BANK = "CRMB"
OTHER_BANKS: tuple[str, ...] = ("NEOB", "SPKX", "VBNK", "DIRB", "GLBK", "MOBI")

HOME_COUNTRIES: tuple[str, ...] = ("DE", "AT", "NL", "FR", "LU")
HOME_WEIGHTS: tuple[float, ...] = (0.92, 0.03, 0.02, 0.02, 0.01)
TRIP_COUNTRIES: tuple[str, ...] = ("ES", "IT", "FR", "AT", "GR", "PT", "HR", "GB", "CH", "US")
TRIP_WEIGHTS: tuple[float, ...] = (20, 16, 10, 12, 8, 6, 6, 8, 6, 8)
# Where a compromised card is cashed out: far from any customer's usual footprint.
FRAUD_COUNTRIES: tuple[str, ...] = ("US", "GB", "RO", "BR", "VN", "NG", "CN", "PH")
ONLINE_COUNTRIES: tuple[str, ...] = ("DE", "NL", "IE", "LU", "US", "GB")
ONLINE_WEIGHTS: tuple[float, ...] = (45, 15, 15, 10, 10, 5)

_EURO = frozenset(("DE", "AT", "NL", "FR", "LU", "IE", "ES", "IT", "GR", "PT", "HR", "RO"))
_CURRENCY = {"GB": "GBP", "CH": "CHF"}


def currency_of(country: str) -> str:
    """Local currency, or USD where card schemes usually settle in dollars.

    Romania's leu is not in the bank's rate table, so Romanian merchants are treated as
    pricing in euros, as many online ones do.
    """
    if country in _EURO:
        return "EUR"
    return _CURRENCY.get(country, "USD")


PRODUCTS: tuple[str, ...] = (
    "current_account",
    "savings",
    "credit_card",
    "travel_card",
    "personal_loan",
    "mortgage",
    "investment_fund",
    "insurance",
    "term_deposit",
)
PRODUCT_OFFERS: tuple[str, ...] = PRODUCTS[1:]
RETENTION_OFFERS: tuple[str, ...] = ("retention_fee_waiver", "retention_rate_boost")


class Category(NamedTuple):
    """A merchant category: its MCC and how expensive a typical purchase is."""

    mcc: str
    price: float


# Card-present spending near home, weighted by how often people shop there.
LOCAL_CATEGORIES: tuple[tuple[Category, float], ...] = (
    (Category("5411", 1.0), 30),  # grocery
    (Category("5812", 1.2), 10),  # restaurants
    (Category("5814", 0.35), 12),  # fast food
    (Category("5541", 1.6), 7),  # fuel
    (Category("5912", 0.6), 5),  # pharmacy
    (Category("5651", 1.8), 5),  # clothing
    (Category("5311", 1.5), 4),  # department store
    (Category("4111", 0.15), 7),  # local transit
    (Category("4121", 0.7), 3),  # taxi
    (Category("5942", 0.7), 2),  # books
    (Category("7832", 0.5), 2),  # cinema
    (Category("7230", 1.0), 2),  # hair salon
    (Category("5732", 4.0), 1),  # electronics
)
FAMILY_CATEGORIES: tuple[Category, ...] = (Category("5641", 1.5), Category("5945", 1.3))
ONLINE_CATEGORIES: tuple[tuple[Category, float], ...] = (
    (Category("5399", 1.3), 30),  # marketplace
    (Category("5818", 0.3), 12),  # digital goods
    (Category("4899", 0.45), 10),  # streaming
    (Category("5964", 1.5), 10),  # mail order
    (Category("5691", 2.0), 10),  # fashion
    (Category("5732", 4.5), 5),  # electronics
    (Category("4511", 7.0), 3),  # airlines
    (Category("7011", 5.0), 3),  # hotels
)
TRAVEL_CATEGORIES: tuple[tuple[Category, float], ...] = (
    (Category("5812", 1.5), 30),
    (Category("5814", 0.4), 15),
    (Category("5411", 0.8), 12),
    (Category("7011", 6.0), 6),
    (Category("4121", 1.0), 8),
    (Category("5999", 1.2), 10),  # souvenirs and misc retail
    (Category("7991", 1.4), 6),  # tourist attractions
)
# What stolen cards are spent on: resaleable goods, gift cards, crypto.
CASHOUT_CATEGORIES: tuple[Category, ...] = (
    Category("5732", 1.0),
    Category("5944", 1.0),
    Category("5947", 1.0),
    Category("6051", 1.0),
)
# Where stolen card numbers are tested: small digital merchants and donation pages.
TESTING_CATEGORIES: tuple[Category, ...] = (
    Category("5818", 1.0),
    Category("5816", 1.0),
    Category("8398", 1.0),
    Category("5999", 1.0),
)
ATM_MCC = "6011"


class Bill(NamedTuple):
    """A recurring monthly debit."""

    kind: str  # bill_payment or direct_debit
    mcc: str
    low: float
    high: float
    share: float  # share of customers who have it


BILLS: tuple[Bill, ...] = (
    Bill("direct_debit", "6513", 450, 1600, 0.45),  # rent
    Bill("bill_payment", "4900", 40, 180, 0.85),  # utilities
    Bill("direct_debit", "4814", 15, 70, 0.9),  # telecom
    Bill("direct_debit", "6300", 20, 160, 0.5),  # insurance premium
    Bill("direct_debit", "7997", 15, 60, 0.25),  # gym
    Bill("direct_debit", "4899", 8, 25, 0.55),  # streaming
)
MORTGAGE_BILL = Bill("direct_debit", "6012", 700, 2600, 1.0)


# Everyday activities drawn at random times; `Segment.rates` follows this order.
ACTIVITIES: tuple[str, ...] = (
    "card_present",
    "card_online",
    "atm",
    "login",
    "product_view",
    "support_contact",
    "transfer_out",
    "transfer_in",
    "offer",
    "complaint",
    "survey",
)


class Segment(NamedTuple):
    """How a segment earns, spends and behaves; `rates` are mean events per day."""

    name: str
    share: float
    income: tuple[float, float]  # monthly, base currency
    spend: float  # mean card purchase before merchant price level
    birth_years: tuple[int, int]
    rates: tuple[float, ...]
    habits: tuple[float, float, float, float]  # mobile, web, branch, phone


SEGMENTS: tuple[Segment, ...] = (
    #                                                         cp   onl  atm  login view  sup  tout tin  offer compl survey
    Segment("mass", 0.55, (1800, 3800), 32, (1950, 2001), (1.3, 0.45, 0.12, 0.9, 0.12, 0.02, 0.10, 0.05, 0.12, 0.003, 0.008), (0.55, 0.2, 0.15, 0.1)),
    Segment("affluent", 0.15, (5000, 12000), 58, (1950, 1993), (1.6, 0.7, 0.06, 1.2, 0.15, 0.02, 0.15, 0.08, 0.15, 0.003, 0.008), (0.5, 0.3, 0.1, 0.1)),
    Segment("private", 0.02, (18000, 60000), 140, (1940, 1986), (1.2, 0.8, 0.03, 0.8, 0.10, 0.03, 0.25, 0.15, 0.10, 0.004, 0.010), (0.3, 0.2, 0.2, 0.3)),
    Segment("small_business", 0.10, (6000, 30000), 65, (1955, 1996), (1.5, 1.0, 0.05, 2.0, 0.10, 0.04, 1.20, 1.50, 0.12, 0.004, 0.006), (0.4, 0.4, 0.1, 0.1)),
    Segment("student", 0.18, (350, 950), 15, (1999, 2007), (1.1, 0.8, 0.20, 1.5, 0.10, 0.01, 0.08, 0.06, 0.12, 0.002, 0.006), (0.85, 0.1, 0.0, 0.05)),
)  # fmt: skip
SEGMENT_CUM: tuple[float, ...] = tuple(accumulate(s.share for s in SEGMENTS))

# Channel habits: where a customer logs in from and where they go for help.
HABIT_LOGIN_APP_SHARE: tuple[float, ...] = (0.92, 0.15, 0.4, 0.5)
HABIT_LOGIN_RATE: tuple[float, ...] = (1.0, 0.8, 0.3, 0.5)
SUPPORT_CHANNELS: tuple[str, ...] = (
    "mobile_app",
    "chatbot",
    "call_centre",
    "email",
    "web",
    "branch",
)
HABIT_SUPPORT_WEIGHTS: tuple[tuple[float, ...], ...] = (
    (30, 30, 30, 5, 5, 0),
    (0, 10, 30, 25, 35, 0),
    (0, 0, 35, 0, 5, 60),
    (5, 0, 80, 0, 0, 15),
)

SEVERITY = (1, 2, 3, 4, 5)
SEVERITY_CUM_CONTENT = tuple(accumulate((30, 32, 24, 10, 4)))
SEVERITY_CUM_LEAVING = tuple(accumulate((4, 10, 28, 30, 28)))
NPS = tuple(range(11))
NPS_CUM_CONTENT = tuple(accumulate((1, 1, 1, 2, 3, 6, 8, 14, 22, 22, 20)))
NPS_CUM_LEAVING = tuple(accumulate((14, 14, 16, 16, 14, 12, 8, 4, 1, 1, 0)))

# Hour-of-day weights in the bank's local time (UTC+1, daylight saving ignored).
LOCAL_UTC_OFFSET_HOURS = 1
SHOPPING_HOURS = (0.2, 0.1, 0.05, 0.05, 0.05, 0.1, 0.4, 1.0, 1.5, 1.6, 1.8, 2.2,
                  2.8, 2.4, 2.0, 2.0, 2.3, 2.8, 3.0, 2.6, 2.0, 1.6, 1.0, 0.5)  # fmt: skip
SCREEN_HOURS = (0.4, 0.2, 0.1, 0.05, 0.05, 0.2, 0.8, 1.6, 1.8, 1.5, 1.3, 1.4,
                1.8, 1.6, 1.3, 1.3, 1.5, 1.9, 2.3, 2.7, 2.9, 2.6, 1.8, 0.9)  # fmt: skip
OFFICE_HOURS = (0, 0, 0, 0, 0, 0, 0, 0.2, 1.5, 2.0, 2.0, 1.8,
                1.4, 1.8, 2.0, 1.9, 1.6, 1.0, 0.3, 0, 0, 0, 0, 0)  # fmt: skip
# Shops in the home market are busiest on Saturday and mostly shut on Sunday.
WEEKDAY_SHOPPING = (1.0, 1.0, 1.0, 1.0, 1.1, 1.35, 0.35)
