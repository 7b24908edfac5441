"""The `crmstream` command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from benchmarks.cli import bench_command
from crmstream.backtest import backtest_command
from crmstream.devcommands import (
    dev_down_command,
    dev_status_command,
    dev_up_command,
    topics_create_command,
)
from crmstream.events import SCHEMA_VERSION, TOPIC_KINDS, json_schema
from crmstream.run import run_command
from crmstream.settings import CONFIG_DIR
from crmstream.simulator.command import simulate_command

app = typer.Typer(
    help="crmstream: live customer profiles, online models and RM alerts from a bank's event streams.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
dev = typer.Typer(
    help="Local development services (broker and Redis on loopback).", no_args_is_help=True
)
topics = typer.Typer(help="Kafka topics of the engine.", no_args_is_help=True)
app.add_typer(dev, name="dev")
app.add_typer(topics, name="topics")

app.command("run")(run_command)
app.command("simulate")(simulate_command)
app.command("bench")(bench_command)
app.command("backtest")(backtest_command)
dev.command("up")(dev_up_command)
dev.command("down")(dev_down_command)
dev.command("status")(dev_status_command)
topics.command("create")(topics_create_command)


@app.command("schemas")
def schemas_command(
    out: Annotated[
        Path, typer.Option(help="Folder to write the JSON Schema files to.")
    ] = CONFIG_DIR / "schemas",
) -> None:
    """Write the input topics' event schemas as JSON Schema files."""
    out.mkdir(parents=True, exist_ok=True)
    for kind in TOPIC_KINDS:
        path = out / f"{kind}.v{SCHEMA_VERSION}.schema.json"
        path.write_text(json.dumps(json_schema(kind), indent=2, sort_keys=True) + "\n")
        typer.echo(f"wrote {path}")


@app.command("demo")
def demo_command(
    duration: Annotated[float, typer.Option(help="Seconds to run before stopping.")] = 60.0,
    customers: Annotated[int, typer.Option(help="Simulated customers.")] = 1000,
    rate: Annotated[float, typer.Option(help="Simulated events per second.")] = 3000.0,
    days: Annotated[float, typer.Option(help="Simulated days of bank activity.")] = 45.0,
) -> None:
    """Start local services, the simulator and the engine; show a live summary; stop."""
    from crmstream.demo import run_demo

    raise typer.Exit(run_demo(duration=duration, customers=customers, rate=rate, days=days))


if __name__ == "__main__":
    app()
