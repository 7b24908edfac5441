"""The live customer profile: one compact state per customer, updated by every event.

`ProfileLogic.apply(state, event)` is the whole per-customer step as a plain function over
plain data: it applies each event once, in event time, and returns what the model step
needs (a ScoreRequest) or why the event could not be applied (a DeadLetter).
"""

from __future__ import annotations

import math
import time
import zlib
from array import array
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any

from crmstream.events import Segment
from operators.records import DeadLetter, Event, ScoreRequest, SlottedState, shared
from operators.windows import (
    CHANNELS,
    CREDIT,
    DEBIT,
    EXTERNAL_DEBIT,
    SMALL_SPEND,
    SPEND,
    RollingWindows,
    complaint_code,
    contact_code,
    login_code,
)

DAY = 86400.0
SPEND_KINDS = frozenset({"card_present", "card_online", "atm", "bill_payment", "direct_debit"})
_MERCHANT_MEMORY = 48
_DEVICE_MEMORY = 8
_COUNTRY_MEMORY = 8
_OFFER_MEMORY = 4
# Expiry mark of remembered event ids that no lateness rule retires (see _remember_id).
_KEEP = 0xFFFFFFFF
_LATENESS_TOPICS = ("transactions", "interactions")


@dataclass(frozen=True, slots=True)
class ProfileConfig:
    allowed_lateness: float
    duplicate_memory: int
    pending_unknown_customer: int
    unknown_customer_grace: float
    own_bank_code: str
    churn_horizon: float
    churn_snapshot_every: float
    churn_ledger_size: int
    small_payment_amount: float


def stable_hash(text: str) -> int:
    """A 32-bit hash that is the same in every process (Python's hash() is salted)."""
    return zlib.crc32(text.encode())


def _remember(ring: array, value: int, capacity: int) -> bool:
    """Add value to a small most-recent-first memory; True when it was new."""
    if value in ring:
        return False
    if len(ring) >= capacity:
        del ring[0]
    ring.append(value)
    return True


class Reference(SlottedState):
    """The customer's reference record (from the customers topic), as a slotted record.

    Read by name like the dict it replaces (`ref.get("segment")`, `ref["birth_year"]`);
    its strings and product set are shared between customers.
    """

    __slots__ = (
        "birth_year",
        "branch_id",
        "joined_at",
        "marketing_consent",
        "products",
        "record_time",
        "rm_id",
        "segment",
    )

    def __init__(self, body: dict[str, Any], at: float) -> None:
        joined: date = body["joined_on"]
        self.segment: str = shared(body["segment"])
        self.rm_id: str = shared(body["rm_id"])
        self.branch_id: str = shared(body["branch_id"])
        self.products: tuple[str, ...] = shared(tuple(sorted(set(body["products"]))))
        self.marketing_consent: bool = body["marketing_consent"]
        self.joined_at = datetime(
            joined.year, joined.month, joined.day, tzinfo=timezone.utc
        ).timestamp()
        self.birth_year: int | None = body.get("birth_year")
        self.record_time = at

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self, name, default)

    def __getitem__(self, name: str) -> Any:
        return getattr(self, name)


def _no_reference() -> Reference:
    """What the features read for a customer whose reference record has not arrived."""
    empty = Reference.__new__(Reference)
    empty.segment, empty.rm_id, empty.branch_id, empty.products = None, "", "", ()
    empty.marketing_consent, empty.joined_at, empty.birth_year = False, None, None
    empty.record_time = float("-inf")
    return empty


NO_REFERENCE = _no_reference()


