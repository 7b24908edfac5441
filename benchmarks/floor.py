"""The floor: the engine's per-event work in a hand-written single-process loop.

One confluent-kafka Consumer assigned every input partition (no group), the very
functions the flow wires together (`make_decoder`, `ProfileLogic.apply`,
`ModelShard.handle`, `DecisionLogic.decide`), and the engine's own sinks (`RedisWriter`
with pipelined batches, the dead-letter sink), with plain dicts for per-key state. No
stream engine: this is the best one Python process can do per core, the yardstick the
engine's throughput is compared with.

Run as a child: `python -m benchmarks.floor --expect N --result out.json`, with the
settings in CRMSTREAM_* variables.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bytewax.connectors.kafka import KafkaError
from confluent_kafka import Consumer, TopicPartition

from crmstream.settings import Settings, load_settings
from flows.engine import EngineSteps
from online_models.shard import ModelShard, shard_of
from operators.decisions import DecisionState
from operators.profile import CustomerState
from operators.records import DeadLetter, Event, Output, ScoreRequest
from sinks.dead_letter import DeadLetterSink
from sinks.redis_sink import RedisWriter
from sources.kafka import source_message


class InProcessSteps:
    """The engine's steps after decoding, in one process: profile, model shard, decision.

    Per-customer state is the caller's; model shards are kept here, one per shard key.
    """

    def __init__(self, steps: EngineSteps) -> None:
        self.apply, self.decide = steps.profile.apply, steps.decisions.decide
        self.choice, self.shard_count = steps.models, steps.shards
        self.offer_ids = steps.decisions.offer_ids
        self.shards: dict[str, ModelShard] = {}

    def run(
        self, customer: CustomerState, decision: DecisionState, event: Event
    ) -> list[Output | DeadLetter]:
        out: list[Output | DeadLetter] = []
        shards = self.shards
        for result in self.apply(customer, event):
            if not isinstance(result, ScoreRequest):
                out.append(result)
                continue
            key = shard_of(result.customer_id, self.shard_count)
            shard = shards.get(key)
            if shard is None:
                shard = shards[key] = ModelShard(self.choice)
            out.append(self.decide(decision, shard.handle(result, self.offer_ids)))
        return out


class Floor:
    """The engine's steps over plain dicts; `process` takes one batch of Kafka messages."""

    def __init__(self, settings: Settings) -> None:
        steps = EngineSteps.from_settings(settings)
        self.decode, self.profile, self.decisions = steps.decode, steps.profile, steps.decisions
        self.steps = InProcessSteps(steps)
        self.choice, self.shard_count = steps.models, steps.shards
        self.offer_ids = self.decisions.offer_ids
        self.customers: dict[str, CustomerState] = {}
        self.decided: dict[str, DecisionState] = {}
        self.writer = RedisWriter(settings.redis, settings.lifecycle.dormant_after_days * 86400.0)
        kafka = settings.kafka
        self.dead_letters = DeadLetterSink(kafka.client_config(), kafka.topics.dead_letter).build(
            "dead_letter_topic", 0, 1
        )

    def process(self, messages: list[Any]) -> tuple[list[Output], list[DeadLetter]]:
        outputs: list[Output] = []
        dead: list[DeadLetter] = []
        customers, decided, run, decode = self.customers, self.decided, self.steps.run, self.decode
        for message in messages:
            record = decode(message)
            if not isinstance(record, Event):
                dead.append(record)
                continue
            customer_id = record.customer_id
            state = customers.get(customer_id)
            if state is None:
                state = customers[customer_id] = CustomerState()
            decision = decided.get(customer_id)
            if decision is None:
                decision = decided[customer_id] = DecisionState()
            for result in run(state, decision, record):
                if isinstance(result, DeadLetter):
                    dead.append(result)
                else:
                    outputs.append(result)
        return outputs, dead


def _source_messages(raw: list[Any]) -> list[Any]:
    """confluent-kafka messages as the engine's Kafka source hands them to the decoder."""
    out: list[Any] = []
    for msg in raw:
        message = source_message(msg)
        error = msg.error()
        out.append(message if error is None else KafkaError(error, message))
    return out


def run_floor(
    settings: Settings,
    expect: int,
    batch: int = 1000,
    idle_timeout: float = 30.0,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, Any]:
    """Read every input partition from offset 0 until `expect` records were handled."""
    kafka = settings.kafka
    consumer = Consumer(
        {
            **kafka.client_config(),
            "group.id": "crmstream-bench-floor",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
        }
    )
    partitions = kafka.topics.partitions
    consumer.assign(
        [TopicPartition(topic, p, 0) for topic in kafka.topics.inputs() for p in range(partitions)]
    )
    floor = Floor(settings)
    handled = 0
    outputs_total = 0
    dead_total = 0
    batches = 0
    seconds = {"consume": 0.0, "process": 0.0, "redis_write": 0.0, "dead_letter_write": 0.0}
    first_applied: tuple[float, int, float] | None = None
    last_progress = clock()
    started = clock()
    try:
        while handled < expect:
            t0 = clock()
            raw = consumer.consume(batch, 0.05)
            t1 = clock()
            seconds["consume"] += t1 - t0
            if not raw:
                if t1 - last_progress > idle_timeout:
                    break
                continue
            messages = _source_messages(raw)
            outputs, dead = floor.process(messages)
            t2 = clock()
            if outputs:
                floor.writer.write(outputs)
            t3 = clock()
            if dead:
                floor.dead_letters.write_batch(dead)
            t4 = clock()
            seconds["process"] += t2 - t1
            seconds["redis_write"] += t3 - t2
            seconds["dead_letter_write"] += t4 - t3
            handled += len(messages)
            outputs_total += len(outputs)
            dead_total += len(dead)
            batches += 1
            last_progress = t4
            if first_applied is None:
                first_applied = (t4, handled, time.process_time())
    finally:
        consumer.close()
        floor.dead_letters.close()
        floor.writer.client.close()
    finished = last_progress
    cpu_finished = time.process_time()
    result: dict[str, Any] = {
        "expected": expect,
        "handled": handled,
        "outputs": outputs_total,
        "dead_letters": dead_total,
        "batches": batches,
        "batch_size": batch,
        "customers": len(floor.customers),
        "model_shards": len(floor.steps.shards),
        "seconds_total": finished - started,
        "seconds_by_phase": seconds,
        "complete": handled >= expect,
    }
    if first_applied is not None and finished > first_applied[0]:
        span = finished - first_applied[0]
        result["seconds_first_to_last"] = span
        result["events_per_second"] = (handled - first_applied[1]) / span
        # CPU seconds of this process (all its threads): robust to other load on the machine.
        cpu = cpu_finished - first_applied[2]
        result["cpu_seconds_first_to_last"] = cpu
        result["events_per_cpu_second"] = (handled - first_applied[1]) / cpu if cpu > 0 else None
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    result = run_floor(load_settings(), args.expect, args.batch)
    args.result.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
