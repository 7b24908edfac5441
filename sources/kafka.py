"""Kafka input: the flow's partitions of the input topics, read through one consumer per worker.

Bytewax's KafkaSource opens one consumer per partition: with four topics of four
partitions that is sixteen librdkafka clients per worker, each with its own fetch loop,
and the worker waits on each in turn when the topics are quiet. Here every partition a
worker owns is assigned to a single consumer of that worker; partitions still snapshot
and resume their own offsets (what recovery needs), and take their messages from the
shared consumer's per-partition buffers. One wait per round when input is quiet instead
of one per partition, and one client's fetches instead of sixteen.

Lag is taken from librdkafka's statistics (`hi_offset`, the partition's high watermark),
which are right on every broker we run against, rather than from `ls_offset` or offset
queries, which some Kafka-compatible brokers answer wrongly.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from typing import Any

from bytewax.connectors.kafka import KafkaError, KafkaSource, KafkaSourceMessage
from bytewax.inputs import StatefulSourcePartition
from confluent_kafka import Consumer, Message, TopicPartition
from confluent_kafka import KafkaError as ConfluentKafkaError

from sinks import metrics

SourceItem = KafkaSourceMessage | KafkaError
# How long the first partition of a round waits for input when there is none; the others
# never wait. A message ends the wait at once; timers of the flow run at most this late.
_WAIT_SECONDS = 0.02


def source_message(message: Message) -> KafkaSourceMessage:
    """A confluent-kafka message as the flow's input hands it to the decoder."""
    return KafkaSourceMessage(
        key=message.key(),
        value=message.value(),
        topic=message.topic(),
        headers=message.headers() or [],
        latency=message.latency(),
        offset=message.offset(),
        partition=message.partition(),
        timestamp=message.timestamp(),
    )


class _WorkerConsumer:
    """One consumer for every input partition a worker owns, with a buffer per partition."""

    def __init__(self, config: dict[str, Any], batch_size: int) -> None:
        self.consumer = Consumer({**config, "stats_cb": self._stats})
        self.batch_size = batch_size
        self.partitions: dict[tuple[str, int], _Partition] = {}
        self.first: _Partition | None = None

    def add(self, partition: _Partition) -> None:
        key = (partition.topic, partition.index)
        self.partitions[key] = partition
        if self.first is None:
            self.first = partition
        self.consumer.incremental_assign(
            [TopicPartition(partition.topic, partition.index, partition.offset)]
        )

    def remove(self, partition: _Partition) -> bool:
        """Forget a closed partition; True when it was the last one (the consumer closed)."""
        self.partitions.pop((partition.topic, partition.index), None)
        if self.first is partition:
            self.first = next(iter(self.partitions.values()), None)
        if self.partitions:
            return False
        self.consumer.close()
        return True

    def fill(self, waiting: _Partition) -> None:
        """Read what the consumer has and hand each message to its partition's buffer.

        `consume(n, timeout)` waits out its whole timeout even when messages are there,
        which would add the timeout to every event's latency; `poll` returns with the first
        message. So the round's first partition waits in `poll` (the worker sleeps while
        input is quiet instead of spinning), then whatever else is queued is taken at once.
        """
        if waiting is self.first:
            message = self.consumer.poll(_WAIT_SECONDS)
            if message is None:
                return
            self._route(message, waiting)
        for message in self.consumer.consume(self.batch_size, 0):
            self._route(message, waiting)

    def _route(self, message: Message, waiting: _Partition) -> None:
        owner = self.partitions.get((message.topic(), message.partition()))
        (owner or waiting).buffer.append(message)

    def _stats(self, json_stats: str) -> None:
        topics = json.loads(json_stats).get("topics", {})
        for (topic, index), partition in self.partitions.items():
            stats = topics.get(topic, {}).get("partitions", {}).get(str(index), {})
            high = stats.get("hi_offset", -1)
            if high >= 0:
                lag = max(0, high - max(partition.offset, 0))
                metrics.CONSUMER_LAG.labels(topic, str(index)).set(lag)


# Each worker thread builds and polls its own partitions, so each gets its own consumer.
_workers = threading.local()


class _Partition(StatefulSourcePartition[SourceItem, int]):
    def __init__(
        self, source: SharedConsumerKafkaSource, topic: str, index: int, offset: int
    ) -> None:
        self.topic = topic
        self.index = index
        self.offset = offset
        self.buffer: deque[Message] = deque()
        self.eof = False
        self.raise_on_errors = source.raise_on_errors
        self.batch_size = source.batch_size
        self.source_key = source.key
        self.reader: _WorkerConsumer = getattr(_workers, source.key, None) or _WorkerConsumer(
            source.consumer_config(), source.batch_size
        )
        setattr(_workers, source.key, self.reader)
        self.reader.add(self)

    def next_batch(self) -> list[SourceItem]:
        if self.eof:
            raise StopIteration()
        if not self.buffer:
            self.reader.fill(self)
        batch: list[SourceItem] = []
        buffer = self.buffer
        while buffer and len(batch) < self.batch_size:
            message = buffer.popleft()
            error = message.error()
            if error is None:
                batch.append(source_message(message))
                self.offset = message.offset() + 1
            elif error.code() == ConfluentKafkaError._PARTITION_EOF:
                self.eof = True  # StopIteration on the next call, after this batch
                break
            elif self.raise_on_errors:
                raise RuntimeError(f"error consuming from Kafka topic {self.topic!r}: {error}")
            else:
                batch.append(KafkaError(error, source_message(message)))
        return batch

    def snapshot(self) -> int:
        # The next offset not yet handed to the flow: buffered messages are read again.
        return self.offset

    def close(self) -> None:
        if self.reader.remove(self):
            delattr(_workers, self.source_key)


class SharedConsumerKafkaSource(KafkaSource):
    """KafkaSource reading all of a worker's partitions through one consumer.

    Exports `crmstream_kafka_consumer_lag_messages` per partition.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batch_size = self._batch_size
        self.raise_on_errors = self._raise_on_errors
        self.key = f"source_{id(self)}"

    def consumer_config(self) -> dict[str, Any]:
        config = {
            # Partitions are assigned by the flow and offsets kept in its recovery store.
            "group.id": "crmstream-engine",
            "enable.auto.commit": "false",
            "bootstrap.servers": ",".join(self._brokers),
            "enable.partition.eof": str(not self._tail),
            "statistics.interval.ms": 1000,
        }
        config.update(self._add_config)
        return config

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _Partition:
        index, topic = for_part.split("-", 1)
        if topic not in self._topics:
            raise ValueError(
                f"recovery state names topic {topic!r}, which is not an input topic now "
                f"({sorted(self._topics)}); start with a fresh recovery directory"
            )
        offset = self._starting_offset if resume_state is None else resume_state
        return _Partition(self, topic, int(index), offset)