class CustomerState(SlottedState):
    """Everything the engine keeps about one customer between events."""

    __slots__ = (
        "churn_ledger",
        "closed_at",
        "closure_requested_at",
        "countries",
        "devices",
        "first_seen",
        "last_activity",
        "last_interaction",
        "last_login",
        "last_new_device",
        "last_nps",
        "last_password_reset",
        "last_snapshot",
        "last_transaction",
        "latest_event",
        "lifetime_amount",
        "lifetime_count",
        "merchants",
        "offers_shown",
        "pending",
        "reference",
        "seen",
        "seen_until",
        "windows",
    )

    def __init__(self) -> None:
        self.reference: Reference | None = None
        self.windows = RollingWindows()
        # Recent event ids (crc32) and, in step, until when each must be kept (_remember_id).
        self.seen = array("I")
        self.seen_until = array("I")
        self.merchants = array("I")
        self.devices = array("I")
        self.countries: tuple[str, ...] = ()
        self.first_seen: float | None = None
        self.last_activity: float | None = None
        self.last_transaction: float | None = None
        self.last_interaction: float | None = None
        self.latest_event: float | None = None
        self.last_login: float | None = None
        self.last_password_reset: float | None = None
        self.last_new_device: float | None = None
        self.last_nps: int | None = None
        self.lifetime_count = 0
        self.lifetime_amount = 0.0
        self.closure_requested_at: float | None = None
        self.closed_at: float | None = None
        self.last_snapshot: float | None = None
        # Rows of (snapshot time, packed churn features), flat: one array, not one per row.
        self.churn_ledger = array("d")
        # Offer id -> (impression time, packed offer features) in one array.
        self.offers_shown: dict[str, array] = {}
        # Events held for a reference record; an empty tuple (shared) rather than a list.
        self.pending: list[Event] | tuple[()] = ()


def _days(seconds: float | None, now: float, cap: float = 365.0) -> float:
    return cap if seconds is None else min(cap, max(0.0, (now - seconds) / DAY))


def _ratio(short: float, short_days: float, long: float, long_days: float) -> float:
    """Rate over the short window relative to the rate over the long one (1 = steady)."""
    long_rate = long / long_days
    return (short / short_days) / long_rate if long_rate > 0 else (1.0 if short == 0 else 2.0)


