"""Per-customer state at 10k, 100k and 1M customers: memory, snapshots, throughput.

Two steps, each in a fresh process so that resident memory is measured cleanly:

`template`: a sample of T simulated customers lives through D days of events (all but
the last H days) in-process through the real steps (decode, `ProfileLogic.apply`,
`ModelShard.handle`, `DecisionLogic.decide`); each customer's CustomerState and
DecisionState are then pickled, exactly as the engine's keyed steps snapshot them. The
last H days are kept back, decoded.

`population`: N customers are restored from those snapshots (customer i from template
i mod T), the way the engine restores keyed state after a restart, each wrapped in the
flow's own keyed-step logic. That gives every customer of a population a realistic
~30-day state without replaying N x 100 events (which would take hours at 1M). Then:
resident memory per customer, pickled size, the time to snapshot the keys one epoch
touches, and the throughput of the kept-back days routed to customers spread over the
whole population (the same number of events at every population size).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import pickle
import random
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.floor import Floor
from benchmarks.workload import Workload, as_messages, generate
from crmstream.settings import load_settings
from flows.engine import _KeyedStep, _ProfileStep, profile_lifetime
from online_models.shard import ModelShard, shard_of
from operators.decisions import DecisionState
from operators.records import Event, ScoreRequest

DAY = 86400.0


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def deep_size(obj: Any, seen: set[int]) -> int:
    """Bytes of `obj` and everything it references that `seen` does not hold yet."""
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(deep_size(k, seen) + deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, (list, tuple, set, frozenset)):
        size += sum(deep_size(item, seen) for item in obj)
    elif hasattr(obj, "__slots__") and not isinstance(obj, (str, bytes)):
        for cls in type(obj).__mro__:
            for name in getattr(cls, "__slots__", ()):
                if hasattr(obj, name):
                    size += deep_size(getattr(obj, name), seen)
    elif hasattr(obj, "__dict__"):
        size += deep_size(vars(obj), seen)
    return size


def live_state_sizes(states: list[Any]) -> dict[str, Any]:
    """Deep size per customer of live states, by field.

    Objects shared between customers (interned keys, small ints, constants) are counted
    once over all customers, as they exist once in memory.
    """
    seen: set[int] = set()
    by_field: dict[str, int] = {}
    total = 0
    for state in states:
        total += sys.getsizeof(state)
        seen.add(id(state))
        for name in type(state).__slots__:
            size = deep_size(getattr(state, name), seen)
            by_field[name] = by_field.get(name, 0) + size
            total += size
    n = max(1, len(states))
    return {
        "bytes_per_customer": total / n,
        "by_field": {k: v / n for k, v in sorted(by_field.items(), key=lambda kv: -kv[1])},
    }


def pickled_sizes(states: list[Any]) -> dict[str, float]:
    n = max(1, len(states))
    out: dict[str, float] = {}
    for name in type(states[0]).__slots__:
        out[name] = (
            sum(len(pickle.dumps(getattr(s, name), pickle.HIGHEST_PROTOCOL)) for s in states) / n
        )
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def build_template(workload: Workload, holdback_days: float, out: Path) -> dict[str, Any]:
    settings = load_settings()
    events = generate(workload)
    cutoff = workload.config().end_ts - holdback_days * DAY
    floor = Floor(settings)
    messages = as_messages(events, settings, settings.kafka.topics.partitions)
    live = [m for m, e in zip(messages, events, strict=True) if e.event_time < cutoff]
    kept = [m for m, e in zip(messages, events, strict=True) if e.event_time >= cutoff]
    started = time.perf_counter()
    floor.process(live)
    build_seconds = time.perf_counter() - started
    order = sorted(floor.customers)
    index = {cid: i for i, cid in enumerate(order)}
    holdback: list[tuple[int, Event]] = []
    for message in kept:
        record = floor.decode(message)
        if isinstance(record, Event) and record.customer_id in index:
            holdback.append((index[record.customer_id], record))
    states = [
        (
            pickle.dumps(floor.customers[cid], protocol=pickle.HIGHEST_PROTOCOL),
            pickle.dumps(floor.decided.get(cid) or DecisionState(), pickle.HIGHEST_PROTOCOL),
        )
        for cid in order
    ]
    window_events = [len(floor.customers[cid].windows) for cid in order]
    live_customers = [floor.customers[cid] for cid in order]
    live_decisions = [floor.decided[cid] for cid in order if cid in floor.decided]
    floor.writer.client.close()
    info = {
        "template_customers": len(order),
        "days": workload.days,
        "holdback_days": holdback_days,
        "events_lived": len(live),
        "events_per_customer_lived": len(live) / max(1, len(order)),
        "events_in_30d_window_per_customer": sum(window_events) / max(1, len(window_events)),
        "holdback_events": len(holdback),
        "build_seconds": build_seconds,
        "build_us_per_event": 1e6 * build_seconds / max(1, len(live)),
        "pickled_bytes_per_customer": {
            "customer_state": sum(len(a) for a, _ in states) / max(1, len(states)),
            "decision_state": sum(len(b) for _, b in states) / max(1, len(states)),
        },
        "live_bytes_per_customer": {
            "customer_state": live_state_sizes(live_customers),
            "decision_state": live_state_sizes(live_decisions),
        },
        "restored_bytes_per_customer": {
            "customer_state": live_state_sizes([pickle.loads(a) for a, _ in states]),
            "decision_state": live_state_sizes([pickle.loads(b) for _, b in states]),
        },
        "pickled_bytes_by_field": {
            "customer_state": pickled_sizes(live_customers),
            "decision_state": pickled_sizes(live_decisions) if live_decisions else {},
        },
    }
    with out.open("wb") as f:
        pickle.dump({"info": info, "states": states, "holdback": holdback}, f)
    return info


def measure_population(
    template_path: Path, customers: int, epoch_events: int, rounds: int, seed: int
) -> dict[str, Any]:
    settings = load_settings()
    with template_path.open("rb") as f:
        template = pickle.load(f)
    states: list[tuple[bytes, bytes]] = template["states"]
    holdback: list[tuple[int, Event]] = template["holdback"]
    size = len(states)
    floor = Floor(settings)
    lifetime = profile_lifetime(floor.profile, settings)
    decide = floor.decisions.decide

    def decide_step(state: DecisionState, scored: Any) -> list:
        return [decide(state, scored)]

    # Restored in stages, resident memory read after each: what each part costs per key.
    gc.collect()
    before = rss_bytes()
    resident: dict[str, float] = {}
    mark = before

    def stage(name: str) -> None:
        nonlocal mark
        gc.collect()
        now = rss_bytes()
        resident[name] = (now - mark) / customers
        mark = now

    started = time.perf_counter()
    loads = pickle.loads
    keys = [f"C{i:08d}" for i in range(customers)]
    stage("keys")
    customer_states = [loads(states[i % size][0]) for i in range(customers)]
    stage("customer_state")
    decision_states = [loads(states[i % size][1]) for i in range(customers)]
    stage("decision_state")
    profiles: dict[str, _ProfileStep] = {}
    decisions: dict[str, _KeyedStep] = {}
    for cid, customer, decision in zip(keys, customer_states, decision_states, strict=True):
        profiles[cid] = _ProfileStep(customer, lifetime)
        decisions[cid] = _KeyedStep(decision, decide_step)
    del keys, customer_states, decision_states
    restore_seconds = time.perf_counter() - started
    stage("step_wrappers_and_key_maps")
    after = rss_bytes()

    # Throughput: the kept-back days, each round sent to other customers of the population.
    rng = random.Random(seed)
    clones = max(1, customers // size)
    rounds = max(2, min(rounds, clones))
    picks = {
        t: rng.sample(range(clones), rounds)
        if clones >= rounds
        else [rng.randrange(clones) for _ in range(rounds)]
        for t in range(size)
    }
    shards: dict[str, ModelShard] = {}
    offer_ids = floor.offer_ids
    count = floor.shard_count
    touched: set[str] = set()
    applied = 0
    handled = 0
    started = time.perf_counter()
    cpu_started = time.process_time()
    for r in range(rounds):
        if r == 1:  # round 0 warms up the fresh model shards; it is not timed
            touched.clear()
            handled = applied = 0
            started = time.perf_counter()
            cpu_started = time.process_time()
        for t, event in holdback:
            index = t + size * picks[t][r]
            if index >= customers:
                index = t
            cid = f"C{index:08d}"
            touched.add(cid)
            handled += 1
            out, _ = profiles[cid].on_batch([event])
            for request in out:
                if not isinstance(request, ScoreRequest):
                    continue
                key = shard_of(cid, count)
                shard = shards.get(key)
                if shard is None:
                    shard = shards[key] = ModelShard(floor.choice)
                decisions[cid].on_batch([shard.handle(request, offer_ids)])
                applied += 1
    apply_seconds = time.perf_counter() - started
    apply_cpu = time.process_time() - cpu_started

    # One epoch's snapshot: every touched key of both keyed steps, plus each model shard.
    expected_touched = customers * (1 - math.exp(-epoch_events / customers))
    sample_size = min(customers, max(1, round(expected_touched)))
    sample = rng.sample(range(customers), sample_size)
    started = time.perf_counter()
    cpu_started = time.process_time()
    snapshot_bytes = 0
    for i in sample:
        cid = f"C{i:08d}"
        snapshot_bytes += len(profiles[cid].snapshot()) + len(decisions[cid].snapshot())
    snapshot_seconds = time.perf_counter() - started
    snapshot_cpu = time.process_time() - cpu_started
    started = time.perf_counter()
    shard_bytes = sum(len(pickle.dumps(s, pickle.HIGHEST_PROTOCOL)) for s in shards.values())
    shard_seconds = time.perf_counter() - started
    floor.writer.client.close()
    return {
        "customers": customers,
        "rss_before_mb": before / 2**20,
        "rss_after_mb": after / 2**20,
        "resident_bytes_per_customer": (after - before) / customers,
        "resident_bytes_by_part": resident,
        "restore_seconds": restore_seconds,
        "restore_us_per_customer": 1e6 * restore_seconds / customers,
        "throughput": {
            "events": handled,
            "applied": applied,
            "rounds_timed": rounds - 1,
            "touched_customers": len(touched),
            "seconds": apply_seconds,
            "events_per_second": handled / apply_seconds if apply_seconds else None,
            "us_per_event": 1e6 * apply_seconds / max(1, handled),
            "cpu_seconds": apply_cpu,
            "cpu_us_per_event": 1e6 * apply_cpu / max(1, handled),
            "events_per_cpu_second": handled / apply_cpu if apply_cpu else None,
            "steps": "profile + models + decisions (no Kafka, no Redis)",
        },
        "epoch_snapshot": {
            "epoch_events": epoch_events,
            "touched_keys": sample_size,
            "seconds_customer_keys": snapshot_seconds,
            "us_per_customer": 1e6 * snapshot_seconds / sample_size,
            "cpu_seconds_customer_keys": snapshot_cpu,
            "bytes": snapshot_bytes,
            "bytes_per_customer": snapshot_bytes / sample_size,
            "model_shards": len(shards),
            "seconds_model_shards": shard_seconds,
            "model_shard_bytes": shard_bytes,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    template = commands.add_parser("template")
    template.add_argument("--customers", type=int, required=True)
    template.add_argument("--days", type=float, required=True)
    template.add_argument("--seed", type=int, required=True)
    template.add_argument("--holdback-days", type=float, default=1.0)
    template.add_argument("--out", type=Path, required=True)
    template.add_argument("--result", type=Path, required=True)
    population = commands.add_parser("population")
    population.add_argument("--template", type=Path, required=True)
    population.add_argument("--customers", type=int, required=True)
    population.add_argument("--epoch-events", type=int, required=True)
    population.add_argument("--rounds", type=int, default=10)
    population.add_argument("--seed", type=int, default=1)
    population.add_argument("--result", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "template":
        workload = Workload(args.customers, args.days, args.seed, events=10**12)
        result = build_template(workload, args.holdback_days, args.out)
    else:
        result = measure_population(
            args.template, args.customers, args.epoch_events, args.rounds, args.seed
        )
    args.result.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
