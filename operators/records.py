"""Plain data that flows between the operators."""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterator, MutableMapping
from dataclasses import dataclass, field
from typing import Any

# Tuples of strings many customers hold alike (product sets, countries), one copy each.
# Bounded, so that unusual data cannot grow it without end; past the bound tuples are kept
# per customer as before.
_SHARED_TUPLES: dict[tuple[str, ...], tuple[str, ...]] = {}
_SHARED_TUPLES_MAX = 65536


def shared(value: Any) -> Any:
    """`value` with its strings interned: one copy of each for all customers.

    Unpickling makes a new string for every customer's segment, branch, country or offer
    id; interned, a million customers share a handful. Goes into tuples, lists and dict
    keys; anything else is returned as it is.
    """
    kind = type(value)
    if kind is str:
        return sys.intern(value)
    if kind is tuple:
        items = tuple(shared(item) for item in value)
        if not all(type(item) is str for item in items):
            return items
        known = _SHARED_TUPLES.get(items)
        if known is None and len(_SHARED_TUPLES) < _SHARED_TUPLES_MAX:
            known = _SHARED_TUPLES[items] = items
        return known or items
    if kind is list:
        return [shared(item) for item in value]
    if kind is dict:
        return {shared(key): shared(item) for key, item in value.items()}
    return value


class SlottedState:
    """Per-key state with __slots__, pickled as a plain tuple: compact, cheap snapshots."""

    __slots__ = ()

    def __getstate__(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setstate__(self, state: tuple) -> None:
        for name, value in zip(self.__slots__, state, strict=True):
            setattr(self, name, shared(value))


class FloatMap(MutableMapping[float, float]):
    """A small float -> float dict in one array of (key, value) pairs.

    A dict of 16 floats costs about 750 bytes per customer (each float its own object);
    this is 16 bytes a pair. Lookups scan the pairs: meant for a few dozen entries.
    """

    __slots__ = ("pairs",)

    def __init__(self) -> None:
        self.pairs = array("d")

    def _find(self, key: float) -> int:
        pairs = self.pairs
        for i in range(0, len(pairs), 2):
            if pairs[i] == key:
                return i
        raise KeyError(key)

    def __getitem__(self, key: float) -> float:
        return self.pairs[self._find(key) + 1]

    def __setitem__(self, key: float, value: float) -> None:
        try:
            self.pairs[self._find(key) + 1] = value
        except KeyError:
            self.pairs.extend((key, value))

    def __delitem__(self, key: float) -> None:
        i = self._find(key)
        del self.pairs[i : i + 2]

    def __iter__(self) -> Iterator[float]:
        return iter(self.pairs[::2])

    def __len__(self) -> int:
        return len(self.pairs) // 2

    def __repr__(self) -> str:
        return f"FloatMap({dict(self)!r})"

    def __getstate__(self) -> bytes:
        return self.pairs.tobytes()

    def __setstate__(self, state: bytes) -> None:
        self.pairs = array("d")
        self.pairs.frombytes(state)


class Record:
    """Base of the records passed between steps: pickled as the class and its field values.

    Records cross between processes at every re-keying of a multi-process flow; the
    default pickling of slotted dataclasses sets each field through a generic per-field
    path that cost more than the rest of the trip. Rebuilding through the constructor
    from a tuple is several times cheaper.
    """

    __slots__ = ()

    def __reduce__(self) -> tuple[type, tuple]:
        return type(self), tuple(getattr(self, name) for name in self.__slots__)


@dataclass(frozen=True, slots=True)
class Origin(Record):
    """Where a record was read from, so a dead letter can point back at it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    broker_time: float
    """Kafka message timestamp (epoch seconds): when the event entered the bus."""


@dataclass(slots=True)
class Event(Record):
    """A validated input event."""

    kind: str
    """transactions | interactions | outcomes | customers"""
    customer_id: str
    event_id: str
    event_time: float
    body: dict[str, Any]
    origin: Origin
    raw: bytes


@dataclass(frozen=True, slots=True)
class DeadLetter(Record):
    """A record the engine could not apply, with the reason, bound for the dead-letter topic."""

    outcome: str
    """dead_lettered | late | duplicate: the `outcome` label of the events metric."""
    reason_code: str
    reason: str
    origin: Origin
    raw: bytes | None


@dataclass(slots=True)
class ScoreRequest(Record):
    """What the profile step asks of the model shard for one event."""

    customer_id: str
    event: Event
    profile: dict[str, Any]
    """Snapshot of the live profile after the event: features and reference data."""
    churn_features: dict[str, float]
    anomaly_features: dict[str, float] | None
    offer_context: dict[str, float] | None
    labels: list[tuple[str, dict[str, float], Any]] = field(default_factory=list)
    """(model, features, label) examples resolved by this event, to learn from."""
    churn_snapshot: float | None = None
    """Time of the churn snapshot taken at this event: its score is a prediction to keep."""
    resolved_snapshots: list[float] = field(default_factory=list)
    """Times of the snapshots whose churn labels are in `labels`, in the same order."""


@dataclass(slots=True)
class Scored(Record):
    """A ScoreRequest with the models' answers."""

    request: ScoreRequest
    churn_risk: float
    churn_reasons: list[str]
    anomaly_score: float | None
    anomaly_reasons: list[str]
    offer_propensities: dict[str, float]
    model_versions: dict[str, str]
    quality: list[tuple[str, float, bool]] = field(default_factory=list)
    """(model, earlier prediction, label) pairs the models resolved on this event."""
    offer_bonus: dict[str, float] = field(default_factory=dict)
    """Exploration bonus per offer, added to its propensity when arbitrating."""


@dataclass(frozen=True, slots=True)
class Alert(Record):
    alert_id: str
    type: str
    severity: str
    customer_id: str
    rm_id: str
    event_time: float
    reasons: tuple[str, ...]
    scores: dict[str, float]
    event_id: str


@dataclass(slots=True)
class Output(Record):
    """Everything one event changes in Redis."""

    customer_id: str
    rm_id: str
    previous_rm_id: str | None
    profile: dict[str, Any]
    churn_risk: float
    alerts: list[Alert]
    event_time: float
    broker_time: float
    topic: str
    last_activity: float | None = None
    scores: dict[str, float] = field(default_factory=dict)
    quality: list[tuple[str, float, bool]] = field(default_factory=list)
    offer_decision: dict[str, Any] | None = None
    """A new next-best-offer decision, with its context and propensity, for the decision log."""
    cooled_down: tuple[str, ...] = ()
    """Alert types this event qualified for but did not send: the customer's cool-down held."""
