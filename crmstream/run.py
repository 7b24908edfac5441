"""`crmstream run`: the engine as one or several cooperating Bytewax processes.

Several processes are how the engine uses more than one core (workers inside a process
share the GIL). With `--processes N` this command starts the N processes of the cluster
on this machine; on several machines, start one per machine with `--process-id` and the
same `--addresses`.

Recovery is on by default: state and input offsets are snapshotted to the recovery store
(`engine.recovery_dir`, created on first start) every `engine.snapshot_interval_seconds`,
and a restart resumes from the last snapshot. SIGTERM or Ctrl-C end the input between two
batches, so everything already read is written to Redis and snapshotted before the
process exits; a second signal, or `--stop-timeout` seconds without finishing, exits at
once (what was not written is replayed on the next start).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from crmstream.settings import ConfigError, Settings, load_settings

if TYPE_CHECKING:
    from bytewax.dataflow import Dataflow
    from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

log = logging.getLogger("crmstream")

STORE_GLOB = "part-*.sqlite3"  # what `python -m bytewax.recovery DIR N` creates
BROKER_PROBE_SECONDS = 10.0  # one attempt to reach the broker
WAITING_PROBE_SECONDS = 3.0  # one attempt while --wait-for-broker keeps trying
WATERMARK_PROBE_SECONDS = 10.0  # how long the stale-offset check waits for high watermarks
FORCED_EXIT = 1  # exit status when the stop timeout ran out
SECOND_SIGNAL_EXIT = 130


def _settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        _fail(str(exc), 2)


def _fail(message: str, code: int) -> NoReturn:
    typer.secho(message, fg="red", err=True)
    raise typer.Exit(code)


# --- start-up: broker ------------------------------------------------------------------


def wait_for_broker(settings: Settings, wait_seconds: float = 0.0) -> None:
    """Return once the broker answers; exit with a message if it does not within the wait.

    `wait_seconds` 0 makes one attempt of BROKER_PROBE_SECONDS.
    """
    from crmstream.devservices import broker_answers

    servers = settings.kafka.bootstrap_servers
    if not servers:
        _fail(
            "kafka.bootstrap_servers is empty: set CRMSTREAM_KAFKA__BOOTSTRAP_SERVERS, "
            "or run `crmstream dev up` to start a local broker and print the settings.",
            2,
        )
    config = settings.kafka.client_config()
    bootstrap = config.pop("bootstrap.servers")
    started = time.monotonic()
    deadline = started + wait_seconds
    # Waiting: short attempts, so that each failure is logged and a broker that comes up is
    # noticed within seconds.
    probe = BROKER_PROBE_SECONDS if wait_seconds <= 0 else WAITING_PROBE_SECONDS
    tries = 0
    try:
        while True:
            remaining = deadline - time.monotonic()
            tries += 1
            if broker_answers(
                bootstrap, timeout=max(1.0, min(probe, remaining)), client_config=config
            ):
                if tries > 1:
                    waited = time.monotonic() - started
                    log.info("the Kafka broker at %s answered after %.0f s", servers, waited)
                return
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            log.warning(
                "no Kafka broker answered at %s yet; trying again (%.0f s left of "
                "--wait-for-broker)",
                servers,
                remaining,
            )
            time.sleep(min(1.0, remaining))
    except KeyboardInterrupt:
        _fail("interrupted while waiting for the Kafka broker; nothing was started", 130)
    waited = max(wait_seconds, BROKER_PROBE_SECONDS)
    _fail(
        f"no Kafka broker answered at {servers} within {waited:.0f} s; check the address and "
        "security settings, or start a local one with `crmstream dev up`"
        + ("" if wait_seconds else ", or use --wait-for-broker SECONDS to keep trying")
        + ".",
        3,
    )


# --- start-up: recovery store ----------------------------------------------------------


class RecoveryStoreError(Exception):
    """The recovery store cannot be used as it is; the message says what to do."""


def store_partitions(path: Path) -> list[Path]:
    """The recovery partitions (SQLite files) in `path`; empty if there is no store."""
    return sorted(path.glob(STORE_GLOB)) if path.is_dir() else []


def prepare_recovery_store(settings: Settings, process_id: int | None) -> Path | None:
    """The recovery directory to run with, initialised if it holds no store; None = off.

    Only a single process, or process 0 of a cluster, initialises a missing store: the
    cluster as a whole must see each partition exactly once.
    """
    from bytewax.recovery import init_db_dir

    engine = settings.engine
    if not engine.recovery_dir:
        log.info("recovery off (engine.recovery_dir is empty): a restart reads the input again")
        return None
    path = Path(engine.recovery_dir).expanduser().absolute()
    parts = store_partitions(path)
    if parts:
        log.info("resuming from the recovery store %s (%d partitions)", path, len(parts))
        return path
    if process_id not in (None, 0):
        log.info("no recovery store in %s on this machine; process 0 initialises it", path)
        return path
    try:
        path.mkdir(parents=True, exist_ok=True)
        init_db_dir(path, engine.recovery_partitions)
    except OSError as exc:
        raise RecoveryStoreError(
            f"cannot create the recovery store in {path}: {exc}; point engine.recovery_dir "
            "(CRMSTREAM_ENGINE__RECOVERY_DIR) at a writable directory, or set it to '' to "
            "run without recovery"
        ) from None
    log.info(
        "initialised the recovery store %s with %d partitions (engine.recovery_partitions; "
        "fixed from now on); snapshots every %g s",
        path,
        engine.recovery_partitions,
        engine.snapshot_interval_seconds,
    )
    return path


def saved_offsets(path: Path, step_ids: Iterable[str]) -> dict[tuple[str, int], int]:
    """Input offsets the store would resume from: (topic, partition) -> next offset.

    Bytewax resumes at the frontier the workers of the latest execution recorded (the
    lowest of them) and loads the newest snapshot of each key taken before that epoch.
    """
    steps = set(step_ids)
    if not steps:
        return {}
    connections = []
    try:
        for part in store_partitions(path):
            connections.append(sqlite3.connect(f"{part.as_uri()}?mode=ro", uri=True))
        fronts = [
            row
            for db in connections
            for row in db.execute("SELECT ex_num, worker_frontier FROM fronts")
        ]
        if not fronts:
            return {}  # no execution got as far as a frontier: a fresh start
        latest = max(ex for ex, _ in fronts)
        resume_epoch = min(frontier for ex, frontier in fronts if ex == latest)
        marks = ",".join("?" * len(steps))
        newest: dict[str, tuple[int, bytes | None]] = {}
        for db in connections:
            rows = db.execute(
                f"SELECT state_key, snap_epoch, ser_change FROM snaps "
                f"WHERE step_id IN ({marks}) AND snap_epoch < ?",
                [*steps, resume_epoch],
            )
            for key, epoch, blob in rows:
                if key not in newest or epoch > newest[key][0]:
                    newest[key] = (epoch, blob)
    except sqlite3.Error as exc:
        raise RecoveryStoreError(
            f"cannot read the recovery store {path}: {exc}; if it is damaged, delete it "
            f"(rm -r {path}) to start over from the beginning of the topics"
        ) from None
    finally:
        for db in connections:
            db.close()
    offsets: dict[tuple[str, int], int] = {}
    for key, (_, blob) in newest.items():
        if blob is None:
            continue
        index, topic = key.split("-", 1)
        offset = pickle.loads(blob)  # our own store, written by Bytewax
        if isinstance(offset, int) and offset > 0:
            offsets[(topic, int(index))] = offset
    return offsets


def high_watermarks(
    settings: Settings, positions: dict[tuple[str, int], int], timeout: float
) -> dict[tuple[str, int], int]:
    """Each partition's high watermark as the broker reports it to a fetching consumer.

    Offset queries (`list_offsets`, uncached `get_watermark_offsets`) are answered wrongly by
    some Kafka-compatible brokers; the watermark that comes back with a fetch is right. A
    partition absent from the broker maps to -1 (looking it up by name could create it).
    """
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.admin import AdminClient

    wanted = sorted(positions)
    config = {**settings.kafka.client_config(), "log_level": "0"}
    metadata = AdminClient(config).list_topics(timeout=timeout).topics
    found: dict[tuple[str, int], int] = {}
    present = []
    for topic, index in wanted:
        if topic in metadata and index in metadata[topic].partitions:
            present.append(TopicPartition(topic, index, positions[(topic, index)]))
        else:
            found[(topic, index)] = -1
    if not present:
        return found
    consumer = Consumer(
        {
            **config,
            "group.id": "crmstream-recovery-check",
            "enable.auto.commit": "false",
            "enable.partition.eof": "true",
            "fetch.wait.max.ms": "100",
        }
    )
    try:
        # The first fetch response brings the partition's high watermark back, also when
        # the position is past the end (where the broker answers no records and no error).
        consumer.assign(present)
        deadline = time.monotonic() + timeout
        while present and time.monotonic() < deadline:
            consumer.consume(1000, 0.1)
            still = []
            for tp in present:
                _, high = consumer.get_watermark_offsets(tp, cached=True)
                if high >= 0:
                    found[(tp.topic, tp.partition)] = high
                else:
                    still.append(tp)
            present = still
    finally:
        consumer.close()
    return found


def check_saved_offsets(settings: Settings, path: Path, flow: Dataflow) -> None:
    """Refuse to start when the store would resume past the end of an input partition.

    That happens after the broker lost its data (a restart of the local development broker)
    or the topics were recreated: the consumer would wait silently for offsets that will
    never be written.
    """
    offsets = saved_offsets(path, kafka_input_steps(flow))
    if not offsets:
        return
    inputs = set(settings.kafka.topics.inputs())
    foreign = sorted({topic for topic, _ in offsets} - inputs)
    if foreign:
        raise RecoveryStoreError(
            f"the recovery store {path} holds offsets of topics {foreign}, which are not the "
            f"configured input topics {sorted(inputs)}: it belongs to another configuration. "
            f"Delete it (rm -r {path}) or point engine.recovery_dir at a fresh directory."
        )
    highs = high_watermarks(settings, offsets, WATERMARK_PROBE_SECONDS)
    beyond = sorted(
        (topic, index, offset, highs[(topic, index)])
        for (topic, index), offset in offsets.items()
        if (topic, index) in highs and offset > highs[(topic, index)]
    )
    unknown = sorted(f"{t}[{i}]" for (t, i) in offsets if (t, i) not in highs)
    if unknown:
        log.warning(
            "could not learn the end of %s within %g s; not checked against the recovery store",
            ", ".join(unknown),
            WATERMARK_PROBE_SECONDS,
        )
    if beyond:
        shown = "; ".join(
            f"{topic}[{index}]: saved offset {offset}, "
            + ("the partition does not exist" if high < 0 else f"the partition ends at {high}")
            for topic, index, offset, high in beyond[:4]
        )
        more = f" (and {len(beyond) - 4} more)" if len(beyond) > 4 else ""
        raise RecoveryStoreError(
            f"the recovery store {path} would resume past the end of the input on "
            f"{settings.kafka.bootstrap_servers} ({shown}{more}): the broker lost its data "
            "(a restart of the local development broker does that) or the topics were "
            "recreated, and the engine would wait silently for records that never come. "
            f"Delete the store (rm -r {path}) to read the topics from the beginning (Redis "
            "writes are idempotent), or point engine.recovery_dir at a fresh directory."
        )


def kafka_input_steps(flow: Dataflow) -> list[str]:
    """Step ids of the flow's Kafka inputs (their offsets are snapshotted under these)."""
    from bytewax.connectors.kafka import KafkaSource

    return [
        step.step_id
        for step in _walk(flow.substeps)
        if isinstance(getattr(step, "source", None), KafkaSource)
    ]


