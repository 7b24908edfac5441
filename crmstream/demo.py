"""`crmstream demo`: the whole engine on this machine, with a live summary, for a bounded time."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import redis
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table

from crmstream.devservices import DevEnvironment, DevServiceError, dev_up
from crmstream.settings import ConfigError, Settings, load_settings
from crmstream.topics import TopicError, create_topics
from sinks.redis_sink import RedisKeys, connect

console = Console()
DEMO_PREFIX = "crmdemo:"
RUN_DIR = Path(".run")
DEMO_RECOVERY = RUN_DIR / "demo-recovery"


def _scrape(url: str) -> dict[str, float]:
    """Sum each metric over its labels, keeping events by outcome and alerts by type."""
    try:
        text = urllib.request.urlopen(url, timeout=1).read().decode()
    except OSError:
        return {}
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name = sample.name
            if name == "crmstream_events_total":
                name = f"events:{sample.labels['outcome']}"
            elif name == "crmstream_alerts_total":
                name = f"alerts:{sample.labels['type']}"
            elif name == "crmstream_kafka_consumer_lag_messages":
                name = "lag"
            elif name == "crmstream_ingest_to_redis_seconds_sum":
                name = "latency_sum"
            elif name == "crmstream_ingest_to_redis_seconds_count":
                name = "latency_count"
            else:
                continue
            sums[name] = sums.get(name, 0.0) + sample.value
    return sums


def _example_profile(client: redis.Redis, keys: RedisKeys) -> dict[str, str]:
    """The customer of the newest alert, or any profile."""
    newest = client.xrevrange(keys.alerts, count=1)
    if newest:
        customer = newest[0][1][b"customer_id"].decode()
        profile = client.hgetall(keys.profile(customer))
    else:
        found = next(iter(client.scan_iter(match=f"{keys.prefix}profile:*", count=100)), None)
        profile = client.hgetall(found) if found else {}
    wanted = (
        "customer_id", "segment", "rm_id", "stage", "value_tier", "churn_risk",
        "churn_reasons", "anomaly_score", "next_best_offer", "updated_at",
    )  # fmt: skip
    return {k: profile[k.encode()].decode() for k in wanted if k.encode() in profile}


def _summary(metrics: dict[str, float], previous: dict[str, float], elapsed: float, seconds: float,
             client: redis.Redis, keys: RedisKeys) -> Group:  # fmt: skip
    ok = metrics.get("events:ok", 0.0)
    rate = (ok - previous.get("events:ok", 0.0)) / seconds if seconds else 0.0
    table = Table(show_header=False, box=None)
    table.add_row("running", f"{elapsed:.0f} s")
    table.add_row("events applied", f"{ok:,.0f}  ({rate:,.0f}/s)")
    for outcome in ("dead_lettered", "late", "duplicate"):
        table.add_row(f"events {outcome}", f"{metrics.get(f'events:{outcome}', 0.0):,.0f}")
    table.add_row("consumer lag", f"{metrics.get('lag', 0.0):,.0f} messages")
    count = metrics.get("latency_count", 0.0)
    if count:
        table.add_row("mean ingest→Redis", f"{1000 * metrics['latency_sum'] / count:.1f} ms")
    alerts = Table("alert type", "count", box=None)
    for name, value in sorted(metrics.items()):
        if name.startswith("alerts:"):
            alerts.add_row(name.removeprefix("alerts:"), f"{value:,.0f}")
    profile = Table("field", "value", box=None)
    with suppress(redis.RedisError):
        for field, value in _example_profile(client, keys).items():
            profile.add_row(field, value[:90])
    return Group(
        Panel(table, title="crmstream demo"),
        Panel(alerts, title="alerts emitted"),
        Panel(profile, title="example profile"),
    )


@contextmanager
def _process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    with open(log, "wb") as handle:
        process = subprocess.Popen(args, env=env, stdout=handle, stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def _clear_demo_keys(settings: Settings) -> None:
    """Each demo starts from empty Redis keys: the simulator is seeded, so alert ids repeat."""
    client = connect(settings.redis)
    keys = list(client.scan_iter(match=f"{DEMO_PREFIX}*", count=1000))
    for i in range(0, len(keys), 1000):
        client.unlink(*keys[i : i + 1000])


def run_demo(duration: float, customers: int, rate: float, days: float) -> int:
    RUN_DIR.mkdir(exist_ok=True)
    try:
        settings = load_settings()
        console.print("starting services (the configured ones are used when they answer)...")
        environment: DevEnvironment = dev_up(settings, run_dir=RUN_DIR)
        # The demo's own recovery store, fresh each time: the offsets of an earlier demo
        # would point past the end of a newly started (empty) broker's topics.
        shutil.rmtree(DEMO_RECOVERY, ignore_errors=True)
        env = {
            **os.environ,
            **environment.env(),
            "CRMSTREAM_REDIS__KEY_PREFIX": DEMO_PREFIX,
            "CRMSTREAM_ENGINE__RECOVERY_DIR": str(DEMO_RECOVERY),
        }
        os.environ.update(env)
        settings = load_settings()
        create_topics(settings)
    except (ConfigError, DevServiceError, TopicError) as exc:
        console.print(f"[red]cannot start the demo:[/red] {exc}")
        return 2
    try:
        return _run(settings, env, environment, duration, customers, rate, days)
    finally:
        for service in environment.started:
            service.stop()
        if environment.started:
            console.print(
                f"stopped what the demo started: {', '.join(s.name for s in environment.started)}"
            )


def _run(settings: Settings, env: dict[str, str], environment: DevEnvironment, duration: float,
         customers: int, rate: float, days: float) -> int:  # fmt: skip
    _clear_demo_keys(settings)
    client = connect(settings.redis)
    keys = RedisKeys(settings.redis.key_prefix)
    metrics_url = f"http://{settings.metrics.host}:{settings.metrics.port}/metrics"
    command = [sys.executable, "-m", "crmstream.cli"]
    console.print(
        f"engine log: {RUN_DIR / 'engine.log'}   simulator log: {RUN_DIR / 'simulator.log'}"
    )
    started = time.monotonic()
    with (
        _process([*command, "run"], env, RUN_DIR / "engine.log") as engine,
        _process(
            [*command, "simulate", "--customers", str(customers), "--rate", str(rate),
             "--days", str(days), "--bad-fraction", "0.002", "--duration", str(duration),
             "--ground-truth", str(RUN_DIR / "ground_truth.jsonl")],
            env,
            RUN_DIR / "simulator.log",
        ),
    ):  # fmt: skip
        previous: dict[str, float] = {}
        last = started
        try:
            with Live(console=console, refresh_per_second=2) as live:
                while (elapsed := time.monotonic() - started) < duration:
                    if engine.poll() is not None:
                        console.print(
                            f"[red]the engine stopped (exit {engine.returncode}); see .run/engine.log[/red]"
                        )
                        return 1
                    now = time.monotonic()
                    current = _scrape(metrics_url)
                    live.update(_summary(current, previous, elapsed, now - last, client, keys))
                    previous, last = current, now
                    time.sleep(1.0)
        except KeyboardInterrupt:
            console.print("interrupted; stopping...")
    prefix = settings.redis.key_prefix
    console.print(
        Panel(
            "\n".join(
                [
                    f"Redis: {environment.redis_url}  (keys under '{prefix}')",
                    f"  profiles      HGETALL {prefix}profile:<customer_id>",
                    f"  alerts        XREVRANGE {prefix}alerts + - COUNT 10",
                    f"  RM alerts     XREVRANGE {prefix}alerts:rm:<rm_id> + - COUNT 10",
                    f"  RM ranking    ZREVRANGE {prefix}rm:<rm_id>:churn 0 9 WITHSCORES",
                    f"Dead letters: Kafka topic {settings.kafka.topics.dead_letter} on {environment.bootstrap_servers}",
                    f"Ground truth planted by the simulator: {RUN_DIR / 'ground_truth.jsonl'}",
                    f"Metrics: {metrics_url} while `crmstream run` is running",
                    "Note: a local broker started by the demo has been stopped, and its topics with it.",
                ]
            ),
            title="where to look",
        )
    )
    return 0
