"""Fault tests: the engine keeps working and loses nothing through crashes and outages.

Each test runs the real engine (`crmstream run` child processes) against a real broker and
a real Redis, injects a fault while simulated bank traffic flows, and then compares Redis
with a run of the same input without the fault (a fresh engine reading the same topics into
its own key prefix): every customer's aggregates identical, the same ids of rule-based
alerts, no alert twice in any stream, every dead letter delivered. Model scores may differ
(learning order), so they and the alerts they raise are only checked for duplicates.

Each test prints what it injected and what it verified; `make test` shows it.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from confluent_kafka import Consumer, KafkaError, TopicPartition
from engine_process import EngineProcess, settings_env
from helpers import settings_for, wait_for

from crmstream.devservices import Service, free_port, port_answers, start_broker
from crmstream.run import RecoveryStoreError, kafka_input_steps, saved_offsets
from crmstream.settings import Settings, Topics
from crmstream.simulator import SimEvent, SimulationConfig, simulate
from crmstream.simulator.producer import produce
from crmstream.topics import create_topics

pytestmark = pytest.mark.integration

EVENTS = "crmstream_events_total"
LAG = "crmstream_kafka_consumer_lag_messages"
# Rule-based alerts: decided from the input alone, so every run of the same input raises
# the same ones. Model-based alerts (suspicious_transaction, churn_risk) depend on what the
# models learned first and are only checked for duplicates.
RULE_ALERTS = ("large_inflow", "large_outflow_external", "high_value_complaint")
# Profile fields that follow from the input alone. Left out: model scores and what depends
# on them (stage, next-best-offer), and the fields computed from the profile's clock
# (updated_at, recency_days, days_since_last_activity, tenure_days): operators/profile.py
# takes it as max(windows.latest, this event's time), and outcomes and customers records do
# not move windows.latest, so it depends on whether an outcome was read before or after the
# customer's last transaction (another topic).
PROFILE_FIELDS = (
    "customer_id", "segment", "rm_id", "branch_id", "value_tier", "frequency_30d",
    "monetary_30d", "last_activity_at", "channel_mix_30d", "features", "products",
    "marketing_consent", "last_nps",
)  # fmt: skip
INPUT_PARTITIONS = 4 * 4  # four input topics of four partitions

# Two engine decisions depend on the order in which records of *different* topics happen
# to be read, so even two runs of the same input without any fault differ when the input
# is read from a backlog (as after every restart). Measured on 40k simulated events: 0, 16
# and 586 events dead-lettered in three fault-free runs; high_value_complaint alerts 6, 7
# and 9. These settings take both races out, so that what is compared here is what the
# faults do; remove them once the engine is fixed (see the notes on each).
ORDER_INDEPENDENT: dict[str, dict[str, Any]] = {
    "engine": {
        # operators/profile.py, ProfileLogic._hold_for_reference: events of a customer whose
        # customers record has not been read yet expire once the newest of them is an hour
        # (event time) ahead, although the record may just be behind on its own topic.
        "unknown_customer_grace_seconds": 365 * 86400,
        "pending_unknown_customer": 1_000_000,
    },
    "lifecycle": {
        # operators/decisions.py, high_value_complaint: the tier comes from the inflows
        # applied so far, so a complaint read before an earlier inflow (other topic) is
        # judged on another tier. With unreachable thresholds the tier of the high-value
        # segments comes from their floor alone.
        "value_tiers": {"platinum": 1e12, "gold": 1e11, "silver": 2000.0, "bronze": 0.0},
    },
}


# --- input ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Scale:
    customers: int
    days: float  # below 30: the 30-day windows then count every event of the run
    rate: float  # events per second sent while the fault happens
    fault_seconds: float = 10.0  # outage or freeze length
    kills: int = 5


def simulated(scale: Scale, seed: int = 42) -> list[SimEvent]:
    assert scale.days < 30, "aggregates_30d would no longer count every event"
    # No deliberately late events: whether one is refused as late depends on read order
    # (behind the customers record it is held and applied in time order with the rest,
    # after it it is late), which a crash-free backlog run and a live run do not share.
    config = SimulationConfig(
        customers=scale.customers, days=scale.days, seed=seed, bad_fraction=0.002, late_fraction=0.0
    )
    return list(simulate(config))


def never_handled(events: list[SimEvent]) -> int:
    """Records of customers never announced: held for their customers record for good."""
    announced = {e.key for e in events if e.kind == "customers"}
    return sum(e.key not in announced for e in events)


class Feeder(threading.Thread):
    """Sends events to the input topics at `rate` per second, in the background."""

    def __init__(self, events: list[SimEvent], settings: Settings, rate: float) -> None:
        super().__init__(name="feeder", daemon=True)
        self.events = events
        self.settings = settings
        self.rate = rate
        self.sent = 0  # delivered to the broker so far
        self.failed = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        chunk = max(100, int(self.rate / 10))
        try:
            for start in range(0, len(self.events), chunk):
                stats = produce(self.events[start : start + chunk], self.settings, self.rate)
                self.failed += stats.failed + stats.undelivered
                self.sent += stats.delivered
        except BaseException as exc:  # reported by finish()
            self.error = exc

    def finish(self, timeout: float = 180.0) -> int:
        self.join(timeout)
        assert not self.is_alive(), f"the feeder did not finish within {timeout:g} s"
        assert self.error is None, f"the feeder failed: {self.error!r}"
        assert self.failed == 0 and self.sent == len(self.events), (
            f"{self.failed} of {len(self.events)} records were not delivered to the broker"
        )
        return self.sent


# --- what Redis holds ------------------------------------------------------------------


@dataclass
class RedisView:
    profiles: dict[str, dict[str, Any]]
    streams: dict[str, list[tuple[str, str]]]  # stream (prefix removed) -> [(type, alert id)]

    def alert_ids(self, kind: str) -> set[str]:
        return {alert_id for t, alert_id in self.streams.get("alerts", []) if t == kind}


def read_view(client: redis.Redis, prefix: str) -> RedisView:
    keys = sorted(client.scan_iter(match=f"{prefix}profile:*", count=1000))
    profiles: dict[str, dict[str, Any]] = {}
    for start in range(0, len(keys), 1000):
        pipe = client.pipeline(transaction=False)
        for key in keys[start : start + 1000]:
            pipe.hmget(key, PROFILE_FIELDS)
        for values in pipe.execute():
            profile = dict(zip(PROFILE_FIELDS, values, strict=True))
            profile["features"] = orjson.loads(profile["features"] or "{}")
            profile["monetary_30d"] = float(profile["monetary_30d"] or 0)
            profiles[profile["customer_id"]] = profile
    streams = {}
    for key in [f"{prefix}alerts", *client.scan_iter(match=f"{prefix}alerts:rm:*", count=1000)]:
        entries = client.xrange(key)
        streams[key.removeprefix(prefix)] = [(f["type"], f["alert_id"]) for _, f in entries]
    return RedisView(profiles, streams)


def applied_events(profile: dict[str, Any]) -> int:
    """Transactions and interactions applied to a profile (its 30-day counts span the run)."""
    features = profile["features"]
    contacts = sum(v for k, v in features.items() if k.startswith("contacts_") and "_30d" in k)
    return round(features["inflow_count_30d"] + features["outflow_count_30d"] + contacts)


@dataclass
class Comparison:
    """A fault run's Redis against the fault-free run's."""

    customers: int
    differing: list[str]
    applied_baseline: int
    applied: int
    lost: int  # events a profile lacks compared with the fault-free run
    doubled: int  # events a profile counts more than the fault-free run
    alerts: dict[str, tuple[int, int]]  # rule-based type -> (fault-free, this run)
    alerts_missing: dict[str, list[str]]
    alerts_extra: dict[str, list[str]]
    duplicated: dict[str, int]  # stream -> alert ids seen more than once
    example: str = ""

    def __bool__(self) -> bool:
        return not (
            self.differing
            or self.lost
            or self.doubled
            or any(self.alerts_missing.values())
            or any(self.alerts_extra.values())
            or any(self.duplicated.values())
        )

    def __repr__(self) -> str:
        alerts = ", ".join(f"{k} {a}/{b}" for k, (a, b) in self.alerts.items())
        text = (
            f"{self.customers} profiles, {len(self.differing)} differing; events applied "
            f"{self.applied} (fault-free {self.applied_baseline}), lost {self.lost}, doubled "
            f"{self.doubled}; rule alerts (fault-free/this run) {alerts}; missing "
            f"{sum(map(len, self.alerts_missing.values()))}, extra "
            f"{sum(map(len, self.alerts_extra.values()))}; alerts duplicated "
            f"{sum(self.duplicated.values())}"
        )
        return f"{text}; e.g. {self.example}" if self.example else text


def same(a: Any, b: Any) -> bool:
    """Equal, amounts within a cent: window totals are float sums kept in arrival order, so
    another order can round to the next cent (operators/windows.py)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 0.0101
    return a == b