# --- graceful stop ---------------------------------------------------------------------


def _walk(steps: list[Any]) -> Iterable[Any]:
    for step in steps:
        yield step
        yield from _walk(getattr(step, "substeps", []))


def _stoppable_partition_class() -> type:
    from bytewax.inputs import StatefulSourcePartition

    class StoppablePartition(StatefulSourcePartition[Any, Any]):
        """Delegates to a source partition; ends it (EOF) once `stop` is set."""

        def __init__(self, inner: StatefulSourcePartition[Any, Any], stop: threading.Event):
            self.inner = inner
            self.stop = stop

        def next_batch(self) -> Iterable[Any]:
            if self.stop.is_set():
                raise StopIteration
            return self.inner.next_batch()

        def next_awake(self) -> Any:
            return None if self.stop.is_set() else self.inner.next_awake()

        def snapshot(self) -> Any:
            return self.inner.snapshot()

        def close(self) -> None:
            self.inner.close()

    return StoppablePartition


def _stoppable_source(source: FixedPartitionedSource[Any, Any], stop: threading.Event) -> Any:
    from bytewax.inputs import FixedPartitionedSource

    partition_class = _stoppable_partition_class()

    class StoppableSource(FixedPartitionedSource[Any, Any]):
        """The same partitions and snapshots as `source`; they end once `stop` is set."""

        def list_parts(self) -> list[str]:
            return source.list_parts()

        def build_part(
            self, step_id: str, for_part: str, resume_state: Any | None
        ) -> StatefulSourcePartition[Any, Any]:
            return partition_class(source.build_part(step_id, for_part, resume_state), stop)

    return StoppableSource()


