"""What a simulation run is asked to do, and the shape of what it yields."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, NamedTuple

KINDS: tuple[str, ...] = ("transactions", "interactions", "outcomes", "customers")

DEFAULT_START = datetime(2026, 1, 1, tzinfo=timezone.utc)
CUSTOMERS_PER_RM = 250


class SimEvent(NamedTuple):
    """One record for one input topic.

    `value` is the JSON-ready dict exactly as it is produced, or raw `bytes` for a
    deliberately malformed record. `event_time` is epoch seconds (whole milliseconds).
    """

    kind: str
    key: str
    value: Any
    event_time: float


@dataclass(frozen=True)
class SimulationConfig:
    """A reproducible run: the same config always yields the same events."""

    customers: int
    days: float  # simulated days of event time
    start: datetime = DEFAULT_START
    seed: int = 42
    rms: int | None = None  # relationship managers; None: one per 250 customers
    churn_fraction: float = 0.08  # customers who drift away during the run
    fraud_fraction: float = 0.03  # customers who suffer one fraud episode
    out_of_order_fraction: float = 0.01  # events emitted up to 5 minutes after their time
    late_fraction: float = 0.0005  # events emitted 1.5-6 hours late, beyond allowed lateness
    duplicate_fraction: float = 0.001  # events sent a second time, same event_id
    bad_fraction: float = 0.0  # malformed records added per well-formed event

    def __post_init__(self) -> None:
        if self.customers < 1:
            raise ValueError("customers must be at least 1")
        if self.days <= 0:
            raise ValueError("days must be positive")
        if self.start.tzinfo is None or self.start.utcoffset() is None:
            raise ValueError("start must be a timezone-aware datetime")
        if self.rms is not None and self.rms < 1:
            raise ValueError("rms must be at least 1")
        for name in (
            "churn_fraction",
            "fraud_fraction",
            "out_of_order_fraction",
            "late_fraction",
            "duplicate_fraction",
            "bad_fraction",
        ):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {value}")
        if self.churn_fraction + self.fraud_fraction > 1.0:
            raise ValueError("churn_fraction + fraud_fraction must not exceed 1")
        if self.out_of_order_fraction + self.late_fraction > 1.0:
            raise ValueError("out_of_order_fraction + late_fraction must not exceed 1")

    @property
    def relationship_managers(self) -> int:
        return self.rms or max(1, self.customers // CUSTOMERS_PER_RM)

    @property
    def start_ts(self) -> float:
        return self.start.timestamp()

    @property
    def end_ts(self) -> float:
        return self.start.timestamp() + self.days * 86_400.0
