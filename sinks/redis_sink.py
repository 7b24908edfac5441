"""Write profiles, RM rankings and alerts to Redis: pipelined, retried, idempotent.

Replaying the same outputs leaves Redis as it was: profiles and rankings are overwritten
with the same values, and each alert is appended to the streams only if its deterministic
id was not seen before (checked and appended atomically in one Lua script).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

import orjson
import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff
from redis.retry import Retry

from crmstream.settings import Redis as RedisSettings
from operators.records import Alert, Output
from operators.windows import WindowTotals
from sinks import metrics

log = logging.getLogger(__name__)

# Appends one entry to each stream in KEYS[2..] unless the marker KEYS[1] exists.
# ARGV: marker ttl, then one maxlen per stream, then the entry's field/value pairs.
_APPEND_ONCE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[1]) then
  local streams = #KEYS - 1
  local fields = {}
  for i = 2 + streams, #ARGV do fields[#fields + 1] = ARGV[i] end
  for s = 1, streams do
    redis.call('XADD', KEYS[1 + s], 'MAXLEN', '~', ARGV[1 + s], '*', unpack(fields))
  end
  return 1
end
return 0
"""


# KEYS: activity index. ARGV: cutoff (epoch s), profile key prefix, batch limit.
# Profiles are addressed by prefix: the engine targets a single Redis node, not a cluster.
_MARK_DORMANT = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
for _, id in ipairs(ids) do
  local key = ARGV[2] .. id
  if redis.call('EXISTS', key) == 1 then redis.call('HSET', key, 'stage', 'dormant') end
  redis.call('ZREM', KEYS[1], id)
end
return #ids
"""


class RedisKeys:
    """Key names; the README's Redis section documents each."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.alerts = f"{prefix}alerts"
        self.activity = f"{prefix}activity"
        self.event_clocks = f"{prefix}event-clock"
        self.offer_decisions = f"{prefix}offer-decisions"

    def profile(self, customer_id: str) -> str:
        return f"{self.prefix}profile:{customer_id}"

    def rm_alerts(self, rm_id: str) -> str:
        return f"{self.prefix}alerts:rm:{rm_id}"

    def rm_churn(self, rm_id: str) -> str:
        return f"{self.prefix}rm:{rm_id}:churn"

    def alert_seen(self, alert_id: str) -> str:
        return f"{self.prefix}alert-seen:{alert_id}"


def backoff_policy(config: RedisSettings, attempts: int) -> Retry:
    """Exponential backoff with jitter, capped; attempts < 0 retries forever."""
    return Retry(
        ExponentialWithJitterBackoff(
            cap=config.retry_backoff_cap_seconds, base=config.retry_backoff_base_seconds
        ),
        attempts,
        supported_errors=(redis.ConnectionError, redis.TimeoutError, OSError),
    )


def connect(config: RedisSettings, retry: Retry | None = None) -> redis.Redis:
    """A client with the configured credentials and TLS; tools retry `retry_attempts` times."""
    options: dict[str, Any] = {
        "retry": retry or backoff_policy(config, config.retry_attempts),
        "retry_on_error": [redis.ConnectionError, redis.TimeoutError],
        "socket_timeout": config.socket_timeout_seconds,
        "socket_connect_timeout": config.socket_timeout_seconds,
        "health_check_interval": 30,
    }
    if config.username:
        options["username"] = config.username
    if config.password.get_secret_value():
        options["password"] = config.password.get_secret_value()
    if config.ssl_ca_certs:
        options["ssl_ca_certs"] = config.ssl_ca_certs
    return redis.Redis.from_url(config.url, **options)


_PLAIN = frozenset({str, int, float, bytes})
_JSON = frozenset({dict, list, tuple})


