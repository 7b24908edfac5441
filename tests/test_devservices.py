"""Starting, checking and stopping the local development services for real."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import settings_for

from crmstream import devservices
from crmstream.devservices import (
    DevServiceError,
    Service,
    broker_answers,
    dev_down,
    dev_status,
    dev_up,
    free_port,
    port_answers,
    redis_answers,
    start_broker,
    start_redis,
)


def test_broker_starts_answers_and_stops_with_its_port_freed(tmp_path: Path) -> None:
    log_path = tmp_path / "broker.log"
    service = start_broker(log_path=log_path)
    try:
        assert service.is_running()
        assert broker_answers(service.endpoint, timeout=5)
        assert "tansu" in log_path.read_text()
    finally:
        assert service.stop()

    assert not service.is_running()
    assert not Path(f"/proc/{service.pid}").exists()  # gone and reaped, not a zombie
    assert not port_answers(service.port)
    again = start_broker(service.port, log_path=tmp_path / "again.log")
    assert again.stop()


def test_redis_starts_answers_and_stops_leaving_nothing(tmp_path: Path) -> None:
    service = start_redis(log_path=tmp_path / "redis.log")
    try:
        assert service.is_running()
        assert redis_answers(service.endpoint, timeout=2)
        assert service.data_dir is not None and service.data_dir.is_dir()
    finally:
        assert service.stop()

    assert not Path(f"/proc/{service.pid}").exists()
    assert not port_answers(service.port)
    assert service.data_dir is not None and not service.data_dir.exists()
    assert not service.stop()  # stopping twice is harmless


def test_starting_on_a_busy_port_fails_instead_of_trusting_the_old_process(
    broker: Service, tmp_path: Path
) -> None:
    with pytest.raises(DevServiceError, match=f"127.0.0.1:{broker.port}.*already listening"):
        start_redis(broker.port, log_path=tmp_path / "redis.log")


def test_missing_redis_server_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(DevServiceError, match="apt-get install redis-server"):
        start_redis()


def test_unreachable_services_do_not_answer_within_the_timeout() -> None:
    port = free_port()
    started = time.monotonic()
    assert not redis_answers(f"redis://127.0.0.1:{port}/0", timeout=1)
    assert not broker_answers(f"127.0.0.1:{port}", timeout=1)
    assert not broker_answers("", timeout=1)
    assert time.monotonic() - started < 3


def test_dev_up_uses_configured_services_that_answer(
    broker: Service, redis_server: Service, tmp_path: Path
) -> None:
    environment = dev_up(settings_for(broker, redis_server), run_dir=tmp_path)

    assert environment.started == ()
    assert environment.broker is None and environment.redis is None
    assert environment.env() == {
        "CRMSTREAM_KAFKA__BOOTSTRAP_SERVERS": broker.endpoint,
        "CRMSTREAM_REDIS__URL": redis_server.endpoint,
    }
    assert dev_status(run_dir=tmp_path) == []


def test_dev_up_starts_both_and_dev_down_stops_exactly_them(
    broker: Service, redis_server: Service, tmp_path: Path
) -> None:
    nothing_there = f"redis://127.0.0.1:{free_port()}/3"
    settings = settings_for("", nothing_there, redis={"password": "only-for-the-real-one"})

    environment = dev_up(settings, run_dir=tmp_path)
    try:
        assert {service.name for service in environment.started} == {"broker", "redis"}
        assert environment.redis_url.endswith("/3")  # the configured database is kept
        assert broker_answers(environment.bootstrap_servers, timeout=5)
        assert redis_answers(environment.redis_url, timeout=2)
        env = environment.env()
        assert env["CRMSTREAM_KAFKA__BOOTSTRAP_SERVERS"] == environment.bootstrap_servers
        assert env["CRMSTREAM_REDIS__URL"] == environment.redis_url
        assert env["CRMSTREAM_REDIS__PASSWORD"] == ""  # the local Redis has none
        effective = environment.load_settings()
        assert effective.redis.url == environment.redis_url
        assert not effective.redis.password.get_secret_value()

        recorded = json.loads((tmp_path / "dev.json").read_text())
        assert {name: record["pid"] for name, record in recorded.items()} == {
            service.name: service.pid for service in environment.started
        }
        statuses = dev_status(run_dir=tmp_path)
        assert [(s.running, s.answering) for s in statuses] == [(True, True), (True, True)]

        again = dev_up(settings, run_dir=tmp_path)
        assert again.started == ()
        assert again.bootstrap_servers == environment.bootstrap_servers
        assert again.redis_url == environment.redis_url
    finally:
        stopped = dev_down(run_dir=tmp_path)

    assert sorted((s.service.pid, s.running) for s in stopped) == sorted(
        (service.pid, True) for service in environment.started
    )
    for service in environment.started:
        assert not Path(f"/proc/{service.pid}").exists()
        assert not port_answers(service.port)
    assert not (tmp_path / "dev.json").exists()
    assert dev_status(run_dir=tmp_path) == []
    assert broker_answers(broker.endpoint, timeout=5)  # the session's services are untouched
    assert redis_answers(redis_server.endpoint, timeout=2)


def test_dev_down_leaves_alone_a_pid_that_is_now_another_program(tmp_path: Path) -> None:
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        impostor = Service(
            name="broker",
            pid=stranger.pid,
            port=free_port(),
            endpoint="127.0.0.1:1",
            log_path=tmp_path / "broker.log",
            executable=devservices._broker_binary(),
            started_at=0,
        )
        devservices._write_state(tmp_path, {"broker": impostor})

        [status] = dev_down(run_dir=tmp_path)

        assert not status.running
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_dev_up_refuses_to_replace_an_unreachable_remote_broker(tmp_path: Path) -> None:
    settings = settings_for("kafka.invalid:9092", None)
    with pytest.raises(DevServiceError, match=r"kafka\.invalid:9092.*did not answer"):
        dev_up(settings, run_dir=tmp_path, probe_timeout=1)
    assert dev_status(run_dir=tmp_path) == []
