"""The run: every customer's days merged into one stream in order of emission.

Each customer's simulated days start at its own hour, so at any moment only about half a
day of events per customer waits in the heap: memory grows with the number of customers,
never with the length of the run. A day's events come from a random stream seeded by
(run seed, customer index, day number), which makes the output independent of how the
customers' schedules interleave.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from heapq import heapify, heappop, heappush
from itertools import count
from typing import Any

from crmstream.simulator.behaviour import live_day
from crmstream.simulator.clock import DAY
from crmstream.simulator.config import SimEvent, SimulationConfig
from crmstream.simulator.faults import deliver
from crmstream.simulator.population import World
from crmstream.simulator.records import customer_record
from crmstream.simulator.truth import GroundTruth


def simulate(config: SimulationConfig, truth: GroundTruth | None = None) -> Iterator[SimEvent]:
    """Yield the run's events, roughly in simulated-time order.

    Every customer's reference record comes first, at the start time. If `truth` is
    given it is completed when the generator finishes or is closed, so close a
    generator you stop early (e.g. with `contextlib.closing`).
    """
    world = World(config)
    start = world.start
    end = world.end
    start_ms = round(start * 1000)
    sequence = count()
    events: Counter[str] = Counter()
    now = start
    # Heap entries: (emission time, tie-breaker, event, tags), or for "generate this
    # customer's next day": (day start, tie-breaker, None, (customer, day number)).
    # Day 0 begins before the start and is cut short by it.
    heap: list[tuple[float, int, SimEvent | None, Any]] = []
    try:
        for index in range(config.customers):
            c = world.customer(index)
            record = SimEvent("customers", c.cid, customer_record(c, start_ms), start_ms / 1000)
            events["customers"] += 1
            if truth is not None:
                truth.announced(c.cid, c.needs)
            yield record
            heap.append((start, next(sequence), None, (c, 0)))
        heapify(heap)
        rng = world.rng
        while heap:
            emit, _, event, payload = heappop(heap)
            now = emit
            if event is None:
                c, day = payload
                day_start = start + c.offset + (day - 1) * DAY
                rng.seed(world.stream_key(c.index, day))
                items = live_day(c, rng, world, day_start)
                for entry_emit, entry_event, tags in deliver(items, c.cid, rng, config):
                    heappush(heap, (entry_emit, next(sequence), entry_event, tags))
                following = day_start + DAY
                if following < end and following < c.silent_from:
                    heappush(heap, (following, next(sequence), None, (c, day + 1)))
                continue
            if payload:
                if truth is not None:
                    truth.observe(event, payload)
                if event.value.__class__ is bytes:
                    yield event
                    continue
            events[event.kind] += 1
            yield event
    finally:
        if truth is not None:
            truth.finish(config, world.churn_plans, world.fraud_episodes, events, now)