class ProfileLogic:
    """Applies events to a CustomerState; configured once, called per event."""

    def __init__(self, config: ProfileConfig) -> None:
        self.config = config

    def apply(self, state: CustomerState, event: Event) -> list[ScoreRequest | DeadLetter]:
        seen_key = stable_hash(f"{event.kind}:{event.event_id}")
        if seen_key in state.seen:
            return [
                DeadLetter(
                    "duplicate",
                    "duplicate",
                    f"duplicate {event.kind} event_id {event.event_id!r}: already applied",
                    event.origin,
                    event.raw,
                )
            ]
        # Lateness is judged per source topic: each customer's events of one topic come in
        # order from one partition, while topics are read concurrently and drift apart.
        latest = (
            state.last_transaction
            if event.kind == "transactions"
            else state.last_interaction
            if event.kind == "interactions"
            else None
        )
        if latest is not None and event.event_time < latest - self.config.allowed_lateness:
            behind = latest - event.event_time
            return [
                DeadLetter(
                    "late",
                    "late",
                    f"event time is {behind:.0f} s behind the customer's latest {event.kind} "
                    f"event, beyond the allowed lateness of {self.config.allowed_lateness:.0f} s",
                    event.origin,
                    event.raw,
                )
            ]
        if state.reference is None and event.kind != "customers":
            return self._hold_for_reference(state, event)
        out: list[ScoreRequest | DeadLetter] = [self._apply_known(state, event)]
        self._remember_id(state, seen_key, event)
        if event.kind == "customers" and state.pending:
            pending, state.pending = state.pending, ()
            for held in sorted(pending, key=lambda e: e.event_time):
                out.extend(self.apply(state, held))
        return out

    def _remember_id(self, state: CustomerState, seen_key: int, event: Event) -> None:
        """Remember an applied event's id for as long as a replay of it could be applied.

        A replay of a transaction or interaction older than the allowed lateness is refused
        as late anyway, so those ids are kept only while within it: the memory holds the
        last hour's events, not the last `duplicate_memory`. Ids of topics with no lateness
        rule (customers, outcomes) stay until newer ids push them out.
        """
        seen, until = state.seen, state.seen_until
        latest = [t for t in (state.last_transaction, state.last_interaction) if t is not None]
        if latest and until:
            # An id kept until t is of an event at or before t; once t is older than the
            # lateness of both topics, a replay of it is late, whichever topic it came from.
            horizon = min(latest) - self.config.allowed_lateness
            if min(until) < horizon:
                keep = [i for i, t in enumerate(until) if t >= horizon]
                seen = state.seen = array("I", [seen[i] for i in keep])
                until = state.seen_until = array("I", [until[i] for i in keep])
        if len(seen) >= self.config.duplicate_memory:
            del seen[0], until[0]
        seen.append(seen_key)
        if event.kind in _LATENESS_TOPICS:
            until.append(min(_KEEP, max(0, math.ceil(event.event_time))))
        else:
            until.append(_KEEP)

    def compact(self, state: CustomerState) -> list[DeadLetter]:
        """Drop what a long silence made worthless; held events of an unknown customer expire."""
        state.windows = RollingWindows()
        state.churn_ledger = array("d")
        pending, state.pending = state.pending, ()
        return [self._unknown(e) for e in pending]

    def _unknown(self, event: Event) -> DeadLetter:
        return DeadLetter(
            "dead_lettered",
            "unknown_customer",
            f"unknown customer {event.customer_id!r}: no record on the customers topic "
            f"within {self.config.unknown_customer_grace:.0f} s of event time "
            f"or {self.config.pending_unknown_customer} held events",
            event.origin,
            event.raw,
        )

    def _hold_for_reference(
        self, state: CustomerState, event: Event
    ) -> list[ScoreRequest | DeadLetter]:
        """Keep events of a customer whose reference record has not arrived yet, for a while."""
        state.pending = [*state.pending, event]
        newest = max(e.event_time for e in state.pending)
        expired = [
            e for e in state.pending if newest - e.event_time > self.config.unknown_customer_grace
        ]
        overflow = len(state.pending) - len(expired) - self.config.pending_unknown_customer
        if overflow > 0:
            keep = sorted(
                (e for e in state.pending if e not in expired), key=lambda e: e.event_time
            )
            expired.extend(keep[:overflow])
        if not expired:
            return []
        state.pending = [e for e in state.pending if e not in expired] or ()
        return [self._unknown(e) for e in expired]

    def _apply_known(self, state: CustomerState, event: Event) -> ScoreRequest:
        # Applied, the event can no longer become a dead letter: its raw bytes are dropped
        # rather than carried through the later steps (and between processes).
        event.raw = b""
        body = event.body
        at = event.event_time
        labels: list[tuple[str, dict[str, float], Any]] = []
        resolved: list[float] = []
        anomaly = None
        offer_context = None
        if state.first_seen is None or at < state.first_seen:
            state.first_seen = at
        kind = event.kind
        if kind == "customers":
            self._apply_reference(state, body, at)
        elif kind == "transactions":
            anomaly = self._apply_transaction(state, body, at)
        elif kind == "interactions":
            offer_context, label = self._apply_interaction(state, body, at)
            if label:
                labels.append(label)
        elif body["type"] == "account_closed":
            state.closed_at = at
            horizon = self.config.churn_horizon
            rows = _ledger_rows(state.churn_ledger)
            labels.extend(("churn", unpack(f, CHURN_FEATURES), at - t < horizon) for t, f in rows)
            resolved.extend(t for t, _ in rows)
            state.churn_ledger = array("d")

        # The profile's clock: the newest event applied of any kind, so what the profile
        # says does not depend on the order in which the topics were read.
        state.latest_event = max(state.latest_event or at, at)
        now = state.latest_event
        if offer_context is None and kind in ("interactions", "customers"):
            offer_context = offer_features(state, now)
        churn = churn_features(state, now)
        snapshot = self._resolve_and_snapshot_churn(state, now, churn, labels, resolved)
        return ScoreRequest(
            customer_id=event.customer_id,
            event=event,
            profile=profile_fields(state, now),
            churn_features=churn,
            anomaly_features=anomaly,
            offer_context=offer_context,
            labels=labels,
            churn_snapshot=snapshot,
            resolved_snapshots=resolved,
        )

    @staticmethod
    def _apply_reference(state: CustomerState, body: dict[str, Any], at: float) -> None:
        if state.reference is not None and state.reference.record_time > at:
            return  # an older record than the one we hold: the latest wins
        state.reference = Reference(body, at)

    def _apply_transaction(
        self, state: CustomerState, body: dict[str, Any], at: float
    ) -> dict[str, float]:
        windows = state.windows
        amount = body["amount"]
        # Features describe the transaction against the behaviour *before* it.
        features = anomaly_features(state, body, at)
        if body["direction"] == "credit":
            code = CREDIT
        elif body["kind"] in SPEND_KINDS:
            code = SMALL_SPEND if amount <= self.config.small_payment_amount else SPEND
        elif body.get("counterparty_bank") not in (None, self.config.own_bank_code):
            code = EXTERNAL_DEBIT
        else:
            code = DEBIT
        windows.add(at, code, amount)
        if body.get("merchant_id"):
            _remember(state.merchants, stable_hash(body["merchant_id"]), _MERCHANT_MEMORY)
        if body.get("device_id"):
            _remember(state.devices, stable_hash(body["device_id"]), _DEVICE_MEMORY)
        if body["country"] not in state.countries:
            state.countries = shared((*state.countries, body["country"])[-_COUNTRY_MEMORY:])
        state.lifetime_count += 1
        state.lifetime_amount += amount
        state.last_transaction = max(state.last_transaction or at, at)
        state.last_activity = max(state.last_activity or at, at)
        return features

    def _apply_interaction(
        self, state: CustomerState, body: dict[str, Any], at: float
    ) -> tuple[dict[str, float] | None, tuple[str, dict[str, float], Any] | None]:
        kind, channel = body["type"], body["channel"]
        offer_context = None
        label = None
        if kind == "login":
            state.windows.add(at, login_code(channel))
            state.last_login = max(state.last_login or at, at)
            device = body.get("device_id")
            known_before = len(state.devices)
            if (
                device
                and _remember(state.devices, stable_hash(device), _DEVICE_MEMORY)
                and known_before
            ):
                state.last_new_device = at
        elif kind == "complaint":
            state.windows.add(at, complaint_code(channel), float(body.get("severity") or 3))
        else:
            state.windows.add(at, contact_code(channel))
        if kind == "survey" and body.get("nps") is not None:
            state.last_nps = body["nps"]
        elif kind == "password_reset":
            state.last_password_reset = at
        elif kind == "closure_request":
            state.closure_requested_at = at
        elif kind == "offer_impression" and body.get("offer_id"):
            offer_context = offer_features(state, at)
            shown = pack(offer_context, OFFER_FEATURES)
            shown.insert(0, at)
            state.offers_shown[shared(body["offer_id"])] = shown
            if len(state.offers_shown) > _OFFER_MEMORY:
                oldest = min(state.offers_shown, key=lambda k: state.offers_shown[k][0])
                del state.offers_shown[oldest]
        elif kind in ("offer_accepted", "offer_declined") and body.get("offer_id"):
            shown = state.offers_shown.pop(body["offer_id"], None)
            if shown is not None:
                context = unpack(shown[1:], OFFER_FEATURES)
                label = ("offer", context, (body["offer_id"], kind == "offer_accepted"))
        state.last_interaction = max(state.last_interaction or at, at)
        state.last_activity = max(state.last_activity or at, at)
        return offer_context, label

    def _resolve_and_snapshot_churn(
        self,
        state: CustomerState,
        now: float,
        features: dict[str, float],
        labels: list[tuple[str, dict[str, float], Any]],
        resolved: list[float],
    ) -> float | None:
        """Delayed churn labels: a snapshot is a non-churner once the horizon passed quietly.

        Snapshots are taken at most every `churn_snapshot_every` of event time and learned
        from only when their label is known, so no label is ever used before its time.
        Appends resolved labels (and their snapshot times); returns the time of the snapshot
        taken now, if one was.
        """
        horizon = self.config.churn_horizon
        # Rows are in snapshot-time order: unless the oldest is quiet, none is.
        if state.churn_ledger and now - state.churn_ledger[0] >= horizon:
            rows = _ledger_rows(state.churn_ledger)
            quiet = [(t, f) for t, f in rows if now - t >= horizon]
            state.churn_ledger = array("d")
            for t, f in rows:
                if now - t < horizon:
                    state.churn_ledger.append(t)
                    state.churn_ledger.extend(f)
            labels.extend(("churn", unpack(f, CHURN_FEATURES), False) for _, f in quiet)
            resolved.extend(t for t, _ in quiet)
        # A full ledger takes no new snapshot until its oldest resolves: dropping the oldest
        # instead would mean an always-active customer never yields a "stayed" label.
        if (
            state.closed_at is None
            and len(state.churn_ledger) < self.config.churn_ledger_size * _LEDGER_ROW
            and (
                state.last_snapshot is None
                or now - state.last_snapshot >= self.config.churn_snapshot_every
            )
        ):
            state.last_snapshot = now
            state.churn_ledger.append(now)
            state.churn_ledger.extend(pack(features, CHURN_FEATURES))
            return now
        return None