def compare(baseline: RedisView, run: RedisView) -> Comparison:
    customers = sorted(set(baseline.profiles) | set(run.profiles))
    differing = [c for c in customers if not same(baseline.profiles.get(c), run.profiles.get(c))]
    lost = doubled = 0
    for c in customers:
        before = applied_events(baseline.profiles[c]) if c in baseline.profiles else 0
        after = applied_events(run.profiles[c]) if c in run.profiles else 0
        lost += max(0, before - after)
        doubled += max(0, after - before)
    example = ""
    if differing:
        c = differing[0]
        a, b = baseline.profiles.get(c) or {}, run.profiles.get(c) or {}
        fields = {k: (a.get(k), b.get(k)) for k in PROFILE_FIELDS if not same(a.get(k), b.get(k))}
        if "features" in fields:
            fa, fb = a.get("features", {}), b.get("features", {})
            fields["features"] = {
                k: (fa.get(k), fb.get(k)) for k in fa if not same(fa.get(k), fb.get(k))
            }
        example = f"{c}: {fields}"
    return Comparison(
        customers=len(customers),
        differing=differing,
        applied_baseline=sum(map(applied_events, baseline.profiles.values())),
        applied=sum(map(applied_events, run.profiles.values())),
        lost=lost,
        doubled=doubled,
        alerts={k: (len(baseline.alert_ids(k)), len(run.alert_ids(k))) for k in RULE_ALERTS},
        alerts_missing={k: sorted(baseline.alert_ids(k) - run.alert_ids(k)) for k in RULE_ALERTS},
        alerts_extra={k: sorted(run.alert_ids(k) - baseline.alert_ids(k)) for k in RULE_ALERTS},
        duplicated={
            stream: len(entries) - len({i for _, i in entries})
            for stream, entries in run.streams.items()
        },
        example=example,
    )


