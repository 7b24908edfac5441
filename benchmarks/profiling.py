"""Hotspots from a py-spy profile (raw collapsed stacks: `frame;frame;... count`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any


def _short(frame: str) -> str:
    """`func (path/to/file.py:12)` -> `func (file.py:12)` relative to site-packages/project."""
    name, _, where = frame.partition(" (")
    where = where.rstrip(")")
    for marker in ("site-packages/", "/work/main/", "python3.11/", "python3.12/", "python3.10/"):
        if marker in where:
            where = where.split(marker, 1)[1]
    return f"{name} ({where})"


def hotspots(path: Path, within: str = "run_floor (", top: int = 15) -> dict[str, Any]:
    """Self and inclusive sample shares of each function, over stacks that pass `within`."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    all_samples = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        all_samples += count
        frames = stack.split(";")
        starts = [i for i, f in enumerate(frames) if f.startswith(within)]
        if within and not starts:
            continue
        frames = frames[starts[0] :] if starts else frames
        total += count
        own[_short(frames[-1])] += count
        for frame in {_short(f) for f in frames}:
            inclusive[frame] += count

    def table(counter: Counter[str]) -> list[dict[str, Any]]:
        return [
            {"function": name, "samples": n, "share": n / total if total else 0.0}
            for name, n in counter.most_common(top)
        ]

    return {
        "samples_in_loop": total,
        "samples_total": all_samples,
        "top_self": table(own),
        "top_inclusive": table(inclusive),
    }