SEGMENTS: tuple[str, ...] = Segment.__args__  # type: ignore[attr-defined]
_SEGMENT_FLAGS = {
    segment: {f"segment_{s}": float(s == segment) for s in SEGMENTS}
    for segment in (*SEGMENTS, None)
}
_SEGMENT_NAMES = tuple(f"segment_{s}" for s in SEGMENTS)
CHURN_FEATURES: tuple[str, ...] = (
    "logins_30d",
    "login_trend",
    "spend_trend",
    "inflow_trend",
    "log_inflow_30d",
    "log_outflow_30d",
    "external_outflow_share",
    "net_flow_ratio",
    "complaints_30d",
    "complaint_severity_30d",
    "days_since_login",
    "days_since_transaction",
    "nps",
    "nps_known",
    "closure_requested",
    "tenure_years",
    "products_held",
    *_SEGMENT_NAMES,
)
OFFER_FEATURES: tuple[str, ...] = (
    "log_inflow_30d",
    "log_spend_30d",
    "foreign_countries",
    "logins_30d",
    "tenure_years",
    "products_held",
    "age",
    *_SEGMENT_NAMES,
)


def _segment_flags(segment: str | None) -> dict[str, float]:
    """One-hot segment, every segment present, so features are the same set for everyone."""
    return _SEGMENT_FLAGS.get(segment, _SEGMENT_FLAGS[None])


