"""`crmstream run`: the engine as one or several cooperating Bytewax processes.

Several processes are how the engine uses more than one core (workers inside a process
share the GIL). With `--processes N` this command starts the N processes of the cluster
on this machine; on several machines, start one per machine with `--process-id` and the
same `--addresses`.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from crmstream.settings import ConfigError, Settings, load_settings

log = logging.getLogger("crmstream")


def _settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        typer.secho(str(exc), fg="red", err=True)
        raise typer.Exit(2) from None


def _check_broker(settings: Settings) -> None:
    from crmstream.devservices import broker_answers

    servers = settings.kafka.bootstrap_servers
    if not servers:
        typer.secho(
            "kafka.bootstrap_servers is empty: set CRMSTREAM_KAFKA__BOOTSTRAP_SERVERS, "
            "or run `crmstream dev up` to start a local broker and print the settings.",
            fg="red",
            err=True,
        )
        raise typer.Exit(2)
    config = settings.kafka.client_config()
    if not broker_answers(config.pop("bootstrap.servers"), timeout=10, client_config=config):
        typer.secho(
            f"no Kafka broker answered at {servers} within 10 s; check the address and "
            "security settings, or start a local one with `crmstream dev up`.",
            fg="red",
            err=True,
        )
        raise typer.Exit(3)


def run_process(
    settings: Settings,
    workers: int,
    process_id: int | None,
    addresses: list[str] | None,
) -> None:
    """Run this process's share of the dataflow until it is stopped."""
    from bytewax.recovery import RecoveryConfig
    from bytewax.run import cli_main

    from flows.engine import build_flow
    from sinks.metrics import serve

    flow = build_flow(settings)
    if settings.metrics.port:
        port = settings.metrics.port + (process_id or 0)
        serve(settings.metrics.host, port)
        log.info("metrics on http://%s:%d/metrics", settings.metrics.host, port)
    recovery = None
    engine = settings.engine
    if engine.recovery_dir:
        recovery = RecoveryConfig(Path(engine.recovery_dir))
    cli_main(
        flow,
        workers_per_process=workers,
        process_id=process_id,
        addresses=addresses,
        epoch_interval=timedelta(seconds=engine.snapshot_interval_seconds),
        recovery_config=recovery,
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
) -> None:
    """Run the engine: read the input topics, keep profiles and models, write to Redis."""
    logging.basicConfig(
        level=os.environ.get("CRMSTREAM_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    settings = _settings_or_exit()
    _check_broker(settings)
    if processes > 1 and process_id is None:
        _run_cluster(processes, workers, base_port)
        return
    try:
        run_process(
            settings,
            workers,
            process_id,
            addresses.split(";") if addresses else None,
        )
    except (ValueError, ConfigError) as exc:
        typer.secho(f"cannot start the engine: {exc}", fg="red", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        log.info("stopped")


def _run_cluster(processes: int, workers: int, base_port: int) -> None:
    addresses = ";".join(f"127.0.0.1:{base_port + i}" for i in range(processes))
    command = [sys.executable, "-m", "crmstream.run", "--workers", str(workers)]
    children = [
        subprocess.Popen([*command, "--process-id", str(i), "--addresses", addresses])
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
