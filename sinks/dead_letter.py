"""The dead-letter topic: every record the engine could not apply, unchanged, with why.

The message value is the original bytes and the key the original key, so a fixed record
can be replayed as is; the reason and the source coordinates travel in headers.

Exception, for privacy: card and account numbers inside the bytes, the key or the reason
are masked (operators/privacy.py) and `crmstream.masked` says "1". The decoder already
masks what it returns; masking again here also covers records that never went through it
(broker errors) and costs one screen per dead letter. A masked record cannot be replayed
as is: the producer must resend it with a token in place of the number.
"""

from __future__ import annotations

import logging

from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka import KafkaError, KafkaException, Producer

from operators.privacy import protect_dead_letter, was_masked
from operators.records import DeadLetter
from sinks import metrics

log = logging.getLogger(__name__)

HEADER_PREFIX = "crmstream."
# What is kept of a record too large for the producer (librdkafka's message.max.bytes):
# its head, so the record can still be found and judged, with its full size in a header.
TRUNCATED_VALUE_BYTES = 64 * 1024


def dead_letter_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    """Headers of a dead letter; call on a letter already through `protect_dead_letter`."""
    origin = letter.origin
    masked = was_masked(letter.raw) or was_masked(origin.key)
    return [
        (f"{HEADER_PREFIX}reason", letter.reason.encode()),
        (f"{HEADER_PREFIX}reason_code", letter.reason_code.encode()),
        (f"{HEADER_PREFIX}outcome", letter.outcome.encode()),
        (f"{HEADER_PREFIX}source_topic", origin.topic.encode()),
        (f"{HEADER_PREFIX}source_partition", str(origin.partition).encode()),
        (f"{HEADER_PREFIX}source_offset", str(origin.offset).encode()),
        (f"{HEADER_PREFIX}masked", b"1" if masked else b"0"),
    ]


class _Partition(StatelessSinkPartition[DeadLetter]):
    def __init__(self, producer: Producer, topic: str) -> None:
        self.producer = producer
        self.topic = topic

    def write_batch(self, items: list[DeadLetter]) -> None:
        for letter in items:
            letter = protect_dead_letter(letter)
            value = letter.raw
            headers = dead_letter_headers(letter)
            while True:
                try:
                    self.producer.produce(
                        self.topic,
                        value=value,
                        key=letter.origin.key,
                        headers=headers,
                        on_delivery=_report_failure,
                    )
                    break
                except BufferError:
                    self.producer.poll(0.1)
                except KafkaException as exc:
                    # A record bigger than the producer may send would otherwise stop the
                    # engine; the reason and coordinates still say where the original is.
                    too_large = exc.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
                    if not too_large or value is None or len(value) <= TRUNCATED_VALUE_BYTES:
                        raise
                    log.error(
                        "dead letter from %s[%d]@%d is %d bytes, too large to produce; "
                        "sending its first %d bytes",
                        letter.origin.topic,
                        letter.origin.partition,
                        letter.origin.offset,
                        len(value),
                        TRUNCATED_VALUE_BYTES,
                    )
                    headers = [
                        *headers,
                        (f"{HEADER_PREFIX}truncated_from", str(len(value)).encode()),
                    ]
                    value = value[:TRUNCATED_VALUE_BYTES]
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
