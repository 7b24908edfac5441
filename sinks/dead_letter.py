"""The dead-letter topic: every record the engine could not apply, unchanged, with why.

The message value is the original bytes and the key the original key, so a fixed record
can be replayed as is; the reason and the source coordinates travel in headers.
"""

from __future__ import annotations

import logging

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import Producer

from operators.records import DeadLetter
from sinks import metrics

log = logging.getLogger(__name__)

HEADER_PREFIX = "crmstream."


def dead_letter_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    origin = letter.origin
    return [
        (f"{HEADER_PREFIX}reason", letter.reason.encode()),
        (f"{HEADER_PREFIX}reason_code", letter.reason_code.encode()),
        (f"{HEADER_PREFIX}outcome", letter.outcome.encode()),
        (f"{HEADER_PREFIX}source_topic", origin.topic.encode()),
        (f"{HEADER_PREFIX}source_partition", str(origin.partition).encode()),
        (f"{HEADER_PREFIX}source_offset", str(origin.offset).encode()),
    ]


class _Partition(StatelessSinkPartition[DeadLetter]):
    def __init__(self, producer: Producer, topic: str) -> None:
        self.producer = producer
        self.topic = topic

    def write_batch(self, items: list[DeadLetter]) -> None:
        for letter in items:
            while True:
                try:
                    self.producer.produce(
                        self.topic,
                        value=letter.raw,
                        key=letter.origin.key,
                        headers=dead_letter_headers(letter),
                        on_delivery=_report_failure,
                    )
                    break
                except BufferError:
                    self.producer.poll(0.1)
            metrics.EVENTS.labels(letter.origin.topic, letter.outcome).inc()
            metrics.DEAD_LETTERS.labels(letter.origin.topic, letter.reason_code).inc()
        self.producer.poll(0)
        # Delivered before more input is read: nothing is lost, and a broker outage holds
        # the flow back instead of crashing it.
        while (waiting := self.producer.flush(5)) > 0:
            log.warning("%d dead-letter records waiting for the broker", waiting)

    def close(self) -> None:
        self.producer.flush(30)


def _report_failure(error, message) -> None:
    if error is not None:
        log.error("dead-letter delivery failed for offset %s: %s", message.offset(), error)


class DeadLetterSink(DynamicSink[DeadLetter]):
    def __init__(self, client_config: dict[str, str], topic: str) -> None:
        self.client_config = client_config
        self.topic = topic

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition:
        config = {**self.client_config, "linger.ms": 5, "acks": "all"}
        return _Partition(Producer(config), self.topic)
