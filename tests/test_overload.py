"""Overload: fed at twice the rate it can sustain, the engine keeps running with bounded memory,
shows the growing lag in its metrics, and drains it once the load stops."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from engine_process import EngineProcess
from helpers import settings_for, wait_for
from test_faults import Feeder

from crmstream.devservices import Service
from crmstream.settings import Topics
from crmstream.simulator import SimulationConfig, simulate
from crmstream.simulator.producer import produce

pytestmark = pytest.mark.integration


def resident_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


@pytest.mark.parametrize(
    "overload_seconds",
    [pytest.param(20, id="20s"), pytest.param(180, id="3min", marks=pytest.mark.slow)],
)
def test_twice_the_sustainable_rate_grows_lag_not_memory_and_drains(
    broker: Service, redis_server: Service, topics: Topics, tmp_path: Path, overload_seconds: int
) -> None:
    settings = settings_for(broker, redis_server, topics, engine={"recovery_dir": ""})
    events = list(simulate(SimulationConfig(customers=2000, days=25, seed=7)))
    warmup, rest = events[:20_000], events[20_000:]

    with EngineProcess(settings, tmp_path / "engine.log") as engine:
        # The sustainable rate: how fast the engine drains a backlog on this machine now.
        produce(warmup, settings)
        started = time.monotonic()
        wait_for(
            lambda: engine.metric("crmstream_events_total") >= len(warmup) * 0.99,
            timeout=120,
            interval=0.2,
            what="the warm-up backlog drained",
        )
        sustainable = len(warmup) / (time.monotonic() - started)
        offered = 2 * sustainable
        batch = rest[: int(offered * overload_seconds)]
        print(f"\nsustainable ≈ {sustainable:,.0f} events/s; offering {offered:,.0f}/s "
              f"for {overload_seconds} s ({len(batch):,} events)")  # fmt: skip

        feeder = Feeder(batch, settings, offered)
        feeder.start()
        peak_lag = 0.0
        rss: list[int] = []
        deadline = time.monotonic() + overload_seconds * 3 + 60
        while feeder.is_alive() and time.monotonic() < deadline:
            peak_lag = max(peak_lag, engine.metric("crmstream_kafka_consumer_lag_messages"))
            rss.append(resident_bytes(engine.process.pid))
            assert engine.process.poll() is None, "the engine stopped under overload"
            time.sleep(0.5)
        sent = feeder.finish()
        load_ended = time.monotonic()

        wait_for(
            lambda: (
                engine.metric("crmstream_kafka_consumer_lag_messages") == 0
                and engine.metric("crmstream_events_total") >= len(warmup) + sent * 0.99
            ),
            timeout=overload_seconds * 4 + 60,
            interval=0.5,
            what="the lag drained after the load stopped",
        )
        drained_in = time.monotonic() - load_ended
        half = len(rss) // 2
        print(f"peak lag {peak_lag:,.0f} messages; peak RSS {max(rss) / 2**20:,.0f} MiB "
              f"(first half {max(rss[:half]) / 2**20:,.0f}, second half "
              f"{max(rss[half:]) / 2**20:,.0f}); drained {drained_in:.1f} s after the load")  # fmt: skip

        assert peak_lag > sustainable, "lag never grew beyond a second of work: not overloaded"
        # Input is pulled, not pushed: memory follows the state, not the backlog.
        assert max(rss[half:]) < 1.25 * max(rss[:half]) + 64 * 2**20
