"""The Kafka edge: send simulated events to the input topics at a steady rate.

The producer is tuned for throughput (small linger, lz4, large batches) and deliberately
not idempotent: on the local Tansu broker idempotence is about four times slower and an
idempotent producer hangs across a broker restart. Duplicates from retries are harmless
because the engine applies each `event_id` once. Delivery reports are requested for
failures only, which keeps the per-message cost down.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import orjson
from confluent_kafka import KafkaError, Message, Producer

from crmstream.settings import Settings
from crmstream.simulator.config import KINDS, SimEvent
from crmstream.simulator.progress import SendProgress

THROUGHPUT_DEFAULTS: dict[str, str | int | bool] = {
    "linger.ms": 5,
    "batch.num.messages": 10_000,
    "batch.size": 1_000_000,
    "compression.type": "lz4",
    "queue.buffering.max.messages": 500_000,
    "queue.buffering.max.kbytes": 512 * 1024,
    "message.timeout.ms": 120_000,
    "enable.idempotence": False,
    "acks": "all",
    "delivery.report.only.error": True,
}
FLUSH_TIMEOUT_SECONDS = 60.0
_POLL_EVERY = 1024  # events between polls that serve failure reports
_MAX_ERRORS_KEPT = 10


@dataclass
class ProduceStats:
    """What happened to the events handed to `produce`."""

    produced: int = 0  # accepted by the client
    failed: int = 0  # reported as permanently failed
    undelivered: int = 0  # still queued when the final flush gave up
    seconds: float = 0.0
    interrupted: bool = False  # stopped early by Ctrl-C
    errors: list[str] = field(default_factory=list)  # the first few failure reasons

    @property
    def delivered(self) -> int:
        return self.produced - self.failed - self.undelivered

    @property
    def rate(self) -> float:
        return self.produced / self.seconds if self.seconds > 0 else 0.0

    def _on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self.failed += 1
            if len(self.errors) < _MAX_ERRORS_KEPT:
                self.errors.append(str(error))


class Pacer:
    """Token bucket: on average `rate` events a second, bursting at most `burst_seconds`.

    The schedule is absolute (each event is due one interval after the previous one),
    so rounding and short sleeps do not accumulate into drift; after a stall only
    `burst_seconds` worth of events are sent at once to catch up.
    """

    def __init__(
        self,
        rate: float,
        burst_seconds: float = 0.25,
        clock: Callable[[], float] = time.perf_counter,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._interval = 1.0 / rate
        self._slack = max(burst_seconds, self._interval)
        self._clock = clock
        self._sleep = sleep
        self._due = clock()

    def take(self) -> None:
        """Wait until the next event may go."""
        due = self._due + self._interval
        now = self._clock()
        ahead = due - now
        if ahead > 0.001:  # shorter waits are not worth a system call
            self._sleep(ahead)
        elif -ahead > self._slack:
            due = now - self._slack
        self._due = due


def produce(
    events: Iterable[SimEvent],
    settings: Settings,
    rate: float | None = None,
    progress: bool = False,
) -> ProduceStats:
    """Send `events` to the topics named in `settings`; returns once all are flushed.

    Message key is the customer id, the value is the JSON (or the raw bytes of a
    malformed record); the message timestamp is the time of sending, as a bank's
    producers set it, so the engine measures latency from arrival. Ctrl-C stops
    sending, flushes what was sent, and returns with `interrupted` set.
    """
    stats = ProduceStats()
    topics = {kind: getattr(settings.kafka.topics, kind) for kind in KINDS}
    config = {**THROUGHPUT_DEFAULTS, **settings.kafka.client_config()}
    config["on_delivery"] = stats._on_delivery
    producer = Producer(config)
    pacer = Pacer(rate) if rate else None
    dumps = orjson.dumps
    sent = 0
    event_time = 0.0
    started = time.perf_counter()
    pending = iter(events)
    with SendProgress(progress, "producing") as display:
        try:
            while True:
                # Wait before taking the next event, so that Ctrl-C during the wait
                # never leaves an event taken from the generator but not sent.
                if pacer is not None:
                    pacer.take()
                event = next(pending, None)
                if event is None:
                    break
                value = event.value
                if value.__class__ is not bytes:
                    value = dumps(value)
                event_time = event.event_time
                message = (topics[event.kind], value, event.key.encode())
                while True:
                    try:
                        producer.produce(*message)
                        break
                    except BufferError:
                        producer.poll(0.05)  # queue full: let deliveries drain
                sent += 1
                if not sent % _POLL_EVERY:
                    producer.poll(0)
                    display.tick(sent, event_time)
        except KeyboardInterrupt:
            stats.interrupted = True
        stats.produced = sent
        display.finish(sent, event_time)
        stats.undelivered = producer.flush(FLUSH_TIMEOUT_SECONDS)
    stats.seconds = time.perf_counter() - started
    return stats
