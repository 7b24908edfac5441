"""`crmstream dev up|down|status` and `crmstream topics create`.

Messages go to stderr and only the `export` lines to stdout, so
`eval "$(crmstream dev up)"` points the current shell at the services.
"""

from __future__ import annotations

import shlex
from typing import Annotated, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from crmstream.devservices import (
    BROKER_RESTART_NOTE,
    DevEnvironment,
    DevServiceError,
    Service,
    dev_down,
    dev_status,
    dev_up,
    redact_url,
)
from crmstream.settings import ConfigError, Settings, load_settings
from crmstream.topics import TopicError, create_topics, topic_names

console = Console(stderr=True, highlight=False, soft_wrap=True)


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigError as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(2) from None


def _fail(exc: Exception) -> NoReturn:
    console.print(f"[red]error:[/red] {escape(str(exc))}")
    raise typer.Exit(1)


def _describe(kind: str, service: Service | None, endpoint: str, started: bool) -> str:
    if service is None:
        return f"{kind}: using the configured one at {endpoint}"
    how = "started" if started else "already running"
    return f"{kind}: local, {how}, at {endpoint} (pid {service.pid}, log {service.log_path})"


def _print_exports(env: dict[str, str]) -> None:
    console.print("Point other shells at these services with:")
    for name, value in env.items():
        # Plain print: stdout stays machine-readable for eval.
        print(f"export {name}={shlex.quote(value)}")


def _create_topics(environment: DevEnvironment) -> None:
    try:
        settings = environment.load_settings()
        created = create_topics(settings)
    except (ConfigError, TopicError) as exc:
        _fail(exc)
    _report_topics(settings, created)


def _report_topics(settings: Settings, created: list[str]) -> None:
    partitions = settings.kafka.topics.partitions
    for name in topic_names(settings.kafka.topics):
        state = "created" if name in created else "already there"
        console.print(f"topic {name}: {state} ({partitions} partitions)")


def dev_up_command(
    topics: Annotated[
        bool,
        typer.Option(
            "--topics/--no-topics",
            help="Create the configured topics when the broker is the local one.",
        ),
    ] = True,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for each service to start answering.")
    ] = 10.0,
) -> None:
    """Use the configured Kafka and Redis if they answer, else start local ones."""
    settings = _settings()
    try:
        environment = dev_up(settings, timeout=timeout)
    except DevServiceError as exc:
        _fail(exc)
    started = {service.name for service in environment.started}
    kafka = _describe(
        "Kafka", environment.broker, environment.bootstrap_servers, "broker" in started
    )
    console.print(kafka, markup=False)
    redis_url = redact_url(environment.redis_url)
    console.print(
        _describe("Redis", environment.redis, redis_url, "redis" in started), markup=False
    )
    if environment.broker is not None:
        if topics:
            _create_topics(environment)
        console.print(f"[yellow]note:[/yellow] {BROKER_RESTART_NOTE}")
        if "broker" in started and settings.engine.recovery_dir:
            console.print(
                "[yellow]warning:[/yellow] engine.recovery_dir"
                f" ({escape(settings.engine.recovery_dir)})"
                " holds offsets from an earlier broker; the flow would wait past the end of"
                " the new, empty topics. Use a fresh recovery directory."
            )
    _print_exports(environment.env())


def dev_down_command() -> None:
    """Stop the local services `crmstream dev up` started, and only those."""
    try:
        statuses = dev_down()
    except DevServiceError as exc:
        _fail(exc)
    if not statuses:
        console.print("No local development services were recorded; nothing to stop.")
        return
    for status in statuses:
        service = status.service
        if status.running:
            console.print(
                f"stopped {service.name} (pid {service.pid}, {service.endpoint})", markup=False
            )
        else:
            console.print(
                f"{service.name} (pid {service.pid}) was no longer running; nothing to stop"
            )
    if any(s.service.name == "broker" and s.running for s in statuses):
        console.print("The local broker's topics and messages are gone with it.")


def dev_status_command(
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for each service to answer.")
    ] = 2.0,
) -> None:
    """Show the local services `crmstream dev up` started and whether they answer."""
    settings = _settings()
    try:
        statuses = dev_status(probe_timeout=timeout)
    except DevServiceError as exc:
        _fail(exc)
    console.print(
        f"configured: kafka.bootstrap_servers={settings.kafka.bootstrap_servers or '(empty)'}"
        f"  redis.url={redact_url(settings.redis.url)}",
        markup=False,
    )
    if not statuses:
        console.print("No local development services are recorded; `crmstream dev up` starts them.")
        return
    table = Table("service", "pid", "running", "answering", "endpoint", "log")
    for column in table.columns[4:]:
        column.overflow = "fold"  # keep endpoints and paths whole for copying
    for status in statuses:
        service = status.service
        table.add_row(
            service.name,
            str(service.pid),
            "yes" if status.running else "[red]no[/red]",
            "yes" if status.answering else "[red]no[/red]",
            escape(service.endpoint),
            escape(str(service.log_path)),
        )
    console.print(table)
    if any(s.service.name == "broker" for s in statuses):
        console.print(f"[yellow]note:[/yellow] {BROKER_RESTART_NOTE}")
    console.print("`crmstream dev up` reuses them and prints the export lines again.")
    if not all(s.running for s in statuses):
        console.print("Something stopped: `crmstream dev down && crmstream dev up` starts afresh.")


def topics_create_command(
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the broker and the topic metadata.")
    ] = 30.0,
) -> None:
    """Create the input and dead-letter topics with the configured partitions (idempotent)."""
    settings = _settings()
    try:
        created = create_topics(settings, timeout=timeout)
    except TopicError as exc:
        _fail(exc)
    _report_topics(settings, created)
