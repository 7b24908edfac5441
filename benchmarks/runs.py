"""The measured runs against real services: floor, engine throughput, engine latency."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.services import (
    EVENT_TIME_LATENCY,
    EVENTS_TOTAL,
    INGEST_LATENCY,
    Bench,
    EngineProcess,
    Histogram,
)
from benchmarks.workload import produce_paced
from crmstream.simulator import SimEvent

QUANTILES = (0.5, 0.95, 0.99)


def run_floor_child(
    bench: Bench,
    topics: dict[str, Any],
    expect: int,
    result_path: Path,
    profile_path: Path | None = None,
    timeout: float = 1800.0,
) -> dict[str, Any]:
    """The floor loop in a fresh process (optionally under py-spy); returns its result."""
    argv = [sys.executable, "-m", "benchmarks.floor", "--expect", str(expect)]
    argv += ["--result", str(result_path)]
    if profile_path is not None:
        spy = py_spy_binary()
        if spy is None:
            raise RuntimeError("py-spy is not installed: pip install -e '.[bench]'")
        argv = [
            spy, "record", "--rate", "250", "--format", "raw", "--function", "--nonblocking",
            "--output", str(profile_path), "--", *argv,
        ]  # fmt: skip
    log_path = result_path.with_suffix(".log")
    with open(log_path, "wb") as log:
        completed = subprocess.run(
            argv, env=bench.child_env(topics), stdout=log, stderr=subprocess.STDOUT, timeout=timeout
        )
    if completed.returncode != 0 or not result_path.exists():
        tail = log_path.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"floor run failed ({completed.returncode}):\n{tail}")
    return json.loads(result_path.read_text())


def py_spy_binary() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def _rate_between(samples: list[tuple[float, float]], low: float, high: float) -> float | None:
    """Least-squares slope of count over time for samples with low <= count <= high."""
    points = [(t, c) for t, c in samples if low <= c <= high]
    if len(points) < 3:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_c = sum(c for _, c in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var <= 0:
        return None
    return sum((t - mean_t) * (c - mean_c) for t, c in points) / var


def engine_backlog_run(
    bench: Bench,
    topics: dict[str, Any],
    expect: int,
    processes: int,
    log_path: Path,
    extra: dict[str, Any] | None = None,
    poll: float = 0.1,
    stall_timeout: float = 60.0,
    on_progress: Callable[[float], None] | None = None,
) -> dict[str, Any]:
    """Start the engine on a produced backlog; sustained rate from first to last event.

    The count is `crmstream_events_total` summed over outcomes (and processes): every
    input record, applied or dead-lettered, counts once.
    """
    bench.flush_redis()
    with EngineProcess(bench.child_env(topics, extra), processes, log_path) as engine:
        ready = engine.wait_ready()
        samples: list[tuple[float, float]] = []
        cpu: list[float] = []  # process_cpu_seconds_total of the engine at each sample
        busy_before = machine_busy()
        last_change = time.monotonic()
        count = 0.0
        while count < expect:
            metrics = engine.metrics()
            now = time.monotonic()
            new = metrics.total(EVENTS_TOTAL)
            if new != count:
                last_change = now
            count = new
            samples.append((now, count))
            cpu.append(metrics.total("process_cpu_seconds_total"))
            if on_progress is not None:
                on_progress(count / expect)
            if now - last_change > stall_timeout:
                break
            time.sleep(poll)
        outcomes = metrics.by_label(EVENTS_TOTAL, "outcome")
        reasons = metrics.by_label("crmstream_dead_letters_total", "reason")
        busy_after = machine_busy()
    first = next((i for i, (_, c) in enumerate(samples) if c > 0), None)
    last = next((i for i, (_, c) in enumerate(samples) if c >= expect), None)
    if last is None and samples:
        last = max(range(len(samples)), key=lambda i: (samples[i][1], -samples[i][0]))
    if first is not None and last is not None and last == first and first > 0:
        # Everything arrived between two scrapes: start from the scrape before (a lower bound).
        first -= 1
    started = samples[first] if first is not None else None
    finished = samples[last] if last is not None else None
    result: dict[str, Any] = {
        "processes": processes,
        "expected": expect,
        "counted": count,
        "complete": count >= expect,
        "outcomes": outcomes,
        "dead_letter_reasons": reasons,
        "seconds_to_ready": ready,
        "poll_seconds": poll,
        "machine": busy_between(busy_before, busy_after),
    }
    if started and finished and finished[0] > started[0]:
        span = finished[0] - started[0]
        result["seconds_first_to_last"] = span
        result["events_per_second"] = (finished[1] - started[1]) / span
        steady = _rate_between(samples, 0.1 * expect, 0.9 * expect)
        result["steady_events_per_second_10_90"] = steady
        spent = cpu[last] - cpu[first]
        result["cpu_seconds_first_to_last"] = spent
        result["events_per_cpu_second"] = (finished[1] - started[1]) / spent if spent > 0 else None
        result["seconds_first_event_after_ready"] = started[0] - engine.started - ready
    result["samples"] = [
        (round(t - engine.started, 3), c) for t, c in samples[:: max(1, len(samples) // 200)]
    ]
    return result


def machine_busy() -> tuple[float, float, float]:
    """(monotonic time, busy jiffies, all jiffies) from /proc/stat; 1-minute load average."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return time.monotonic(), float(sum(fields) - idle), float(sum(fields))


