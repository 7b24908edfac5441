"""The peer: the floor's per-event work as a Quix Streams application.

The same backlog, broker and Redis as the floor and the engine; the engine's own steps
(`EngineSteps.from_settings`: decoder, `ProfileLogic.apply`, `ModelShard.handle`,
`DecisionLogic.decide`) and sinks (`RedisWriter`, the dead-letter sink) inside a Quix
`Application`: the four input topics concatenated, one stateful step keyed by the message
key (the producer keys every record by customer id), a `BatchingSink` that hands Redis
chunks of 1,000 outputs at each checkpoint.

`--state quix` keeps each customer's `CustomerState` and `DecisionState` in Quix's State
(RocksDB, pickled, with changelog topics): what a Quix application would do. `--state
memory` keeps them in plain dicts, to separate the cost of Quix's state from the rest of
the framework. The model shards live in process memory in both: a trained shard pickles
to hundreds of KB, far too much to serialise on every event.

Run as a child with an interpreter that has quixstreams (it pins an older confluent-kafka
than the engine's): `python -m benchmarks.peer --expect N --result out.json --workdir D`,
with the settings in CRMSTREAM_* variables.
"""

from __future__ import annotations

import argparse
import json
import logging
import pickle
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bytewax.connectors.kafka import KafkaSourceMessage
from quixstreams import Application, State, message_context
from quixstreams.kafka.configuration import ConnectionConfig
from quixstreams.models import HeadersTuples, TopicConfig
from quixstreams.sinks import BatchingSink, SinkBatch
from quixstreams.state.rocksdb import RocksDBOptions

from benchmarks.floor import InProcessSteps
from crmstream.settings import Settings, load_settings
from flows.engine import EngineSteps
from operators.decisions import DecisionState
from operators.profile import CustomerState
from operators.records import DeadLetter, Event, Output
from sinks.dead_letter import DeadLetterSink
from sinks.redis_sink import RedisWriter

REDIS_CHUNK = 1000  # the floor's batch: RedisWriter.write gets at most this many outputs

# Tansu makes every consumer-group join wait about session.timeout.ms / 2; Quix subscribes
# (it needs group rebalances for its state), so a short session keeps the join to ~1-2 s.
CONSUMER_EXTRA = {"session.timeout.ms": "2000", "heartbeat.interval.ms": "200"}
# Concatenated topics make Quix read in batches (up to max_partition_buffer_size, 10,000)
# to order records by timestamp across topics; each batch waits up to this long to fill.
# Quix's default (1 s) leaves the process idle whenever fewer records are at hand; the
# floor waits at most 0.05 s for its batch of 1,000.
POLL_TIMEOUT = 0.05


@dataclass
class Progress:
    """What the steps and sinks saw, and when (perf_counter, process CPU seconds)."""

    clock: Callable[[], float] = time.perf_counter
    handled: int = 0
    outputs: int = 0
    dead_letters: int = 0
    key_mismatches: int = 0
    redis_batches: int = 0
    first: tuple[float, float] | None = None  # when the first record reached the steps
    last_write: tuple[float, float] | None = None  # after the latest sink write
    handled_at_first: int = 0
    seconds: dict[str, float] = field(
        default_factory=lambda: {"steps": 0.0, "redis_write": 0.0, "dead_letter_write": 0.0}
    )

    def now(self) -> tuple[float, float]:
        return self.clock(), time.process_time()


class RedisOutputs(BatchingSink):
    """Outputs batched per input partition by Quix, written at each checkpoint."""

    def __init__(self, writer: RedisWriter, progress: Progress) -> None:
        super().__init__()
        self.writer, self.progress = writer, progress

    def write(self, batch: SinkBatch) -> None:
        started = self.progress.clock()
        for chunk in batch.iter_chunks(REDIS_CHUNK):
            outputs = [item.value for item in chunk]
            self.writer.write(outputs)
            self.progress.redis_batches += 1
            self.progress.outputs += len(outputs)
        self.progress.last_write = self.progress.now()
        self.progress.seconds["redis_write"] += self.progress.last_write[0] - started


