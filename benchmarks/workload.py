"""The events every measurement uses: the simulator's realistic mix, generated once.

Generation is never inside a measurement: events are generated up front, then produced
as fast as possible to fresh topics before a backlog run, or paced (with event times
re-stamped to the moment of sending) for the latency runs.
"""

from __future__ import annotations

import time
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from itertools import islice
from typing import Any

import orjson
from bytewax.connectors.kafka import KafkaSourceMessage

from crmstream.settings import Settings
from crmstream.simulator import KINDS, SimEvent, SimulationConfig, simulate
from crmstream.simulator.clock import iso
from crmstream.simulator.producer import ProduceStats, produce


@dataclass(frozen=True)
class Workload:
    """Which simulated bank, and how many of its events (in emission order)."""

    customers: int
    days: float
    seed: int
    events: int

    def config(self) -> SimulationConfig:
        return SimulationConfig(customers=self.customers, days=self.days, seed=self.seed)

    def describe(self) -> dict[str, Any]:
        sim = self.config()
        return {
            **asdict(self),
            "simulator": {
                "start": sim.start.isoformat(),
                "churn_fraction": sim.churn_fraction,
                "fraud_fraction": sim.fraud_fraction,
                "out_of_order_fraction": sim.out_of_order_fraction,
                "late_fraction": sim.late_fraction,
                "duplicate_fraction": sim.duplicate_fraction,
                "bad_fraction": sim.bad_fraction,
            },
        }


def generate(workload: Workload) -> list[SimEvent]:
    """The first `workload.events` events of the simulated run (deterministic per seed)."""
    return list(islice(simulate(workload.config()), workload.events))


def mix(events: Iterable[SimEvent]) -> dict[str, int]:
    return dict(Counter(event.kind for event in events))


def encode(event: SimEvent) -> bytes:
    value = event.value
    return value if value.__class__ is bytes else orjson.dumps(value)


def as_messages(
    events: Iterable[SimEvent], settings: Settings, partitions: int = 4
) -> list[KafkaSourceMessage]:
    """The events as the engine's Kafka source hands them over (no broker involved).

    Partition and offset are made up (by key hash and position), the timestamp is the
    event time: enough for decoding, which only reads topic, key, value and timestamp.
    """
    topics = settings.kafka.topics
    names = {kind: getattr(topics, kind) for kind in KINDS}
    out = []
    for offset, event in enumerate(events):
        key = event.key.encode()
        out.append(
            KafkaSourceMessage(
                key=key,
                value=encode(event),
                topic=names[event.kind],
                headers=[],
                latency=None,
                offset=offset,
                partition=zlib.crc32(key) % partitions,
                timestamp=(1, round(event.event_time * 1000)),
            )
        )
    return out


def produce_backlog(events: list[SimEvent], settings: Settings) -> ProduceStats:
    """Send every event as fast as the producer goes; fails loudly if any is lost."""
    stats = produce(events, settings, rate=None, progress=False)
    if stats.delivered != len(events):
        raise RuntimeError(
            f"only {stats.delivered} of {len(events)} events reached the broker: {stats.errors}"
        )
    return stats


def stamped_now(events: Iterable[SimEvent]) -> Iterator[SimEvent]:
    """The same events with their event time set to the moment each is taken for sending.

    The producer takes an event only when the pacer lets it go, so event time ≈ send time
    and the event-time latency measures the pipeline rather than the simulated calendar.
    """
    for event in events:
        ms = time.time_ns() // 1_000_000
        value = event.value
        if value.__class__ is not bytes:
            value = {**value, "event_time": iso(ms)}
        yield SimEvent(event.kind, event.key, value, ms / 1000)


def produce_paced(events: Iterable[SimEvent], settings: Settings, rate: float) -> ProduceStats:
    return produce(stamped_now(events), settings, rate=rate, progress=False)