_SEGMENT_COUNT = len(_SEGMENT_NAMES)


def pack(features: dict[str, float], names: tuple[str, ...]) -> array:
    """Features kept for later learning, as a flat array rather than a dict.

    `names` end with the one-hot segment, which is kept as one number: the segment's
    index, or -1 for none.
    """
    plain = names[:-_SEGMENT_COUNT]
    segment = next((i for i, s in enumerate(_SEGMENT_NAMES) if features[s]), -1)
    return array("d", [*(features[name] for name in plain), segment])


def unpack(values: array, names: tuple[str, ...]) -> dict[str, float]:
    features = dict(zip(names[:-_SEGMENT_COUNT], values[:-1], strict=True))
    segment = int(values[-1])
    features.update(_segment_flags(SEGMENTS[segment] if segment >= 0 else None))
    return features


# A churn ledger row: the snapshot time, then the packed features.
_LEDGER_ROW = 1 + len(CHURN_FEATURES) - _SEGMENT_COUNT + 1


def _ledger_rows(ledger: array) -> list[tuple[float, array]]:
    """The churn ledger's rows: (snapshot time, packed features), oldest first."""
    step = _LEDGER_ROW
    return [(ledger[i], ledger[i + 1 : i + step]) for i in range(0, len(ledger), step)]


def churn_features(state: CustomerState, now: float) -> dict[str, float]:
    w = state.windows
    ref = state.reference or NO_REFERENCE
    logins_7d, logins_30d = w.total("7d", "logins"), w.total("30d", "logins")
    inflow_7d, inflow_30d = w.total("7d", "inflow_amount"), w.total("30d", "inflow_amount")
    outflow_30d = w.total("30d", "outflow_amount")
    spend_7d, spend_30d = w.total("7d", "spend_count"), w.total("30d", "spend_count")
    # Rates over the history the windows actually cover: a customer seen for ten days has
    # ten days in their "30-day" window, not thirty.
    seen = _days(state.first_seen, now, 30.0)
    short, long = max(1.0, min(7.0, seen)), max(1.0, seen)
    features = {
        "logins_30d": logins_30d,
        "login_trend": _ratio(logins_7d, short, logins_30d, long),
        "spend_trend": _ratio(spend_7d, short, spend_30d, long),
        "inflow_trend": _ratio(inflow_7d, short, inflow_30d, long),
        "log_inflow_30d": math.log1p(inflow_30d),
        "log_outflow_30d": math.log1p(outflow_30d),
        "external_outflow_share": w.total("30d", "external_outflow_amount") / outflow_30d
        if outflow_30d > 0
        else 0.0,
        "net_flow_ratio": (inflow_30d - outflow_30d) / (inflow_30d + outflow_30d + 1.0),
        "complaints_30d": w.total("30d", "complaints"),
        "complaint_severity_30d": w.total("30d", "complaint_severity"),
        "days_since_login": _days(state.last_login, now, 90.0),
        "days_since_transaction": _days(state.last_transaction, now, 90.0),
        "nps": float(state.last_nps) if state.last_nps is not None else 7.0,
        "nps_known": 0.0 if state.last_nps is None else 1.0,
        "closure_requested": 1.0 if state.closure_requested_at is not None else 0.0,
        "tenure_years": _days(ref.joined_at, now, 50 * 365.0) / 365.0,
        "products_held": float(len(ref.products)),
    }
    features.update(_segment_flags(ref.segment))
    return features


