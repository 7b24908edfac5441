"""The benchmark harness works end to end in quick mode (figures are not checked)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.report import SECTIONS

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
# The peer (Quix Streams) adds about 30 s even at quick sizes, and needs its own
# virtualenv: the smoke run leaves it out.
SMOKE_SECTIONS = [s for s in SECTIONS if s != "peer"]


@pytest.fixture(scope="module")
def quick_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    assert shutil.which("redis-server"), (
        "redis-server is not installed: `make test` installs it (apt-get install redis-server)"
    )
    out = tmp_path_factory.mktemp("bench")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMSTREAM_")}
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "--quick",
            "--only",
            ",".join(SMOKE_SECTIONS),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return out


def test_report_has_every_section_and_the_machine(quick_report: Path) -> None:
    report = json.loads((quick_report / "engine.json").read_text())
    assert report["run"]["mode"] == "quick"
    for section in SMOKE_SECTIONS:
        assert section in report, section
        assert "carried_over_from" not in report[section], section
    machine = report["machine"]
    assert machine["cores"] >= 1
    assert machine["cpu_model"]
    versions = report["versions"]
    for name in ("python", "bytewax", "river", "confluent-kafka", "redis-py", "redis-server"):
        assert versions[name], name
    assert report["configuration"]["seed"] == 42
    assert report["configuration"]["sizes"]["populations"]


def test_each_section_measured_something(quick_report: Path) -> None:
    report = json.loads((quick_report / "engine.json").read_text())
    assert report["floor"]["complete"] and report["floor"]["events_per_second"] > 0
    runs = report["throughput"]["runs"]
    assert {"1 process", "2 processes"} <= set(runs)
    for run in runs.values():
        assert run["complete"] and run["events_per_second"] > 0
    assert report["throughput"]["ratio_to_floor"]["1 process"] > 0
    latency = report["latency"]["runs"]
    assert {"25%", "50%", "80%"} <= set(latency)
    for run in latency.values():
        assert run["drained"]
        assert run["ingest_to_redis"]["count"] > 0
        assert run["ingest_to_redis"]["p99_ms"] is not None
    breakdown = report["breakdown"]
    for step in ("decode", "profile", "models", "decisions", "redis_write"):
        assert breakdown["us_per_event"][step] > 0, step
    assert breakdown["slowest_steps"]
    assert report["profile"].get("top_self") or report["profile"].get("skipped")
    populations = report["scale"]["populations"]
    assert len(populations) == 3
    for run in populations:
        assert run["resident_bytes_per_customer"] > 0
        assert run["epoch_snapshot"]["bytes_per_customer"] > 0
    assert {row["figure"] for row in report["verdicts"]}


def test_markdown_summary_is_readable(quick_report: Path) -> None:
    text = (quick_report / "engine.md").read_text()
    for heading in (
        "## Machine and versions",
        "## Figures against the targets",
        "## Throughput from a backlog",
        "## Latency under a paced load",
        "## Per-event cost, step by step",
        "## Scale and memory",
        "## Configuration and seeds",
    ):
        assert heading in text, heading
    assert "Quick mode" in text