def make_inputs_stoppable(flow: Dataflow, stop: threading.Event) -> int:
    """Wrap every partitioned input of `flow` so it ends when `stop` is set; returns how many.

    Ending the input is how a Bytewax dataflow stops cleanly: everything already read is
    processed, written and snapshotted, then `cli_main` returns.
    """
    from bytewax.inputs import FixedPartitionedSource

    def wrap(steps: list[Any]) -> int:
        count = 0
        for index, step in enumerate(steps):
            source = getattr(step, "source", None)
            if isinstance(source, FixedPartitionedSource):
                steps[index] = dataclasses.replace(step, source=_stoppable_source(source, stop))
                count += 1
            count += wrap(getattr(step, "substeps", []))
        return count

    return wrap(flow.substeps)


class GracefulStop:
    """SIGTERM/SIGINT end the input; a second signal or the timeout exits at once."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.requested = threading.Event()
        self.requested_at = 0.0

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if self.requested.is_set():
            log.warning("%s again: exiting now; what was not written is replayed on restart", name)
            _exit_now(SECOND_SIGNAL_EXIT)
        self.requested_at = time.monotonic()
        self.requested.set()
        log.info(
            "%s: ending the input, writing what is in flight and snapshotting (at most %g s; "
            "signal again to exit at once)",
            name,
            self.timeout,
        )
        threading.Thread(target=self._watchdog, name="stop-watchdog", daemon=True).start()

    def _watchdog(self) -> None:
        time.sleep(self.timeout)
        log.error(
            "did not finish stopping within %g s (is Redis or the broker unreachable?): exiting "
            "without writing what is in flight; it is replayed on the next start",
            self.timeout,
        )
        _exit_now(FORCED_EXIT)


def _exit_now(code: int) -> NoReturn:
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# --- running -------------------------------------------------------------------------


def run_process(
    settings: Settings,
    workers: int,
    process_id: int | None,
    addresses: list[str] | None,
    stop_timeout: float = 25.0,
) -> None:
    """Run this process's share of the dataflow until it is stopped."""
    from bytewax.recovery import RecoveryConfig
    from bytewax.run import cli_main

    from flows.engine import build_flow
    from sinks.metrics import serve

    flow = build_flow(settings)
    engine = settings.engine
    recovery = None
    store = prepare_recovery_store(settings, process_id)
    if store is not None:
        check_saved_offsets(settings, store, flow)
        # A restart resumes from the newest snapshot whatever the backup interval; the
        # interval only keeps superseded snapshots longer, so that a copy of the store taken
        # while the engine runs (files copied up to one interval apart) can be resumed too.
        recovery = RecoveryConfig(
            store, backup_interval=timedelta(seconds=engine.snapshot_interval_seconds)
        )
    stop = GracefulStop(stop_timeout)
    if not make_inputs_stoppable(flow, stop.requested):
        log.warning("no partitioned input to end on a signal: SIGTERM will not flush")
    stop.install()
    if settings.metrics.port:
        port = settings.metrics.port + (process_id or 0)
        serve(settings.metrics.host, port)
        log.info("metrics on http://%s:%d/metrics", settings.metrics.host, port)
    cli_main(
        flow,
        workers_per_process=workers,
        process_id=process_id,
        addresses=addresses,
        # Bytewax snapshots at the end of each epoch: the epoch is the snapshot interval.
        epoch_interval=timedelta(seconds=engine.snapshot_interval_seconds),
        recovery_config=recovery,
    )
    handled = _records_handled()
    if stop.requested.is_set():
        log.info(
            "stopped cleanly in %.1f s: input ended, %d records handled by this process, "
            "in-flight work written%s",
            time.monotonic() - stop.requested_at,
            handled,
            ", state snapshotted" if recovery else "",
        )
    else:
        log.info("input ended after %d records; stopped", handled)