class DeadLetters(BatchingSink):
    """Dead letters through the engine's own dead-letter sink (a Kafka producer)."""

    def __init__(self, sink: Any, progress: Progress) -> None:
        super().__init__()
        self.sink, self.progress = sink, progress

    def write(self, batch: SinkBatch) -> None:
        started = self.progress.clock()
        dead = [item.value for item in batch]
        self.sink.write_batch(dead)
        self.progress.dead_letters += len(dead)
        self.progress.last_write = self.progress.now()
        self.progress.seconds["dead_letter_write"] += self.progress.last_write[0] - started


class PeerSteps:
    """The floor's per-record work, with per-customer state either in Quix State or in dicts."""

    def __init__(self, settings: Settings, progress: Progress, expect: int, app: Any) -> None:
        steps = EngineSteps.from_settings(settings)
        self.decode = steps.decode
        self.results = InProcessSteps(steps).run
        self.customers: dict[str, CustomerState] = {}
        self.decided: dict[str, DecisionState] = {}
        self.progress, self.expect, self.app = progress, expect, app

    def decode_record(
        self, value: bytes, key: bytes, timestamp: int, headers: HeadersTuples
    ) -> Event | DeadLetter:
        """Hand the decoder what the engine's Kafka source would; count the record."""
        progress = self.progress
        if progress.first is None:
            progress.first = progress.now()
        context = message_context()
        message = KafkaSourceMessage(
            key=key,
            value=value,
            topic=context.topic,
            headers=list(headers or []),
            latency=None,
            offset=context.offset,
            partition=context.partition,
            timestamp=(1, timestamp),
        )
        record = self.decode(message)
        progress.handled += 1
        if isinstance(record, Event) and key != record.customer_id.encode():
            # Quix state follows the message key; the engine re-keys by customer id.
            progress.key_mismatches += 1
        if progress.handled >= self.expect:
            self.app.stop()  # the loop ends, then Quix's final checkpoint flushes the sinks
        return record

    def with_quix_state(self, record: Event | DeadLetter, state: State) -> list[Any]:
        if not isinstance(record, Event):
            return [record]
        started = self.progress.clock()
        customer = state.get("customer") or CustomerState()
        decision = state.get("decision") or DecisionState()
        out = self.results(customer, decision, record)
        state.set("customer", customer)
        state.set("decision", decision)
        self.progress.seconds["steps"] += self.progress.clock() - started
        return out

    def with_dict_state(self, record: Event | DeadLetter) -> list[Any]:
        if not isinstance(record, Event):
            return [record]
        started = self.progress.clock()
        customer_id = record.customer_id
        customer = self.customers.get(customer_id)
        if customer is None:
            customer = self.customers[customer_id] = CustomerState()
        decision = self.decided.get(customer_id)
        if decision is None:
            decision = self.decided[customer_id] = DecisionState()
        out = self.results(customer, decision, record)
        self.progress.seconds["steps"] += self.progress.clock() - started
        return out


def _fill_retention(topic: Any) -> str | None:
    """Give Quix the retention it insists on when the broker does not report one.

    Quix derives its changelog topics' settings from the input topics' `retention.ms`, read
    with DescribeConfigs, and fails (KeyError) without it. Tansu answers DescribeConfigs
    with only the settings given when the topic was created, and keeps everything: -1 says
    exactly that.
    """
    config = topic.broker_config
    if "retention.ms" in config.extra_config:
        return None
    topic.broker_config = TopicConfig(
        num_partitions=config.num_partitions,
        replication_factor=config.replication_factor,
        extra_config={**config.extra_config, "retention.ms": "-1"},
    )
    return f"{topic.name}: broker reported no retention.ms; set to -1 for Quix"


def _watchdog(app: Any, progress: Progress, idle_timeout: float, join_timeout: float) -> None:
    """Stop the application when nothing moves: no first record, or no progress for a while."""
    started = time.monotonic()
    seen, seen_at = -1, started
    while True:
        time.sleep(0.5)
        now = time.monotonic()
        if progress.handled != seen:
            seen, seen_at = progress.handled, now
        if progress.first is None and now - started > join_timeout:
            break
        if progress.first is not None and now - seen_at > idle_timeout:
            break
    app.stop()


