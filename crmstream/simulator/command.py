"""`crmstream simulate`: feed the input topics with a simulated bank's customers."""

from __future__ import annotations

import base64
import signal
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import closing
from pathlib import Path
from types import FrameType
from typing import IO, Annotated, Any, NoReturn

import orjson
import typer

from crmstream.settings import ConfigError, load_settings
from crmstream.simulator.config import SimEvent, SimulationConfig
from crmstream.simulator.producer import produce
from crmstream.simulator.progress import SendProgress
from crmstream.simulator.stream import simulate
from crmstream.simulator.truth import GroundTruth

EXIT_CONFIG = 2
EXIT_DELIVERY = 1
EXIT_INTERRUPTED = 130


def simulate_command(
    customers: Annotated[int, typer.Option(min=1, help="Number of simulated customers.")] = 10_000,
    days: Annotated[
        float, typer.Option(min=0.001, help="Simulated days to generate (the event-time span).")
    ] = 30.0,
    rate: Annotated[
        float,
        typer.Option(min=0, help="Events per second sent to Kafka; 0 = as fast as possible."),
    ] = 5000.0,
    seed: Annotated[int, typer.Option(help="Seed: the same seed gives the same events.")] = 42,
    churn_fraction: Annotated[
        float,
        typer.Option(min=0, max=1, help="Share of customers who drift towards leaving."),
    ] = 0.08,
    fraud_fraction: Annotated[
        float,
        typer.Option(min=0, max=1, help="Share of customers who suffer a fraud episode."),
    ] = 0.03,
    bad_fraction: Annotated[
        float,
        typer.Option(
            min=0, max=1, help="Extra malformed records per event, to test the dead letters."
        ),
    ] = 0.0,
    ground_truth: Annotated[
        Path, typer.Option(help="JSONL file for the planted facts (churners, fraud, needs).")
    ] = Path(".run/ground_truth.jsonl"),
    duration: Annotated[
        float | None,
        typer.Option(min=0, help="Stop after this many seconds of wall time (default: run out)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Write events as JSONL instead of producing to Kafka.")
    ] = False,
    output: Annotated[
        Path | None, typer.Option(help="With --dry-run: file to write to (default: stdout).")
    ] = None,
    progress: Annotated[
        bool, typer.Option(help="Show a live count, rate and simulated date on stderr.")
    ] = True,
) -> None:
    """Produce a realistic bank's customer events to the four input topics.

    Customers earn, spend, log in and answer offers; some drift away, some suffer fraud.

    What was planted is written to the ground-truth file, to measure the models against.
    """
    try:
        config = SimulationConfig(
            customers=customers,
            days=days,
            seed=seed,
            churn_fraction=churn_fraction,
            fraud_fraction=fraud_fraction,
            bad_fraction=bad_fraction,
        )
    except ValueError as exc:
        _fail(str(exc), EXIT_CONFIG)
    settings = None
    if not dry_run:
        try:
            settings = load_settings()
        except ConfigError as exc:
            _fail(f"configuration error: {exc}", EXIT_CONFIG)
        if not settings.kafka.bootstrap_servers.strip():
            _fail(
                "kafka.bootstrap_servers is empty: start a local broker with `crmstream dev up` "
                "and export what it prints, or set CRMSTREAM_KAFKA__BOOTSTRAP_SERVERS "
                "(or use --dry-run)",
                EXIT_CONFIG,
            )
    truth = GroundTruth(ground_truth)
    generated = simulate(config, truth)
    # Closing the generator completes the ground truth however the run ends; closing the
    # truth as well covers a run that failed before the first event.
    with closing(truth), closing(generated), _StopRequest() as stop:
        events = _until_stopped(generated, stop, duration)
        if settings is None:
            sent, interrupted = _write_jsonl(events, output, progress)
            failed = 0
            _say(f"wrote {sent:,} events to {output or 'stdout'}")
        else:
            stats = produce(events, settings, rate or None, progress)
            sent, interrupted = stats.produced, stats.interrupted
            failed = stats.failed + stats.undelivered
            _say(f"sent {sent:,} events in {stats.seconds:.1f} s ({stats.rate:,.0f}/s)")
            for error in stats.errors:
                _say(f"delivery failed: {error}")
        interrupted = interrupted or stop.requested
    _report(truth.summary, ground_truth, failed)
    if failed:
        raise typer.Exit(EXIT_DELIVERY)
    if interrupted:
        raise typer.Exit(EXIT_INTERRUPTED)


class _StopRequest:
    """Turns Ctrl-C and SIGTERM into a request to stop between two events.

    Stopping there keeps the ground truth exact: every event taken from the generator
    has been sent. A second Ctrl-C interrupts at once.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


def _until_stopped(
    events: Iterator[SimEvent], stop: _StopRequest, seconds: float | None
) -> Iterator[SimEvent]:
    """Stop asking for events when told to or once `seconds` have passed."""
    deadline = time.monotonic() + seconds if seconds is not None else float("inf")
    while not stop.requested and time.monotonic() < deadline:
        try:
            yield next(events)
        except StopIteration:
            return


def _envelope(event: SimEvent) -> dict[str, Any]:
    envelope: dict[str, Any] = {
        "kind": event.kind,
        "key": event.key,
        "timestamp_ms": round(event.event_time * 1000),
    }
    if event.value.__class__ is bytes:
        envelope["raw_base64"] = base64.b64encode(event.value).decode()
    else:
        envelope["value"] = event.value
    return envelope


def _write_jsonl(
    events: Iterable[SimEvent], output: Path | None, progress: bool
) -> tuple[int, bool]:
    """One JSON object per event: kind, key, timestamp_ms, and value (or raw_base64)."""
    sent = 0
    event_time = 0.0
    interrupted = False
    target: IO[bytes] = output.open("wb") if output is not None else sys.stdout.buffer
    try:
        with SendProgress(progress, "writing") as display:
            try:
                for event in events:
                    target.write(orjson.dumps(_envelope(event)) + b"\n")
                    sent += 1
                    event_time = event.event_time
                    if not sent % 1024:
                        display.tick(sent, event_time)
            except KeyboardInterrupt:
                interrupted = True
            display.finish(sent, event_time)
    finally:
        if output is not None:
            target.close()
        else:
            target.flush()
    return sent, interrupted


def _report(summary: dict[str, Any], path: Path, failed: int) -> None:
    events = summary.get("events", {})
    churners = summary.get("churners", {})
    fraud = summary.get("fraud", {})
    bad = sum(summary.get("bad_records", {}).values())
    _say(
        f"simulated until {summary.get('emitted_until')}: "
        + ", ".join(f"{n:,} {kind}" for kind, n in events.items())
        + f", {bad:,} malformed"
    )
    _say(
        f"planted {churners.get('total', 0)} churners ({churners.get('closed', 0)} closed, "
        f"{churners.get('dormant', 0)} dormant), {fraud.get('episodes', 0)} fraud episodes "
        f"({fraud.get('transactions', 0)} fraudulent transactions); ground truth: {path}"
    )
    if failed:
        _say(f"{failed:,} events were not delivered")


def _say(message: str) -> None:
    typer.echo(message, err=True)


def _fail(message: str, code: int) -> NoReturn:
    _say(message)
    raise typer.Exit(code)
