"""The benchmark's own services and the engine under test, as child processes.

A Tansu broker and a private redis-server on free loopback ports (never the developer's
Redis); fresh, explicitly created topics per measurement; `crmstream run` as a child with
its settings in CRMSTREAM_* variables, observed through its /metrics.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from prometheus_client.parser import text_string_to_metric_families

from crmstream.devservices import Service, start_broker, start_redis
from crmstream.settings import ENV_PREFIX, Settings, load_settings
from crmstream.topics import create_topics

HOST = "127.0.0.1"


def free_port_pair() -> int:
    """A port P such that P and P + 1 were both free a moment ago."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind((HOST, 0))
            port = first.getsockname()[1]
            with socket.socket() as second:
                try:
                    second.bind((HOST, port + 1))
                except OSError:
                    continue
                return port
    raise RuntimeError("no two consecutive free loopback ports found")


def hermetic_environ() -> dict[str, str]:
    """The current environment without CRMSTREAM_* variables: shipped defaults only."""
    return {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _flatten(prefix: str, value: Any, into: dict[str, str]) -> None:
    if isinstance(value, Mapping):
        for key, inner in value.items():
            # librdkafka property names under kafka.extra are case-sensitive: keep them.
            name = key if prefix.endswith("EXTRA") else key.upper()
            _flatten(f"{prefix}__{name}" if prefix else name, inner, into)
    else:
        into[ENV_PREFIX + prefix] = str(value)


def overrides_env(overrides: Mapping[str, Any]) -> dict[str, str]:
    """{"kafka": {"topics": {"partitions": 4}}} -> CRMSTREAM_KAFKA__TOPICS__PARTITIONS=4."""
    env: dict[str, str] = {}
    _flatten("", overrides, env)
    return env


@dataclass
class Bench:
    """Broker, Redis and the settings overrides that point at them."""

    broker: Service
    redis: Service
    workdir: Path

    def overrides(
        self, topics: Mapping[str, Any], extra: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Settings overrides: these services and topics, recovery off unless `extra` says."""
        base: dict[str, Any] = {
            "kafka": {"bootstrap_servers": self.broker.endpoint, "topics": dict(topics)},
            "redis": {"url": self.redis.endpoint},
            "engine": {"recovery_dir": ""},
        }
        return deep_merge(base, extra or {})

    def settings(
        self, topics: Mapping[str, Any], extra: Mapping[str, Any] | None = None
    ) -> Settings:
        saved = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
        for name in saved:
            del os.environ[name]
        try:
            return load_settings(**self.overrides(topics, extra))
        finally:
            os.environ.update(saved)

    def child_env(
        self, topics: Mapping[str, Any], extra: Mapping[str, Any] | None = None
    ) -> dict[str, str]:
        env = hermetic_environ()
        env.update(overrides_env(self.overrides(topics, extra)))
        env.setdefault("CRMSTREAM_LOG_LEVEL", "WARNING")
        return env

    def fresh_recovery_dir(self, label: str) -> str:
        """An empty directory for one engine run's recovery store (the engine creates it)."""
        path = self.workdir / "recovery" / f"{label}-{uuid.uuid4().hex[:6]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        return str(path)

    def new_topics(self, label: str, partitions: int = 4) -> dict[str, Any]:
        """Uniquely named topics, created before anything can auto-create them."""
        prefix = f"bench-{label}-{uuid.uuid4().hex[:6]}."
        topics: dict[str, Any] = {
            kind: prefix + kind
            for kind in ("transactions", "interactions", "outcomes", "customers")
        }
        topics["dead_letter"] = prefix + "dead-letter"
        topics["partitions"] = partitions
        topics["replication_factor"] = 1
        create_topics(self.settings(topics), timeout=30)
        return topics

    def redis_client(self) -> redis.Redis:
        return redis.Redis.from_url(self.redis.endpoint)

    def flush_redis(self) -> None:
        with self.redis_client() as client:
            client.flushall()


@contextmanager
def bench_services(workdir: Path) -> Iterator[Bench]:
    workdir.mkdir(parents=True, exist_ok=True)
    broker = start_broker(log_path=workdir / "broker.log")
    try:
        server = start_redis(log_path=workdir / "redis.log")
        try:
            yield Bench(broker, server, workdir)
        finally:
            server.stop()
    finally:
        broker.stop()


# ---------------------------------------------------------------------------------------
# Scraping /metrics


@dataclass
class Histogram:
    """Cumulative bucket counts of a Prometheus histogram (summed over processes)."""

    bounds: list[float]  # upper bounds, the last one +inf
    counts: list[float]  # cumulative
    total: float
    sum: float

    def minus(self, earlier: Histogram) -> Histogram:
        return Histogram(
            self.bounds,
            [a - b for a, b in zip(self.counts, earlier.counts, strict=True)],
            self.total - earlier.total,
            self.sum - earlier.sum,
        )

    def quantile(self, q: float) -> tuple[float | None, bool]:
        """(value, exact_within_buckets); linear interpolation inside the bucket.

        When the rank falls in the +Inf bucket the largest finite bound is returned and
        the flag is False: the true value is at least that.
        """
        if self.total <= 0:
            return None, False
        rank = q * self.total
        lower_bound, lower_count = 0.0, 0.0
        for bound, count in zip(self.bounds, self.counts, strict=True):
            if count >= rank:
                if bound == float("inf"):
                    return lower_bound, False
                inside = count - lower_count
                share = (rank - lower_count) / inside if inside > 0 else 1.0
                return lower_bound + (bound - lower_bound) * share, True
            lower_bound, lower_count = bound, count
        return lower_bound, False

    def to_json(self) -> dict[str, Any]:
        return {
            "bounds": [b if b != float("inf") else "+Inf" for b in self.bounds],
            "cumulative_counts": self.counts,
            "count": self.total,
            "sum": self.sum,
        }


class Metrics:
    """Parsed samples of one or more /metrics endpoints."""

    def __init__(self, texts: list[str]) -> None:
        self.samples: list[tuple[str, dict[str, str], float]] = []
        for text in texts:
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    self.samples.append((sample.name, dict(sample.labels), sample.value))

    def total(self, name: str, **labels: str) -> float:
        return sum(
            value
            for sample_name, sample_labels, value in self.samples
            if sample_name == name and all(sample_labels.get(k) == v for k, v in labels.items())
        )

    def by_label(self, name: str, label: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for sample_name, labels, value in self.samples:
            if sample_name == name:
                out[labels.get(label, "")] = out.get(labels.get(label, ""), 0.0) + value
        return out

    def histogram(self, name: str) -> Histogram:
        buckets: dict[float, float] = {}
        for sample_name, labels, value in self.samples:
            if sample_name == f"{name}_bucket":
                bound = float(labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + value
        bounds = sorted(buckets)
        return Histogram(
            bounds,
            [buckets[b] for b in bounds],
            self.total(f"{name}_count"),
            self.total(f"{name}_sum"),
        )


EVENTS_TOTAL = "crmstream_events_total"
INGEST_LATENCY = "crmstream_ingest_to_redis_seconds"
EVENT_TIME_LATENCY = "crmstream_event_time_to_redis_seconds"


class EngineProcess:
    """`crmstream run [--processes N]` as a child; ready once every /metrics answers."""

    def __init__(self, env: dict[str, str], processes: int, log_path: Path) -> None:
        self.processes = processes
        self.metrics_port = free_port_pair() if processes > 1 else _free_port()
        env = {**env, f"{ENV_PREFIX}METRICS__PORT": str(self.metrics_port)}
        argv = [sys.executable, "-m", "crmstream.cli", "run"]
        if processes > 1:
            argv += ["--processes", str(processes), "--base-port", str(free_port_pair())]
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.started = time.monotonic()
        self.process = subprocess.Popen(argv, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.urls = [
            f"http://{HOST}:{self.metrics_port + i}/metrics" for i in range(self.processes)
        ]

    def _check_alive(self) -> None:
        if self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"engine exited with {self.process.returncode}:\n{tail}")

    def wait_ready(self, timeout: float = 90.0) -> float:
        """Seconds from spawn until every process serves /metrics."""
        deadline = time.monotonic() + timeout
        while True:
            self._check_alive()
            try:
                self.scrape()
                return time.monotonic() - self.started
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"engine metrics did not answer within {timeout:g} s (log: {self.log_path})"
                    ) from None
                time.sleep(0.1)

    def scrape(self) -> Metrics:
        texts = []
        for url in self.urls:
            with urllib.request.urlopen(url, timeout=5) as response:
                texts.append(response.read().decode())
        return Metrics(texts)

    def metrics(self) -> Metrics:
        self._check_alive()
        return self.scrape()

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def __enter__(self) -> EngineProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])
