"""Run the real engine (`crmstream run`) as a child process against the test services."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Producer
from helpers import wait_for
from prometheus_client.parser import text_string_to_metric_families

from crmstream.settings import ENV_PREFIX, Settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as CRMSTREAM_* variables, so a child process loads the same ones."""
    env: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}__{key.upper()}" if prefix else key.upper(), inner)
        elif isinstance(value, list):
            env[ENV_PREFIX + prefix] = orjson.dumps(value).decode()
        else:
            env[ENV_PREFIX + prefix] = str(value)

    data = settings.model_dump(mode="json")
    data["kafka"]["sasl_password"] = settings.kafka.sasl_password.get_secret_value()
    data["redis"]["password"] = settings.redis.password.get_secret_value()
    walk("", data)
    return env


class EngineProcess:
    """`crmstream run` in a child process; ready once its /metrics answers."""

    def __init__(self, settings: Settings, log_path: Path, *args: str) -> None:
        self.metrics_port = free_port()
        env = {**os.environ, **settings_env(settings)}
        env[f"{ENV_PREFIX}METRICS__PORT"] = str(self.metrics_port)
        self.log_path = log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - lives as long as the process
        self.process = subprocess.Popen(
            [sys.executable, "-m", "crmstream.run", *args],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_for(self._metrics_text, timeout=60, what=f"engine metrics (log: {log_path})")

    def _metrics_text(self) -> str | None:
        if self.process.poll() is not None:
            raise AssertionError(
                f"engine exited with {self.process.returncode}:\n{self.log_path.read_text()[-3000:]}"
            )
        try:
            url = f"http://127.0.0.1:{self.metrics_port}/metrics"
            return urllib.request.urlopen(url, timeout=2).read().decode()
        except OSError:
            return None

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        text = self._metrics_text() or ""
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(
                    sample.labels.get(k) == v for k, v in labels.items()
                ):
                    total += sample.value
        return total

    def series(self, name: str) -> int:
        """How many label combinations `name` has."""
        text = self._metrics_text() or ""
        return sum(
            sample.name == name
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        )

    def stop(self, sig: int = signal.SIGINT) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def __enter__(self) -> EngineProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def produce(settings: Settings, records: list[tuple[str, str | None, Any]]) -> None:
    """Send (topic kind, key, value) records in order; dict values are JSON-encoded."""
    topics = settings.kafka.topics.model_dump()
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers, "linger.ms": 1})
    for kind, key, value in records:
        payload = orjson.dumps(value) if isinstance(value, dict) else value
        producer.produce(topics[kind], key=key.encode() if key else None, value=payload)
    assert producer.flush(30) == 0, "records not delivered to the test broker"