def anomaly_features(state: CustomerState, body: dict[str, Any], at: float) -> dict[str, float]:
    """The transaction against the customer's own recent behaviour, before it is counted."""
    w = state.windows
    amount = body["amount"]
    spend_count = w.total("30d", "spend_count")
    usual = w.total("30d", "spend_amount") / spend_count if spend_count else 0.0
    merchant = body.get("merchant_id")
    device = body.get("device_id")
    hour = time.gmtime(at).tm_hour
    return {
        "log_amount": math.log1p(amount),
        "amount_vs_usual": min(50.0, amount / usual) if usual > 0 else 1.0,
        "new_merchant": 1.0
        if merchant and len(state.merchants) >= 3 and stable_hash(merchant) not in state.merchants
        else 0.0,
        "new_country": 1.0 if state.countries and body["country"] not in state.countries else 0.0,
        "new_device": 1.0
        if device and state.devices and stable_hash(device) not in state.devices
        else 0.0,
        "online": 1.0 if body["kind"] == "card_online" else 0.0,
        "night": 1.0 if hour < 6 else 0.0,
        "count_1h": min(50.0, w.total("1h", "spend_count")),
        "log_amount_1h": math.log1p(w.total("1h", "spend_amount")),
        "count_24h": min(200.0, w.total("24h", "spend_count")),
        "small_payments_1h": w.total("1h", "small_payments"),
        "hours_since_password_reset": min(
            72.0, (at - state.last_password_reset) / 3600 if state.last_password_reset else 72.0
        ),
        "hours_since_new_device": min(
            72.0, (at - state.last_new_device) / 3600 if state.last_new_device else 72.0
        ),
        "usual_amount": usual,
    }


def offer_features(state: CustomerState, now: float) -> dict[str, float]:
    """Context for offer propensity: who the customer is and how they use the bank."""
    w = state.windows
    ref = state.reference or NO_REFERENCE
    features = {
        "log_inflow_30d": math.log1p(w.total("30d", "inflow_amount")),
        "log_spend_30d": math.log1p(w.total("30d", "spend_amount")),
        "foreign_countries": float(max(0, len(state.countries) - 1)),
        "logins_30d": min(100.0, w.total("30d", "logins")),
        "tenure_years": _days(ref.joined_at, now, 50 * 365.0) / 365.0,
        "products_held": float(len(ref.products)),
        "age": float(time.gmtime(now).tm_year - ref.birth_year) if ref.birth_year else 40.0,
    }
    features.update(_segment_flags(ref.segment))
    return features


_CONTACTS_30D = tuple((channel, f"contacts_{channel}_30d") for channel in CHANNELS)


def profile_fields(state: CustomerState, now: float) -> dict[str, Any]:
    """The customer-facing profile: aggregates, RFM, channel mix, recency."""
    w = state.windows
    ref = state.reference or NO_REFERENCE
    totals = w.snapshot()
    contacts = {channel: totals[name] for channel, name in _CONTACTS_30D}
    all_contacts = sum(contacts.values())
    return {
        "as_of": now,
        "segment": ref.segment or "",
        "rm_id": ref.rm_id,
        "branch_id": ref.branch_id,
        "products": list(ref.products),
        "marketing_consent": bool(ref.marketing_consent),
        "tenure_days": round(_days(ref.joined_at, now, 100 * 365.0), 1),
        "age": time.gmtime(now).tm_year - ref.birth_year if ref.birth_year else None,
        "aggregates": totals,
        "recency_days": round(_days(state.last_transaction, now, 365.0), 2),
        "frequency_30d": totals["spend_count_30d"],
        "monetary_30d": round(totals["spend_amount_30d"], 2),
        "lifetime_transactions": state.lifetime_count,
        "lifetime_amount": round(state.lifetime_amount, 2),
        "channel_mix_30d": {c: round(n / all_contacts, 3) for c, n in contacts.items() if n}
        if all_contacts
        else {},
        "days_since_last_activity": round(_days(state.last_activity, now, 365.0), 2),
        "last_activity_at": state.last_activity,
        "last_nps": state.last_nps,
        "closure_requested": state.closure_requested_at is not None,
        "closed": state.closed_at is not None,
        "open_complaints_30d": totals["complaints_30d"],
    }
