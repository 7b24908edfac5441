"""Per-event cost of each step, measured in-process over the same events.

Each step runs over every event before the next step starts (decode all, then profile
all, ...), with the very objects the flow builds (`Floor`), so a step's time is its own.
Inside the model step, the methods of each model of a shard are wrapped with timers
(outermost call only), which splits `ModelShard.handle` into churn, anomaly and offers
without copying it. The Redis write is `RedisWriter.write` on batches, against the
benchmark's private redis-server.

Run as a child: `python -m benchmarks.breakdown --customers C --days D --seed S
--events N --result out.json`, with the settings in CRMSTREAM_* variables.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import inspect
import json
import pickle
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, run_main

import online_models.shard as shard_module
from benchmarks.floor import Floor
from benchmarks.workload import Workload, as_messages, generate, mix
from crmstream.settings import load_settings
from online_models.shard import ModelShard, shard_of
from operators.decisions import DecisionState
from operators.profile import CustomerState
from operators.records import Event, ScoreRequest

# Which group of the report a timed component belongs to.
_REASON_GROUPS = {"churn_reasons": "churn", "anomaly_reasons": "anomaly"}


class Timers:
    """Outermost-call timers: nested timed calls count only in their caller."""

    def __init__(self) -> None:
        self.depth = 0
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        clock = time.perf_counter

        def timed(*args: Any, **kwargs: Any) -> Any:
            if self.depth:
                return function(*args, **kwargs)
            self.depth = 1
            started = clock()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[name] += clock() - started
                self.calls[name] += 1
                self.depth = 0

        return timed


def _instrument_shard(shard: ModelShard, timers: Timers) -> None:
    """Wrap the public methods of each model object the shard holds."""
    for role, model in list(vars(shard).items()):
        module = type(model).__module__
        if not module.startswith("online_models"):
            continue
        for name, member in inspect.getmembers(type(model)):
            if name.startswith("_") or not callable(member) or isinstance(member, type):
                continue
            bound = getattr(model, name)
            # __slots__ classes cannot take instance attributes: those stay untimed.
            with contextlib.suppress(AttributeError, TypeError):
                setattr(model, name, timers.wrap(f"{role}.{name}", bound))


def _instrument_module(timers: Timers) -> dict[str, Any]:
    """Wrap the operators' helpers `online_models.shard` calls (reasons); returns originals."""
    originals: dict[str, Any] = {}
    for name, value in vars(shard_module).items():
        if inspect.isfunction(value) and value.__module__.startswith("operators."):
            originals[name] = value
            setattr(shard_module, name, timers.wrap(name, value))
    return originals


def _group(component: str) -> str:
    if component in _REASON_GROUPS:
        return _REASON_GROUPS[component]
    role, _, method = component.partition(".")
    if role in ("churn", "offers") and method.startswith("learn"):
        return "learning from labels"
    return role


class _Discard(DynamicSink[Any]):
    class _Partition(StatelessSinkPartition[Any]):
        def write_batch(self, items: list[Any]) -> None:
            pass

    def build(self, step_id: str, worker_index: int, worker_count: int) -> StatelessSinkPartition:
        return self._Partition()


def _pass_through(resume: Any) -> StatefulBatchLogic:
    class PassThrough(StatefulBatchLogic):
        def on_batch(self, values: list[Any]) -> tuple[list[Any], bool]:
            return values, StatefulBatchLogic.RETAIN

        def snapshot(self) -> None:
            return None

    return PassThrough()


def dataflow_cost(keys: list[tuple[str, str]], batch: int = 1000) -> dict[str, Any]:
    """Bytewax's own CPU per event for the engine's shape, with every step doing nothing.

    The same keys as the engine (customer, then model shard, then customer again) through
    three keyed stateful steps, in one worker: what the stream engine costs before any of
    the engine's work. Recovery is off here; its snapshots are measured by the throughput
    runs (recovery on and off).
    """
    flow = Dataflow("shape")
    stream = op.input("in", flow, TestingSource(keys, batch_size=batch))
    for step, key in (("profile", 0), ("models", 1), ("decide", 0)):
        keyed = op.key_on(f"by_{step}", stream, lambda item, key=key: item[key])
        stream = op.key_rm(f"{step}_out", op.stateful_batch(step, keyed, _pass_through))
    op.output("out", stream, _Discard())
    gc.collect()
    started = time.process_time()
    run_main(flow)
    cpu = time.process_time() - started
    return {"events": len(keys), "cpu_us_per_event": 1e6 * cpu / len(keys), "keyed_steps": 3}


def exchange_cost(objects: dict[str, list[Any]]) -> dict[str, Any]:
    """CPU to move one item between processes (pickle out, pickle in), per exchange.

    With P processes an item crosses each of the engine's three exchanges with
    probability (P - 1) / P, paying this on both sides.
    """
    per_item: dict[str, float] = {}
    for name, items in objects.items():
        sample = items[-5000:]
        started = time.process_time()
        for item in sample:
            pickle.loads(pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL))
        per_item[name] = 1e6 * (time.process_time() - started) / max(1, len(sample))
    sizes = {
        name: sum(len(pickle.dumps(i, protocol=pickle.HIGHEST_PROTOCOL)) for i in items[-5000:])
        / max(1, len(items[-5000:]))
        for name, items in objects.items()
    }
    return {
        "cpu_us_per_item": per_item,
        "bytes_per_item": sizes,
        "cpu_us_per_event_two_processes": 0.5 * sum(per_item.values()),
    }


