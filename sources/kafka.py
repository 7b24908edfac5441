"""Kafka input: Bytewax's KafkaSource, reporting consumer lag the way the broker can be trusted.

Lag is taken from librdkafka's statistics (`hi_offset`, the partition's high watermark),
which are right on every broker we run against, rather than from `ls_offset` or offset
queries, which some Kafka-compatible brokers answer wrongly.
"""

from __future__ import annotations

import json

from bytewax.connectors.kafka import KafkaSource
from bytewax.connectors.kafka import _KafkaSourcePartition as _BytewaxPartition

from sinks import metrics


class _LagReportingPartition(_BytewaxPartition):
    def _process_stats(self, json_stats: str) -> None:
        stats = json.loads(json_stats)["topics"][self._topic]["partitions"][str(self._part_idx)]
        high = stats.get("hi_offset", -1)
        if high >= 0:
            lag = max(0, high - max(self._offset, 0))
            metrics.CONSUMER_LAG.labels(self._topic, str(self._part_idx)).set(lag)


class LagReportingKafkaSource(KafkaSource):
    """KafkaSource whose partitions export `crmstream_kafka_consumer_lag_messages`."""

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _BytewaxPartition:
        index, topic = for_part.split("-", 1)
        if topic not in self._topics:
            raise ValueError(
                f"recovery state names topic {topic!r}, which is not an input topic now "
                f"({sorted(self._topics)}); start with a fresh recovery directory"
            )
        config = {
            # Partitions are assigned by the flow and offsets kept in its recovery store.
            "group.id": "crmstream-engine",
            "enable.auto.commit": "false",
            "bootstrap.servers": ",".join(self._brokers),
            "enable.partition.eof": str(not self._tail),
            "statistics.interval.ms": 1000,
        }
        config.update(self._add_config)
        return _LagReportingPartition(
            step_id,
            config,
            topic,
            int(index),
            self._starting_offset,
            resume_state,
            self._batch_size,
            self._raise_on_errors,
        )