def run_peer(
    settings: Settings,
    expect: int,
    workdir: Path,
    state_kind: str = "quix",
    idle_timeout: float = 30.0,
    join_timeout: float = 120.0,
) -> dict[str, Any]:
    """Consume every input topic from the start in a fresh group until `expect` records."""
    started = time.perf_counter()
    kafka = settings.kafka
    group = f"crmstream-bench-peer-{uuid.uuid4().hex[:8]}"
    app = Application(
        broker_address=ConnectionConfig.from_librdkafka_dict(kafka.client_config()),
        consumer_group=group,
        auto_offset_reset="earliest",
        consumer_extra_config=CONSUMER_EXTRA,
        consumer_poll_timeout=POLL_TIMEOUT,
        processing_guarantee="at-least-once",
        state_dir=workdir / "state",
        rocksdb_options=RocksDBOptions(dumps=pickle.dumps, loads=pickle.loads),
        use_changelog_topics=True,
        auto_create_topics=True,
        loglevel="INFO",
    )
    progress = Progress()
    steps = PeerSteps(settings, progress, expect, app)
    topics = [
        app.topic(name, value_deserializer="bytes", key_deserializer="bytes")
        for name in kafka.topics.inputs()
    ]
    workarounds = [note for topic in topics if (note := _fill_retention(topic))]
    frames = [app.dataframe(topic) for topic in topics]
    sdf = frames[0]
    for other in frames[1:]:
        sdf = sdf.concat(other)
    sdf = sdf.apply(steps.decode_record, metadata=True)
    if state_kind == "quix":
        sdf = sdf.apply(steps.with_quix_state, stateful=True, expand=True)
    else:
        sdf = sdf.apply(steps.with_dict_state, expand=True)
    writer = RedisWriter(settings.redis, settings.lifecycle.dormant_after_days * 86400.0)
    dead_sink = DeadLetterSink(kafka.client_config(), kafka.topics.dead_letter).build(
        "dead_letter_topic", 0, 1
    )
    sdf.filter(lambda r: isinstance(r, Output)).sink(RedisOutputs(writer, progress))
    sdf.filter(lambda r: not isinstance(r, Output)).sink(DeadLetters(dead_sink, progress))
    threading.Thread(
        target=_watchdog, args=(app, progress, idle_timeout, join_timeout), daemon=True
    ).start()
    spawned = time.monotonic()
    try:
        app.run()
    finally:
        returned = progress.now()
        dead_sink.close()
        writer.client.close()
    result = _result(progress, expect, state_kind, group, returned, time.monotonic() - spawned)
    result["workarounds"] = workarounds
    if progress.first is not None:
        # Topic checks and creation, the consumer-group join, state stores opened.
        result["seconds_start_to_first_record"] = progress.first[0] - started
    return result


def _result(
    progress: Progress,
    expect: int,
    state_kind: str,
    group: str,
    returned: tuple[float, float],
    seconds_run: float,
) -> dict[str, Any]:
    result: dict[str, Any] = {
        "engine": f"quixstreams {version('quixstreams')}",
        "confluent_kafka": version("confluent-kafka"),
        "expected": expect,
        "handled": progress.handled,
        "outputs": progress.outputs,
        "dead_letters": progress.dead_letters,
        "redis_batches": progress.redis_batches,
        "key_mismatches": progress.key_mismatches,
        "complete": progress.handled >= expect,
        "state": state_kind,
        "consumer_group": group,
        "settings": {
            "processing_guarantee": "at-least-once",
            "commit_interval_seconds": 5.0,
            "use_changelog_topics": True,
            "auto_create_topics": True,
            "consumer_extra_config": CONSUMER_EXTRA,
            "consumer_poll_timeout_seconds": POLL_TIMEOUT,
            "redis_chunk": REDIS_CHUNK,
        },
        "seconds_run": seconds_run,
        "seconds_by_phase": progress.seconds,
    }
    first, last = progress.first, progress.last_write
    if first is not None and last is not None and last[0] > first[0]:
        span = last[0] - first[0]
        # The first record is counted inside the span, like the floor's first batch is not:
        # one record in 10^5 does not move the figure.
        result["seconds_first_to_last"] = span
        result["events_per_second"] = progress.handled / span
        cpu = last[1] - first[1]
        result["cpu_seconds_first_to_last"] = cpu
        result["events_per_cpu_second"] = progress.handled / cpu if cpu > 0 else None
        result["seconds_after_last_write_to_stop"] = returned[0] - last[0]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--expect", type=int, required=True)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--state", choices=("quix", "memory"), default="quix")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    result = run_peer(load_settings(), args.expect, args.workdir, args.state)
    args.result.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