def measure(workload: Workload, batch: int = 1000) -> dict[str, Any]:
    settings = load_settings()
    events = generate(workload)
    messages = as_messages(events, settings, settings.kafka.topics.partitions)
    floor = Floor(settings)
    floor.writer.client.flushall()
    gc.collect()
    clock = time.perf_counter
    cpu_clock = time.process_time
    seconds: dict[str, float] = {}
    cpu: dict[str, float] = {}
    n = len(messages)

    # decode
    decode = floor.decode
    started, cpu_started = clock(), cpu_clock()
    decoded = [decode(m) for m in messages]
    seconds["decode"], cpu["decode"] = clock() - started, cpu_clock() - cpu_started
    valid = [r for r in decoded if isinstance(r, Event)]

    # profile (state lookup included, as the keyed step does it)
    apply = floor.profile.apply
    customers: dict[str, CustomerState] = {}
    requests: list[ScoreRequest] = []
    dead = n - len(valid)
    started, cpu_started = clock(), cpu_clock()
    for event in valid:
        state = customers.get(event.customer_id)
        if state is None:
            state = customers[event.customer_id] = CustomerState()
        for result in apply(state, event):
            if isinstance(result, ScoreRequest):
                requests.append(result)
            else:
                dead += 1
    seconds["profile"], cpu["profile"] = clock() - started, cpu_clock() - cpu_started

    # models, with each model's methods timed
    timers = Timers()
    originals = _instrument_module(timers)
    shards: dict[str, ModelShard] = {}
    offer_ids = floor.offer_ids
    count = floor.shard_count
    try:
        scored = []
        started, cpu_started = clock(), cpu_clock()
        for request in requests:
            key = shard_of(request.customer_id, count)
            shard = shards.get(key)
            if shard is None:
                shard = shards[key] = ModelShard(floor.choice)
                _instrument_shard(shard, timers)
            scored.append(shard.handle(request, offer_ids))
        seconds["models"], cpu["models"] = clock() - started, cpu_clock() - cpu_started
    finally:
        for name, value in originals.items():
            setattr(shard_module, name, value)

    # decisions
    decide = floor.decisions.decide
    decided: dict[str, DecisionState] = {}
    outputs = []
    started, cpu_started = clock(), cpu_clock()
    for item in scored:
        customer_id = item.request.customer_id
        state = decided.get(customer_id)
        if state is None:
            state = decided[customer_id] = DecisionState()
        outputs.append(decide(state, item))
    seconds["decisions"], cpu["decisions"] = clock() - started, cpu_clock() - cpu_started

    # Redis, in the engine's batches
    write = floor.writer.write
    started, cpu_started = clock(), cpu_clock()
    for i in range(0, len(outputs), batch):
        write(outputs[i : i + batch])
    seconds["redis_write"], cpu["redis_write"] = clock() - started, cpu_clock() - cpu_started
    floor.writer.client.close()

    shape = dataflow_cost([(r.customer_id, shard_of(r.customer_id, count)) for r in requests])
    exchange = exchange_cost({"event": valid, "score_request": requests, "scored": scored})
    applied = len(outputs)
    per_event_us = {
        "decode": 1e6 * seconds["decode"] / n,
        "profile": 1e6 * seconds["profile"] / max(1, len(valid)),
        "models": 1e6 * seconds["models"] / max(1, applied),
        "decisions": 1e6 * seconds["decisions"] / max(1, applied),
        "redis_write": 1e6 * seconds["redis_write"] / max(1, applied),
    }
    components = {
        name: {
            "calls": timers.calls[name],
            "seconds": timers.seconds[name],
            "us_per_call": 1e6 * timers.seconds[name] / timers.calls[name],
            "us_per_applied_event": 1e6 * timers.seconds[name] / max(1, applied),
            "group": _group(name),
        }
        for name in sorted(timers.seconds, key=lambda k: -timers.seconds[k])
    }
    groups: dict[str, float] = defaultdict(float)
    for info in components.values():
        groups[info["group"]] += info["us_per_applied_event"]
    timed = sum(groups.values())
    groups["other in ModelShard.handle"] = per_event_us["models"] - timed
    # The cost of one event through every step (dead letters are cheaper and rarer).
    total_us = sum(per_event_us.values())
    steps = {k: v for k, v in per_event_us.items() if k != "models"}
    steps.update({f"models: {k}": v for k, v in groups.items()})
    slowest = sorted(steps.items(), key=lambda kv: -kv[1])
    return {
        "events": n,
        "mix": mix(events),
        "applied": applied,
        "not_applied": dead,
        "customers": len(customers),
        "model_shards": len(shards),
        "redis_batch": batch,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "cpu_us_per_event": {
            step: 1e6
            * cpu[step]
            / max(1, n if step == "decode" else len(valid) if step == "profile" else applied)
            for step in cpu
        },
        "us_per_event": per_event_us,
        "us_per_event_total": total_us,
        "single_core_ceiling_events_per_second": 1e6 / total_us if total_us else None,
        "model_groups_us_per_event": dict(groups),
        "model_components": components,
        "slowest_steps": [{"step": k, "us_per_event": v} for k, v in slowest[:5]],
        "dataflow_shape": shape,
        "exchange": exchange,
        "notes": (
            "decode is per input record; profile per valid event; models, decisions and "
            "redis_write per applied event (ScoreRequest). Model components are timed "
            "around each model method (outermost call), so 'other in ModelShard.handle' "
            "is the shard's own code: reasons not listed, Scored, versions. Wall time; "
            "cpu_us_per_event is this process's CPU time (for Redis it leaves out the wait "
            "for redis-server)."
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, required=True)
    parser.add_argument("--days", type=float, required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--result", type=Path, required=True)
    args = parser.parse_args()
    workload = Workload(args.customers, args.days, args.seed, args.events)
    args.result.write_text(json.dumps(measure(workload), indent=2))


if __name__ == "__main__":
    main()
