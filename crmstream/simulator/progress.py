"""A live line on stderr while events are sent: how many, how fast, which simulated date.

It refreshes a few times a second, not per event, so it costs nothing measurable; stdout
stays free for `--dry-run` output.
"""

from __future__ import annotations

import time
from types import TracebackType

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from crmstream.simulator.clock import iso_seconds

_REFRESH_SECONDS = 0.25


class SendProgress:
    """`tick(sent, event_time)` per event; shows nothing when not `enabled`."""

    def __init__(self, enabled: bool, label: str) -> None:
        self._progress: Progress | None = None
        self._task = None
        self._label = label
        self._started = time.perf_counter()
        self._next_refresh = 0.0
        if enabled:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                TextColumn("[bold]{task.completed:,.0f}[/] events"),
                TextColumn("{task.fields[rate]:>10,.0f}/s"),
                TextColumn("simulated {task.fields[simulated]}"),
                TimeElapsedColumn(),
                console=Console(stderr=True),
                transient=False,
            )

    def __enter__(self) -> SendProgress:
        if self._progress is not None:
            self._progress.start()
            self._task = self._progress.add_task(self._label, total=None, rate=0.0, simulated="-")
        self._started = time.perf_counter()
        return self

    def tick(self, sent: int, event_time: float) -> None:
        if self._progress is None:
            return
        now = time.perf_counter()
        if now < self._next_refresh:
            return
        self._next_refresh = now + _REFRESH_SECONDS
        self._show(sent, event_time, now)

    def _show(self, sent: int, event_time: float, now: float) -> None:
        assert self._progress is not None and self._task is not None
        elapsed = max(now - self._started, 1e-9)
        self._progress.update(
            self._task,
            completed=sent,
            rate=sent / elapsed,
            simulated=iso_seconds(event_time)[:16].replace("T", " "),
        )

    def finish(self, sent: int, event_time: float) -> None:
        """Show the final count before the display stops."""
        if self._progress is not None and self._task is not None:
            self._show(sent, event_time, time.perf_counter())

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