def _records_handled() -> int:
    """Input records this process applied or dead-lettered (`crmstream_events_total`)."""
    from sinks.metrics import EVENTS

    return int(
        sum(
            sample.value
            for metric in EVENTS.collect()
            for sample in metric.samples
            if sample.name.endswith("_total")
        )
    )


def run_command(
    workers: Annotated[int, typer.Option(min=1, help="Worker threads per process.")] = 1,
    processes: Annotated[
        int, typer.Option(min=1, help="Start this many cooperating processes on this machine.")
    ] = 1,
    process_id: Annotated[
        int | None, typer.Option(help="This process's index in a cluster started by hand.")
    ] = None,
    addresses: Annotated[
        str | None,
        typer.Option(help="Semicolon-separated host:port of every process in the cluster."),
    ] = None,
    base_port: Annotated[
        int, typer.Option(help="First cluster port when --processes starts several.")
    ] = 2101,
    wait_for_broker_seconds: Annotated[
        float,
        typer.Option(
            "--wait-for-broker",
            min=0,
            metavar="SECONDS",
            help="Keep trying to reach the Kafka broker this long before giving up.",
        ),
    ] = 0.0,
    stop_timeout: Annotated[
        float,
        typer.Option(
            min=1,
            metavar="SECONDS",
            help="On SIGTERM/Ctrl-C, exit without flushing if stopping takes longer than this.",
        ),
    ] = 25.0,
) -> None:
    """Run the engine: read the input topics, keep profiles and models, write to Redis."""
    logging.basicConfig(
        level=os.environ.get("CRMSTREAM_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings = _settings_or_exit()
    wait_for_broker(settings, wait_for_broker_seconds)
    try:
        if processes > 1 and process_id is None:
            prepare_recovery_store(settings, None)
            _run_cluster(processes, workers, base_port, stop_timeout)
            return
        run_process(
            settings,
            workers,
            process_id,
            addresses.split(";") if addresses else None,
            stop_timeout,
        )
    except RecoveryStoreError as exc:
        _fail(f"cannot start the engine: {exc}", 2)
    except FileNotFoundError as exc:  # bytewax's Missing/NoPartitionsError
        _fail(
            f"cannot start the engine: {exc}; the recovery store "
            f"({settings.engine.recovery_dir}) must hold every partition created for it "
            "(copy the missing part-*.sqlite3 files back, or delete the store to start over)",
            2,
        )
    except (ValueError, ConfigError) as exc:
        _fail(f"cannot start the engine: {exc}", 2)
    except KeyboardInterrupt:
        log.info("stopped")


def _run_cluster(processes: int, workers: int, base_port: int, stop_timeout: float) -> None:
    addresses = ";".join(f"127.0.0.1:{base_port + i}" for i in range(processes))
    command = [sys.executable, "-m", "crmstream.run", "--workers", str(workers)]
    command += ["--stop-timeout", str(stop_timeout)]
    # Each child in its own session: a Ctrl-C in the terminal reaches only this process,
    # which forwards it once (a child signalled twice would exit without flushing).
    children = [
        subprocess.Popen(
            [*command, "--process-id", str(i), "--addresses", addresses],
            start_new_session=True,
        )
        for i in range(processes)
    ]

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [child.wait() for child in children]
    if any(codes):
        raise typer.Exit(max(abs(c) for c in codes))


if __name__ == "__main__":
    typer.run(run_command)