def _field(value: Any) -> bytes | str | int | float:
    """One profile value as Redis stores it; by exact type first, the common cases cheaply."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind in _JSON:
        return orjson.dumps(value)
    if kind is bool:
        return int(value)
    if value is None:
        return ""
    if kind is WindowTotals:
        return orjson.dumps(value.rounded())
    if isinstance(value, (int, float)):  # e.g. numpy scalars
        return float(value)
    return orjson.dumps(value)


def _entry(fields: dict[str, Any]) -> list[Any]:
    return [item for key, value in fields.items() for item in (key, _field(value))]


def alert_fields(alert: Alert) -> list[Any]:
    return [
        "alert_id", alert.alert_id,
        "type", alert.type,
        "severity", alert.severity,
        "customer_id", alert.customer_id,
        "rm_id", alert.rm_id,
        "event_time", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(alert.event_time)),
        "event_id", alert.event_id,
        "reasons", orjson.dumps(alert.reasons),
        "scores", orjson.dumps(alert.scores),
    ]  # fmt: skip


class RedisWriter:
    """Applies batches of Outputs; the edge between the flow and Redis."""

    def __init__(
        self,
        config: RedisSettings,
        dormant_after_seconds: float,
        client: redis.Redis | None = None,
        sweep_every_seconds: float = 5.0,
        worker_index: int = 0,
        worker_count: int = 1,
    ) -> None:
        self.config = config
        self.keys = RedisKeys(config.key_prefix)
        self.dormant_after = dormant_after_seconds
        self.sweep_every = sweep_every_seconds
        self.next_sweep = 0.0
        # The stream's own clock: this worker's newest event time. Dormancy is judged against
        # the slowest worker's clock, so one worker running ahead marks no one early.
        self.event_clock = float("-inf")
        self.worker_index = worker_index
        self.worker_count = worker_count
        # The writer owns the retry loop (forever, bounded backoff) so it can count each
        # failure; the client itself does not retry underneath it.
        self.retry = backoff_policy(config, -1)
        self.client = client or connect(config, Retry(NoBackoff(), 0))
        self.append_once = self.client.register_script(_APPEND_ONCE)
        self.mark_dormant = self.client.register_script(_MARK_DORMANT)

    def write(self, outputs: list[Output]) -> None:
        started = time.monotonic()
        latest: dict[str, Output] = {}
        moved_from: dict[str, set[str]] = {}
        alerts: list[Alert] = []
        decisions: list[dict[str, Any]] = []
        for output in outputs:
            latest[output.customer_id] = output
            alerts.extend(output.alerts)
            if output.offer_decision is not None:
                decisions.append(output.offer_decision)
            if output.previous_rm_id:
                moved_from.setdefault(output.customer_id, set()).add(output.previous_rm_id)

        # Errors are retried with backoff by the client; while they last, this blocks
        # the worker, which stops reading input: backpressure rather than buffering.
        self.event_clock = max(self.event_clock, max(o.event_time for o in outputs))
        emitted = self.retry.call_with_retry(
            lambda: self._write_once(latest, moved_from, alerts, decisions), self._on_error
        )
        metrics.REDIS_UP.set(1)
        self._record(outputs, latest, alerts, emitted)
        metrics.REDIS_BATCH_SECONDS.observe(time.monotonic() - started)
        if started >= self.next_sweep:
            self.next_sweep = started + self.sweep_every
            self.retry.call_with_retry(self.sweep_dormant, self._on_error)

    @staticmethod
    def _record(
        outputs: list[Output], latest: dict[str, Output], alerts: list[Alert], emitted: list[bool]
    ) -> None:
        """Metrics of a written batch, aggregated per batch rather than updated per event."""
        updates: dict[tuple[str, str], int] = {}
        for output in latest.values():
            versions = output.profile.get("model_versions") or {}
            shard = versions.get("shard", "")
            for model in ("churn", "anomaly", "offers"):
                if model in versions:
                    steps = int(versions[model].rsplit("@", 1)[1])
                    updates[model, shard] = max(steps, updates.get((model, shard), 0))
        for (model, shard), steps in updates.items():
            metrics.MODEL_UPDATES.labels(model, shard).set(steps)
        for topic, count in Counter(output.topic for output in outputs).items():
            metrics.EVENTS.labels(topic, "ok").inc(count)
        done = time.time()
        metrics.observe_many(
            metrics.INGEST_LATENCY, [max(0.0, done - o.broker_time) for o in outputs]
        )
        metrics.observe_many(
            metrics.EVENT_TIME_LATENCY, [max(0.0, done - o.event_time) for o in outputs]
        )
        metrics.observe_many(metrics.SCORES.labels("churn"), [o.churn_risk for o in outputs])
        metrics.observe_many(
            metrics.SCORES.labels("anomaly"),
            [
                o.scores["anomaly_score"]
                for o in outputs
                if "anomaly_score" in o.scores and o.topic.endswith("transactions")
            ],
        )
        for kind, count in Counter(k for o in outputs for k in o.cooled_down).items():
            metrics.ALERTS_COOLED_DOWN.labels(kind).inc(count)
        for alert, fresh in zip(alerts, emitted, strict=True):
            if fresh:
                metrics.ALERTS.labels(alert.type, alert.severity).inc()
            else:
                metrics.ALERTS_SUPPRESSED.inc()

    def sweep_dormant(self) -> int:
        """Mark customers silent for `dormant_after` of event time as dormant; returns how many.

        Silence produces no event, so this runs beside the writes rather than in the flow.
        """
        clocks = self.client.hmget(
            self.keys.event_clocks, [str(i) for i in range(self.worker_count)]
        )
        if any(clock is None for clock in clocks):
            return 0  # a worker has not written yet: no common clock
        cutoff = min(float(clock) for clock in clocks) - self.dormant_after
        marked = 0
        while True:
            count = self.mark_dormant(
                keys=[self.keys.activity], args=[cutoff, self.keys.profile(""), 1000]
            )
            marked += count
            if count < 1000:
                break
        metrics.DORMANT_MARKED.inc(marked)
        return marked

    def _on_error(self, error: Exception) -> None:
        metrics.REDIS_UP.set(0)
        metrics.REDIS_WRITE_ERRORS.inc()
        metrics.REDIS_RETRIES.inc()
        log.warning("redis write failed, retrying with backoff: %s", error)

    def _write_once(
        self,
        latest: dict[str, Output],
        moved_from: dict[str, set[str]],
        alerts: list[Alert],
        decisions: list[dict[str, Any]],
    ) -> list[bool]:
        keys = self.keys
        ttl = self.config.profile_ttl_seconds
        pipe = self.client.pipeline(transaction=False)
        # One ZADD per sorted set and batch, not one per customer: fewer commands to pack.
        by_rm: dict[str, dict[str, float]] = {}
        active: dict[str, float] = {}
        inactive: list[str] = []
        for customer_id, output in latest.items():
            key = keys.profile(customer_id)
            pipe.execute_command("HSET", key, *_entry(output.profile))
            pipe.expire(key, ttl)
            if output.rm_id:
                by_rm.setdefault(output.rm_id, {})[customer_id] = round(output.churn_risk, 4)
            for old_rm in moved_from.get(customer_id, set()) - {output.rm_id}:
                pipe.zrem(keys.rm_churn(old_rm), customer_id)
            if output.last_activity is not None and output.profile["stage"] != "closed":
                active[customer_id] = output.last_activity
            else:
                inactive.append(customer_id)
        for rm_id, ranking in by_rm.items():
            pipe.zadd(keys.rm_churn(rm_id), ranking)
        if active:
            pipe.zadd(keys.activity, active)
        if inactive:
            pipe.zrem(keys.activity, *inactive)
        pipe.hset(keys.event_clocks, str(self.worker_index), self.event_clock)
        dedupe_ttl = self.config.alert_dedupe_ttl_seconds
        for decision in decisions:
            self.append_once(
                keys=[keys.alert_seen(decision["decision_id"]), keys.offer_decisions],
                args=[dedupe_ttl, self.config.alert_stream_maxlen, *_entry(decision)],
                client=pipe,
            )
        for alert in alerts:
            self.append_once(
                keys=[keys.alert_seen(alert.alert_id), keys.alerts, keys.rm_alerts(alert.rm_id)],
                args=[
                    dedupe_ttl,
                    self.config.alert_stream_maxlen,
                    self.config.rm_stream_maxlen,
                    *alert_fields(alert),
                ],
                client=pipe,
            )
        results = pipe.execute()
        return [bool(r) for r in results[len(results) - len(alerts) :]] if alerts else []


class _Partition(StatelessSinkPartition[Output]):
    def __init__(self, writer: RedisWriter) -> None:
        self.writer = writer

    def write_batch(self, items: list[Output]) -> None:
        self.writer.write(items)

    def close(self) -> None:
        self.writer.client.close()


class RedisSink(DynamicSink[Output]):
    """Each worker writes its own share of outputs through its own connection."""

    def __init__(self, config: RedisSettings, dormant_after_seconds: float) -> None:
        self.config = config
        self.dormant_after = dormant_after_seconds

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition:
        writer = RedisWriter(
            self.config,
            self.dormant_after,
            worker_index=worker_index,
            worker_count=worker_count,
        )
        return _Partition(writer)