def busy_between(
    before: tuple[float, float, float], after: tuple[float, float, float]
) -> dict[str, float]:
    """Share of all cores busy (any process) during a run, and the load average after it."""
    total = after[2] - before[2]
    return {
        "cores_busy_share": (after[1] - before[1]) / total if total > 0 else 0.0,
        "load_average_1m": os.getloadavg()[0],
    }


def quantiles(histogram: Histogram) -> dict[str, Any]:
    out: dict[str, Any] = {"count": histogram.total}
    if histogram.total:
        out["mean_ms"] = 1000 * histogram.sum / histogram.total
    for q in QUANTILES:
        value, exact = histogram.quantile(q)
        name = f"p{round(q * 100)}"
        out[f"{name}_ms"] = None if value is None else 1000 * value
        if not exact and value is not None:
            out[f"{name}_at_least"] = True
    return out


def engine_latency_run(
    bench: Bench,
    topics: dict[str, Any],
    events: list[SimEvent],
    rate: float,
    seconds: float,
    warmup: float,
    log_path: Path,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The engine (1 process) fed at a paced rate with event time ≈ now.

    The latency histograms are read once the warm-up has been sent and again after the
    engine has applied everything sent; their difference gives the percentiles.
    """
    bench.flush_redis()
    wanted = int(rate * seconds)
    if wanted > len(events):
        raise RuntimeError(f"latency run needs {wanted} events, only {len(events)} generated")
    settings = bench.settings(topics)
    with EngineProcess(bench.child_env(topics, extra), 1, log_path) as engine:
        engine.wait_ready()
        busy_before = machine_busy()
        warm_count = int(rate * warmup)
        baseline: dict[str, Any] = {}

        def sent_then_mark(batch: list[SimEvent]) -> Any:
            for index, event in enumerate(batch):
                if index == warm_count:
                    metrics = engine.metrics()
                    baseline["ingest"] = metrics.histogram(INGEST_LATENCY)
                    baseline["event_time"] = metrics.histogram(EVENT_TIME_LATENCY)
                    baseline["at"] = time.monotonic()
                yield event

        stats = produce_paced(sent_then_mark(events[:wanted]), settings, rate)
        send_end = time.monotonic()
        deadline = time.monotonic() + max(60.0, seconds)
        while True:
            metrics = engine.metrics()
            counted = metrics.total(EVENTS_TOTAL)
            if counted >= stats.produced or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        drained_after = time.monotonic()
        busy_after = machine_busy()
    ingest = metrics.histogram(INGEST_LATENCY)
    event_time = metrics.histogram(EVENT_TIME_LATENCY)
    if "ingest" in baseline:
        ingest = ingest.minus(baseline["ingest"])
        event_time = event_time.minus(baseline["event_time"])
    return {
        "target_rate": rate,
        "sent": stats.produced,
        "send_seconds": stats.seconds,
        "achieved_rate": stats.rate,
        "warmup_events": warm_count,
        "counted": counted,
        "drained": counted >= stats.produced,
        "drain_seconds_after_send": drained_after - send_end,
        "machine": busy_between(busy_before, busy_after),
        "ingest_to_redis": quantiles(ingest),
        "event_time_to_redis": quantiles(event_time),
        "ingest_histogram": ingest.to_json(),
        "event_time_histogram": event_time.to_json(),
    }