class DeadLetters(Counter[tuple[str, str, str]]):
    """Records of a dead-letter topic counted by source coordinates, with each one's reason."""

    def __init__(self) -> None:
        super().__init__()
        self.reasons: dict[tuple[str, str, str], str] = {}

    def explain(self, coordinates: set[tuple[str, str, str]]) -> str:
        return "; ".join(f"{'/'.join(c)}: {self.reasons.get(c, '?')}" for c in sorted(coordinates))


def dead_letters(bootstrap: str, topic: str, partitions: int) -> DeadLetters:
    """Every record of a dead-letter topic, by the source coordinates in its headers."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "fault-test-reader",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    found = DeadLetters()
    at_end: set[int] = set()

    def read() -> bool:
        for message in consumer.consume(1000, timeout=0.2):
            error = message.error()
            if error is not None and error.code() == KafkaError._PARTITION_EOF:
                at_end.add(message.partition())
            elif error is None:
                at_end.discard(message.partition())
                headers = {k: v.decode() for k, v in message.headers() or []}
                coordinates = tuple(
                    headers[f"crmstream.source_{k}"] for k in ("topic", "partition", "offset")
                )
                found[coordinates] += 1
                found.reasons[coordinates] = headers["crmstream.reason"]
        return len(at_end) == partitions

    try:
        wait_for(read, timeout=30, interval=0, what=f"the end of {topic}")
    finally:
        consumer.close()
    return found


# --- running the engine ------------------------------------------------------------------


def handled(engine: EngineProcess) -> float:
    return engine.metric(EVENTS)


def drained(engine: EngineProcess) -> bool:
    """The engine has read every input partition to its end."""
    return engine.series(LAG) == INPUT_PARTITIONS and engine.metric(LAG) == 0


def fault_settings(
    broker: Service | str,
    redis_url: Service | str,
    topics: Topics | dict[str, Any],
    prefix: str,
    recovery: Path | None = None,
    **overrides: dict[str, Any],
) -> Settings:
    engine = {**ORDER_INDEPENDENT["engine"], **overrides.pop("engine", {})}
    if recovery is not None:
        engine["recovery_dir"] = str(recovery)
    return settings_for(
        broker,
        redis_url,
        topics,
        engine=engine,
        lifecycle=ORDER_INDEPENDENT["lifecycle"],
        redis={"key_prefix": prefix, **overrides.pop("redis", {})},
        **overrides,
    )


@dataclass
class Baseline:
    view: RedisView
    dead_letters: DeadLetters
    handled: int


def fault_free_run(
    broker: Service,
    redis_url: Service | str,
    topics: Topics,
    events: list[SimEvent],
    client: redis.Redis,
    log: Path,
) -> Baseline:
    """The same topics read by a fresh engine without faults, into the key prefix `base:`."""
    own = topics.model_copy(update={"dead_letter": f"{topics.dead_letter}-fault-free"})
    settings = fault_settings(broker, redis_url, own, "base:")
    create_topics(settings, timeout=15)
    expected = len(events) - never_handled(events)
    with EngineProcess(settings, log) as engine:
        wait_for(
            lambda: handled(engine) >= expected,
            timeout=240,
            interval=0.5,
            what=f"the fault-free run to handle {expected} records (log: {log})",
        )
        count = int(handled(engine))
    letters = dead_letters(settings.kafka.bootstrap_servers, own.dead_letter, own.partitions)
    return Baseline(read_view(client, "base:"), letters, count)


def check_dead_letters(baseline: Baseline, bootstrap: str, topics: Topics) -> tuple[int, int, int]:
    """(dead letters, lost, duplicated) of the fault run; fails if any was lost."""
    found = dead_letters(bootstrap, topics.dead_letter, topics.partitions)
    missing = set(baseline.dead_letters) - set(found)
    duplicated = sum(n - 1 for n in found.values())
    assert not missing, (
        f"{len(missing)} of {len(baseline.dead_letters)} dead letters never arrived: "
        f"{baseline.dead_letters.explain(missing)}"
    )
    extra = set(found) - set(baseline.dead_letters)
    assert not extra, f"dead letters the fault-free run has not: {found.explain(extra)}"
    lost = len(missing)
    return len(baseline.dead_letters), lost, duplicated


def assert_clean_log(path: Path) -> None:
    text = path.read_text(errors="replace")
    for marker in ("panicked", "stack backtrace", "Traceback"):
        assert marker not in text, f"{marker!r} in the engine log {path}:\n{text[-3000:]}"


def report(capsys: pytest.CaptureFixture[str], title: str, lines: list[str]) -> None:
    with capsys.disabled():
        print(f"\n[{title}]")
        for line in lines:
            print(f"  {line}")


def identical_to(
    baseline: Baseline, client: redis.Redis, prefix: str, timeout: float, what: str
) -> Comparison:
    return wait_for(
        lambda: compare(baseline.view, read_view(client, prefix)),
        timeout=timeout,
        interval=1.0,
        what=what,
    )


# --- a Redis with persistence that the tests stop and start ------------------------------


class PersistentRedis:
    """redis-server with an append-only file on a fixed port, stopped and restarted at will."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None
        data_dir.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        assert not port_answers(self.port), f"port {self.port} is taken"
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        argv += ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.data_dir)]
        with open(self.data_dir / "redis.log", "ab") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        process = self.process
        wait_for(
            lambda: process.poll() is None and self.answers(),
            timeout=15,
            what=f"redis-server on port {self.port} (log: {self.data_dir / 'redis.log'})",
        )

    def answers(self) -> bool:
        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        """SIGTERM: Redis writes the append-only file out and exits."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(15)
        self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True)


@pytest.fixture
def persistent_redis(tmp_path: Path) -> Iterator[PersistentRedis]:
    server = PersistentRedis(tmp_path / "redis-aof")
    server.start()
    yield server
    if server.process is not None and server.process.poll() is None:
        server.process.kill()
        server.process.wait()


class Sampler(threading.Thread):
    """Reads a value every `interval` seconds until stopped; keeps (time, value) pairs."""

    def __init__(self, read: Callable[[], float], interval: float = 0.1) -> None:
        super().__init__(name="sampler", daemon=True)
        self.read = read
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.interval):
            with contextlib.suppress(OSError, AssertionError):
                self.samples.append((time.monotonic(), self.read()))

    def since(self, moment: float) -> list[float]:
        return [value for at, value in self.samples if at >= moment]


# --- crash anywhere ------------------------------------------------------------------------


def snapshotted(store: Path, steps: list[str]) -> int:
    """Input records up to the offsets a restart would resume from (0 before any snapshot)."""
    try:
        return sum(saved_offsets(store, steps).values())
    except RecoveryStoreError:  # read while the engine was writing: try again
        return -1


# Sent slower than the engine reads, so that the kills fall while input is still arriving.
CRASH = Scale(customers=2000, days=4, rate=2500, kills=5)
CRASH_LONG = Scale(customers=4000, days=18, rate=4000, kills=12)


@pytest.mark.parametrize(
    "scale",
    [pytest.param(CRASH, id="short"), pytest.param(CRASH_LONG, id="long", marks=pytest.mark.slow)],
)
def test_kill_9_at_random_moments_loses_and_doubles_nothing(
    scale: Scale,
    broker: Service,
    redis_server: Service,
    redis_client: redis.Redis,
    topics: Topics,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from flows.engine import build_flow

    events = simulated(scale)
    store = tmp_path / "recovery"
    settings = fault_settings(
        broker, redis_server, topics, "crash:", store, engine={"snapshot_interval_seconds": 1.0}
    )
    steps = kafka_input_steps(build_flow(settings))
    log = tmp_path / "crash.log"
    rng = random.Random(20260301)
    feeder = Feeder(events, settings, scale.rate)
    feeder.start()
    lines, resumes = [], []
    for life in range(scale.kills):
        resumed = snapshotted(store, steps)
        resumes.append(resumed)
        engine = EngineProcess(settings, log)
        if life % 2:
            # A kill after this life's first snapshot: the next one resumes mid-stream.
            wait_for(
                lambda engine=engine, resumed=resumed: (
                    snapshotted(store, steps) > resumed or drained(engine)
                ),
                timeout=90,
                interval=0.1,
                what=f"a snapshot in life {life + 1} (log: {log})",
            )
        delay = rng.uniform(0.2, 2.5)
        time.sleep(delay)  # the injected fault: kill -9 at a random moment
        count = handled(engine)
        engine.process.kill()
        engine.process.wait()
        engine.stop()
        lines.append(
            f"life {life + 1}: resumed at input offset {resumed:,}; kill -9 after "
            f"{'a snapshot + ' if life % 2 else ''}{delay:.1f} s, having handled {count:,.0f}"
        )
    sent = feeder.finish()
    resumed = snapshotted(store, steps)
    with EngineProcess(settings, log) as engine:
        wait_for(lambda: drained(engine), timeout=180, interval=0.5, what=f"lag 0 (log: {log})")
        baseline = fault_free_run(
            broker, redis_server, topics, events, redis_client, tmp_path / "fault-free.log"
        )
        result = identical_to(
            baseline, redis_client, "crash:", 120, "the crashed run to match the fault-free one"
        )
        assert engine.stop(signal.SIGTERM) == 0
    assert_clean_log(log)
    assert_clean_log(tmp_path / "fault-free.log")
    assert any(0 < r < sent for r in resumes), f"no life resumed mid-stream: {resumes}"
    letters, lost, duplicated = check_dead_letters(baseline, broker.endpoint, topics)
    assert result.applied == result.applied_baseline > 0
    report(
        capsys,
        f"crash anywhere ({scale.customers} customers, {scale.days:g} days)",
        [
            f"sent {sent:,} records at {scale.rate:,.0f}/s; recovery snapshots every 1 s",
            *lines,
            f"final life: resumed at input offset {resumed:,} and ran to the end",
            f"verified: {result!r}",
            f"dead letters: {letters} expected, lost {lost}, sent twice after a replay "
            f"{duplicated} (the dead-letter topic is at-least-once)",
        ],
    )


# --- Redis outage ----------------------------------------------------------------------------

OUTAGE = Scale(customers=600, days=4, rate=1000, fault_seconds=10)
OUTAGE_LONG = Scale(customers=2000, days=8, rate=2000, fault_seconds=30)


@pytest.mark.parametrize(
    "scale",
    [
        pytest.param(OUTAGE, id="10s"),
        pytest.param(OUTAGE_LONG, id="30s", marks=pytest.mark.slow),
    ],
)
def test_redis_outage_holds_input_back_and_loses_nothing(
    scale: Scale,
    broker: Service,
    redis_server: Service,
    redis_client: redis.Redis,
    persistent_redis: PersistentRedis,
    topics: Topics,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    events = simulated(scale)
    settings = fault_settings(
        broker,
        persistent_redis.url,
        topics,
        "crm:",
        tmp_path / "recovery",
        redis={"retry_backoff_cap_seconds": 1.0},
    )
    log = tmp_path / "engine.log"
    feeder = Feeder(events, settings, scale.rate)
    with EngineProcess(settings, log, "--stop-timeout", "5") as engine:
        feeder.start()
        wait_for(lambda: handled(engine) >= 1000, timeout=60, what="1000 records handled")
        lag = Sampler(lambda: engine.metric(LAG))
        lag.start()

        persistent_redis.stop()  # the injected fault
        down_at = time.monotonic()
        sent_at_stop = feeder.sent
        wait_for(lambda: engine.metric("crmstream_redis_up") == 0, timeout=15, what="redis_up 0")
        held_at = handled(engine)
        time.sleep(max(0.0, scale.fault_seconds - (time.monotonic() - down_at)))
        assert engine.process.poll() is None, "the engine died while Redis was down"
        still = handled(engine)
        errors = engine.metric("crmstream_redis_write_errors_total")
        sent_while_down = feeder.sent - sent_at_stop
        lag_while_down = max(lag.since(down_at), default=0.0)

        persistent_redis.start()  # same port, same append-only file
        up_at = time.monotonic()
        outage = up_at - down_at
        wait_for(lambda: engine.metric("crmstream_redis_up") == 1, timeout=30, what="redis_up 1")
        sent = feeder.finish()
        wait_for(lambda: drained(engine), timeout=120, interval=0.5, what=f"lag 0 (log: {log})")
        lag.done.set()
        lag_after = max(lag.since(up_at), default=0.0)
        retries = engine.metric("crmstream_redis_retries_total")

        baseline = fault_free_run(
            broker, redis_server, topics, events, redis_client, tmp_path / "fault-free.log"
        )
        letters, lost, duplicated = check_dead_letters(baseline, broker.endpoint, topics)
        with persistent_redis.client() as client:
            result = identical_to(
                baseline, client, "crm:", 60, "Redis after the outage to match the fault-free run"
            )

        # Stopping while Redis is down again cannot flush: it ends within --stop-timeout.
        persistent_redis.stop()
        errors_before = engine.metric("crmstream_redis_write_errors_total")
        first = next(e for e in events if e.kind == "customers")
        record = {**first.value, "customer_id": "C9999999", "event_id": "stop-test"}
        produce([first._replace(key="C9999999", value=record)], settings)
        wait_for(
            lambda: engine.metric("crmstream_redis_write_errors_total") > errors_before,
            timeout=30,
            what="a write waiting for Redis",
        )
        stopping = time.monotonic()
        code = engine.stop(signal.SIGTERM)
        stop_seconds = time.monotonic() - stopping

    assert held_at == still, "records were applied while Redis was down"
    assert errors > 0 and retries > 0
    assert sent_while_down > 0 and lag_after >= lag_while_down + 0.5 * sent_while_down, (
        f"lag after the outage {lag_after:.0f}, {sent_while_down} records sent while down"
    )
    assert code == 1 and stop_seconds < 5 + 5, f"exit {code} after {stop_seconds:.1f} s"
    assert_clean_log(log)
    assert duplicated == 0
    report(
        capsys,
        f"Redis outage ({scale.fault_seconds:g} s)",
        [
            f"sent {sent:,} records at {scale.rate:,.0f}/s; Redis (append-only file) stopped "
            f"after {held_at:,.0f} were handled, restarted on the same port {outage:.1f} s later",
            f"while down: crmstream_redis_up 0, {errors:.0f} write errors, handled stayed at "
            f"{still:,.0f}, {sent_while_down:,} records sent meanwhile (held back in Kafka); "
            f"consumer lag reported {lag_after:,.0f} once the worker ran again",
            f"after: crmstream_redis_up 1, {retries:.0f} retries in all, the engine never "
            "restarted",
            f"verified: {result!r}",
            f"dead letters: {letters} expected, lost {lost}, doubled {duplicated}",
            f"SIGTERM with Redis down again: exit {code} after {stop_seconds:.1f} s "
            "(--stop-timeout 5), no panic",
        ],
    )


# --- broker freeze ----------------------------------------------------------------------------

FREEZE = Scale(customers=600, days=4, rate=1000, fault_seconds=10)
FREEZE_LONG = Scale(customers=2000, days=8, rate=2000, fault_seconds=30)


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[Service]:
    """A broker for this test alone: freezing it must not stall anyone else."""
    service = start_broker(log_path=tmp_path / "broker.log")
    yield service
    if service.is_running():
        os.kill(service.pid, signal.SIGCONT)  # in case the test failed while it was frozen
    service.stop()


@pytest.mark.parametrize(
    "scale",
    [pytest.param(FREEZE, id="10s"), pytest.param(FREEZE_LONG, id="30s", marks=pytest.mark.slow)],
)
def test_broker_freeze_loses_and_doubles_nothing(
    scale: Scale,
    own_broker: Service,
    redis_server: Service,
    redis_client: redis.Redis,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    topics = _create_topics(own_broker)
    events = simulated(scale)
    settings = fault_settings(own_broker, redis_server, topics, "freeze:", tmp_path / "recovery")
    log = tmp_path / "engine.log"
    feeder = Feeder(events, settings, scale.rate)
    with EngineProcess(settings, log) as engine:
        feeder.start()
        wait_for(lambda: handled(engine) >= 1000, timeout=60, what="1000 records handled")
        os.kill(own_broker.pid, signal.SIGSTOP)  # the injected fault
        frozen_at = time.monotonic()
        try:
            at_freeze = handled(engine)
            sent_at_freeze = feeder.sent
            time.sleep(scale.fault_seconds)
            assert engine.process.poll() is None, "the engine died while the broker was frozen"
        finally:
            os.kill(own_broker.pid, signal.SIGCONT)
        frozen = time.monotonic() - frozen_at
        during = handled(engine) - at_freeze
        sent_during = feeder.sent - sent_at_freeze
        wait_for(
            lambda: handled(engine) > at_freeze + during + 100,
            timeout=60,
            what="the engine to continue after the broker thawed",
        )
        sent = feeder.finish()
        wait_for(lambda: drained(engine), timeout=120, interval=0.5, what=f"lag 0 (log: {log})")
        baseline = fault_free_run(
            own_broker, redis_server, topics, events, redis_client, tmp_path / "fault-free.log"
        )
        result = identical_to(
            baseline, redis_client, "freeze:", 60, "the run to match the fault-free one"
        )
        assert engine.stop(signal.SIGTERM) == 0
    assert_clean_log(log)
    letters, lost, duplicated = check_dead_letters(baseline, own_broker.endpoint, topics)
    report(
        capsys,
        f"broker freeze ({scale.fault_seconds:g} s)",
        [
            f"sent {sent:,} records at {scale.rate:,.0f}/s; SIGSTOP on the broker after "
            f"{at_freeze:,.0f} were handled, SIGCONT {frozen:.1f} s later",
            f"while frozen: {during:,.0f} records handled from what was already fetched, "
            f"{sent_during:,} delivered by the producer; the engine kept running",
            f"verified: {result!r}",
            f"dead letters: {letters} expected, lost {lost}, sent twice {duplicated} "
            "(producer retries are at-least-once)",
        ],
    )


def topic_names(prefix: str) -> dict[str, Any]:
    kinds = ("transactions", "interactions", "outcomes", "customers")
    return {
        **{kind: f"{prefix}{kind}" for kind in kinds},
        "dead_letter": f"{prefix}dead-letter",
        "partitions": 4,
        "replication_factor": 1,
    }


def _create_topics(broker: Service) -> Topics:
    settings = settings_for(broker, None, topic_names(f"f{os.urandom(4).hex()}."))
    create_topics(settings, timeout=15)
    return settings.kafka.topics


# --- graceful stop -------------------------------------------------------------------------


def _handled_at_stop(log: Path, life: int) -> int:
    found = re.findall(
        r"stopped cleanly in [\d.]+ s: input ended, (\d+) records handled", log.read_text()
    )
    assert len(found) == life, f"no clean stop logged for life {life}:\n{log.read_text()[-3000:]}"
    return int(found[-1])


def test_sigint_and_sigterm_flush_snapshot_and_exit_cleanly(
    broker: Service,
    redis_server: Service,
    redis_client: redis.Redis,
    topics: Topics,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    events = simulated(Scale(customers=500, days=3, rate=1000))
    expected = len(events) - never_handled(events)
    # The shipped snapshot interval (10 s): a stop must not wait for it, nor lose what
    # was read since the last periodic snapshot.
    settings = fault_settings(broker, redis_server, topics, "crm:", tmp_path / "recovery")
    log = tmp_path / "engine.log"
    feeder = Feeder(events, settings, 1000)
    feeder.start()
    lines, counts = [], []
    for life, sig in enumerate((signal.SIGINT, signal.SIGTERM), start=1):
        engine = EngineProcess(settings, log)
        wait_for(lambda engine=engine: handled(engine) >= 1000, timeout=60, what="1000 handled")
        replayed = engine.metric("crmstream_alerts_replayed_total")
        stopping = time.monotonic()
        code = engine.stop(sig)
        seconds = time.monotonic() - stopping
        counts.append(_handled_at_stop(log, life))
        assert code == 0 and seconds < 10, f"{sig.name}: exit {code} after {seconds:.1f} s"
        assert replayed == 0, f"life {life} emitted {replayed:.0f} alerts again"
        lines.append(
            f"life {life}: {sig.name} -> exit {code} in {seconds:.1f} s, {counts[-1]:,} records "
            "handled and snapshotted"
        )
    sent = feeder.finish()
    with EngineProcess(settings, log) as engine:
        wait_for(
            lambda: handled(engine) >= expected - sum(counts) and drained(engine),
            timeout=120,
            interval=0.5,
            what="the rest of the input",
        )
        replayed = engine.metric("crmstream_alerts_replayed_total")
        assert engine.stop(signal.SIGTERM) == 0
    counts.append(_handled_at_stop(log, 3))
    assert_clean_log(log)
    assert replayed == 0
    assert sum(counts) == expected, f"handled per life {counts}, expected {expected} in all"
    report(
        capsys,
        "graceful stop",
        [
            f"sent {sent:,} records ({sent - expected} for customers never announced, held)",
            *lines,
            f"life 3 resumed and handled the remaining {counts[-1]:,}: {sum(counts):,} in all, "
            "none lost, none read twice, no alert emitted twice, no panic in the log",
        ],
    )


# --- broker restart ----------------------------------------------------------------------------


def test_waits_for_the_broker_and_refuses_a_store_the_broker_has_forgotten(
    redis_server: Service,
    redis_client: redis.Redis,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = free_port()
    bootstrap = f"127.0.0.1:{port}"
    names = topic_names("r.")
    store = tmp_path / "recovery"
    settings = fault_settings(bootstrap, redis_server, names, "crm:", store)
    events = simulated(Scale(customers=200, days=2, rate=0))
    expected = len(events) - never_handled(events)
    log = tmp_path / "engine.log"
    brokers: list[Service] = []

    def start_later() -> None:
        brokers.append(start_broker(port, log_path=tmp_path / "broker.log"))
        create_topics(settings, timeout=15)

    timer = threading.Timer(5.0, start_later)
    timer.start()
    try:
        started = time.monotonic()
        with EngineProcess(settings, log, "--wait-for-broker", "60") as engine:
            waited = time.monotonic() - started
            produce(events, settings)
            wait_for(lambda: handled(engine) >= expected, timeout=60, what="the input handled")
            assert engine.stop(signal.SIGTERM) == 0
        timer.join()
        text = log.read_text()
        assert "trying again" in text and re.search(r"answered after \d+ s", text), text[-2000:]

        # The local broker restarts: every topic and offset is gone, the store is not.
        brokers.pop().stop()
        brokers.append(start_broker(port, log_path=tmp_path / "broker-2.log"))
        create_topics(settings, timeout=15)
        produce(events[:100], settings)
        env = {**os.environ, **settings_env(settings)}
        began = time.monotonic()
        refused = subprocess.run(
            [sys.executable, "-m", "crmstream.run"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        refusal_seconds = time.monotonic() - began
    finally:
        timer.cancel()
        for service in brokers:
            service.stop()
    message = refused.stderr
    assert refused.returncode == 2, refused.stdout + message
    assert "would resume past the end" in message and f"rm -r {store}" in message, message
    report(
        capsys,
        "broker restart",
        [
            f"engine started 5 s before the broker with --wait-for-broker 60: it waited "
            f"({waited:.1f} s until serving) and handled all {expected} records",
            "broker killed and started again empty on the same port, 100 records produced",
            f"restart with the old store: exit 2 after {refusal_seconds:.1f} s with: "
            f"{message.strip().splitlines()[-1][:160]}...",
        ],
    )
