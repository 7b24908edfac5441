"""Least privilege in Redis, and secrets that never show.

A private redis-server loads `config/redis-acl.conf` exactly as shipped. The tests give its
`crmstream` user a password, run the Redis writer through every path as that user and
check that the engine needs every command the ACL grants and is refused anything else;
then they run the whole engine as that user, with a Redis password and a Kafka SASL
password set, feed it card numbers, and look for the secrets and the card numbers in its
log, its /metrics, Redis and the dead-letter topic.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from confluent_kafka import Consumer, TopicPartition
from engine_process import EngineProcess, produce, settings_env
from factories import DAY, T0, alert, output
from helpers import settings_for, wait_for
from redis.backoff import NoBackoff
from redis.retry import Retry

from crmstream.devservices import HOST, Service, free_port, port_answers
from crmstream.settings import PROJECT_ROOT, Settings, Topics
from operators.privacy import mask_raw
from sinks.redis_sink import RedisWriter

pytestmark = pytest.mark.integration

ACL_FILE = PROJECT_ROOT / "config" / "redis-acl.conf"
USER = "crmstream"
# What a client sends on connecting, whatever it is allowed: AUTH always works, and
# redis-py's CLIENT SETINFO is refused (Redis 7.0 does not even know it) and ignored.
HANDSHAKE = {"auth", "hello", "client|setinfo"}
# Granted but not exercised by a short test: the health check PINGs after 30 s idle.
IDLE_ONLY = {"ping"}


def acl_rules() -> list[str]:
    """The rules of the engine's user line in the shipped file."""
    line = next(
        line for line in ACL_FILE.read_text().splitlines() if line.startswith(f"user {USER} ")
    )
    return line.split()[2:]


def granted_commands() -> set[str]:
    return {rule[1:] for rule in acl_rules() if rule.startswith("+")}


@dataclass
class AclRedis:
    """A redis-server started with the shipped ACL file, and an administrator client."""

    port: int
    password: str
    admin: redis.Redis
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def as_engine(self, password: str | None = None) -> redis.Redis:
        return redis.Redis(
            host=HOST,
            port=self.port,
            username=USER,
            password=self.password if password is None else password,
            decode_responses=True,
            retry=Retry(NoBackoff(), 0),  # a refusal is an answer: no retrying it
        )

    def denials(self) -> list[dict[str, Any]]:
        """ACL LOG entries other than the client handshake."""
        return [e for e in self.admin.acl_log() if e.get("object") not in HANDSHAKE]

    def dump(self) -> bytes:
        """Every key and value, as bytes, to search for what must not be there."""
        raw = redis.Redis(host=HOST, port=self.port)
        parts: list[bytes] = []
        for key in raw.scan_iter():
            kind = raw.type(key)
            parts.append(key)
            if kind == b"hash":
                parts += [b"%s=%s" % kv for kv in raw.hgetall(key).items()]
            elif kind == b"zset":
                parts += [member for member, _ in raw.zrange(key, 0, -1, withscores=True)]
            elif kind == b"stream":
                parts += [b"%s=%s" % kv for _, fields in raw.xrange(key) for kv in fields.items()]
            else:
                parts.append(raw.get(key) or b"")
        raw.close()
        return b"\n".join(parts)


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AclRedis]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: `make test` installs it (apt-get)")
    work = tmp_path_factory.mktemp("acl-redis")
    port = free_port()
    with (work / "redis.log").open("wb") as log:
        process = subprocess.Popen(
            [binary, str(ACL_FILE), "--port", str(port), "--bind", HOST, "--save", "",
             "--appendonly", "no", "--dir", str(work)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_for(
            lambda: process.poll() is not None or port_answers(port),
            what=f"redis-server with {ACL_FILE.name} (log: {work / 'redis.log'})",
        )
        assert process.poll() is None, (work / "redis.log").read_text()
        admin = redis.Redis(host=HOST, port=port, decode_responses=True)
        password = f"redis-{secrets.token_hex(12)}"
        server = AclRedis(port, password, admin, process)
        # As shipped, the user has no password: nobody can log in as it yet.
        with pytest.raises(redis.AuthenticationError):
            server.as_engine(password="anything").ping()
        admin.execute_command("ACL", "SETUSER", USER, f">{password}")
        yield server
        admin.close()
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def acl_server(acl_redis: AclRedis) -> AclRedis:
    """The ACL server, emptied, with fresh command statistics and an empty ACL log."""
    acl_redis.admin.flushall()
    acl_redis.admin.acl_log_reset()
    acl_redis.admin.config_resetstat()
    return acl_redis


def writer_as_engine(server: AclRedis, **redis_settings: Any) -> RedisWriter:
    settings = settings_for(
        None, server.url, redis={"username": USER, "password": server.password, **redis_settings}
    )
    dormant_after = settings.lifecycle.dormant_after_days * DAY
    return RedisWriter(settings.redis, dormant_after, sweep_every_seconds=0.0)


# --- the writer, as the engine's user ------------------------------------------------------


def test_the_shipped_line_is_what_the_server_enforces(acl_redis: AclRedis) -> None:
    user = acl_redis.admin.acl_getuser(USER)
    assert "on" in user["flags"]
    assert user["keys"] in ("~crm:*", ["~crm:*"])
    # Exactly the listed commands (redis-py leaves out the "-@all" they start from).
    assert set(user["commands"]) == {f"+{command}" for command in granted_commands()}


def test_the_writer_does_everything_as_the_engine_user_and_needs_every_grant(
    acl_server: AclRedis,
) -> None:
    writer = writer_as_engine(acl_server)
    first = [
        output("c1", "rm-1", churn_risk=0.9, alerts=[alert("c1", "rm-1")]),
        output("c2", "rm-2", last_activity=T0 - 60 * DAY),  # silent: the sweep marks it
        output("c3", "rm-1", stage="closed"),  # leaves the activity index
    ]
    writer.write(first)
    writer.write(first)  # a replay: the alert is refused by id
    writer.write([output("c1", "rm-2", previous_rm_id="rm-1", at=T0 + 60)])  # RM move
    writer.client.close()
    admin = acl_server.admin
    stats = admin.info("commandstats")  # before the checks below add their own reads
    used = {name.removeprefix("cmdstat_") for name in stats} - HANDSHAKE
    used -= {"config|resetstat", "info"}  # the administrator's own

    assert acl_server.denials() == []
    assert admin.hget("crm:profile:c1", "rm_id") == "rm-2"
    assert admin.zrange("crm:rm:rm-2:churn", 0, -1) == ["c1", "c2"]
    assert admin.hget("crm:profile:c2", "stage") == "dormant"
    assert admin.xlen("crm:alerts") == 1 and admin.xlen("crm:alerts:rm:rm-1") == 1
    assert admin.zscore("crm:activity", "c3") is None

    # Every command the writer sent (scripts' commands included) is granted, and every
    # grant is used: nothing is granted "just in case".
    assert used <= granted_commands(), used - granted_commands()
    assert granted_commands() - used == IDLE_ONLY


@pytest.mark.parametrize(
    "command",
    [
        ("FLUSHALL",),
        ("FLUSHDB",),
        ("KEYS", "*"),
        ("SCAN", "0"),
        ("GET", "crm:profile:c1"),
        ("DEL", "crm:profile:c1"),
        ("CONFIG", "GET", "*"),
        ("EVAL", "return 1", "0"),
        ("SELECT", "1"),
        ("SCRIPT", "FLUSH"),  # SCRIPT LOAD and EXISTS are granted, not the rest of SCRIPT
        ("PUBLISH", "crm:news", "hello"),
        ("ACL", "LIST"),
        ("SET", "session:42", "x"),  # a granted command on a key outside the prefix
        ("HSET", "bank:profile:c1", "segment", "private"),
        ("ZADD", "crmx:rank", "1", "c1"),
    ],
)
def test_anything_else_is_refused(acl_redis: AclRedis, command: tuple[str, ...]) -> None:
    engine = acl_redis.as_engine()
    with pytest.raises(redis.exceptions.NoPermissionError):
        engine.execute_command(*command)
    engine.close()


@pytest.mark.parametrize(
    "script",
    [
        "return redis.call('SET', 'session:42', 'x')",
        "return redis.call('FLUSHALL')",
        "return redis.call('KEYS', '*')",
    ],
)
def test_a_script_cannot_reach_past_the_acl_either(acl_redis: AclRedis, script: str) -> None:
    engine = acl_redis.as_engine()
    sha = engine.script_load(script)  # loading is allowed: running it is what is checked
    with pytest.raises(redis.ResponseError, match="can't"):
        engine.evalsha(sha, 0)
    engine.close()


def test_a_writer_configured_outside_the_prefix_fails_loudly(acl_server: AclRedis) -> None:
    writer = writer_as_engine(acl_server, key_prefix="bank:")
    with pytest.raises(redis.exceptions.NoPermissionError):
        writer.write([output("c1", "rm-1")])
    writer.client.close()
    assert acl_server.admin.dbsize() == 0


def test_a_wrong_password_is_refused(acl_redis: AclRedis) -> None:
    with pytest.raises(redis.AuthenticationError):
        acl_redis.as_engine(password="not-" + acl_redis.password).ping()


# --- the engine, as the engine's user, with secrets set --------------------------------------

CARD = "4539578763621486"
CARD_DASHED = "5500-0000-0000-0004"
IBAN = "DE89370400440532013000"
PANS = (CARD, CARD_DASHED, IBAN, "4111 1111 1111 1111")


def scenario() -> list[tuple[str, str | None, Any]]:
    """A known customer whose events carry card and account numbers where tokens belong,
    an external transfer that raises an alert, and two records to dead-letter."""
    at = "2026-03-02T1{}:00:00Z".format
    reference = {
        "schema_version": 1, "event_id": "ref-1", "customer_id": "C1", "event_time": at(0),
        "segment": "affluent", "rm_id": "RM1", "branch_id": "B01",
        "products": ["current_account", IBAN], "marketing_consent": True,
        "joined_on": "2019-05-01", "birth_year": 1980,
    }  # fmt: skip

    def txn(event_id: str, hour: int, amount: float, **extra: Any) -> dict[str, Any]:
        return {
            "schema_version": 1, "event_id": event_id, "customer_id": "C1", "account_id": IBAN,
            "event_time": at(hour), "amount": amount, "currency": "EUR", "direction": "debit",
            "kind": "card_present", "merchant_category": "5411", "merchant_id": CARD_DASHED,
            "country": "DE", "device_id": None, "counterparty_bank": None, **extra,
        }  # fmt: skip

    return [
        ("customers", "C1", reference),
        ("transactions", "C1", txn("t1", 1, 25.0)),
        ("transactions", "C1", txn("t2", 2, 15000.0, kind="transfer_out", merchant_id=None,
                                   merchant_category=None, counterparty_bank=CARD)),
        ("transactions", CARD, txn("t3", 3, 10.0, customer_id=CARD)),  # card as customer id
        ("transactions", "C1", {**txn("t4", 4, 10.0), "note": "card 4111 1111 1111 1111"}),
    ]  # fmt: skip


def read_dead_letters(settings: Settings, expected: int) -> list[dict[str, Any]]:
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": uuid.uuid4().hex}
    )
    topics = settings.kafka.topics
    consumer.assign([TopicPartition(topics.dead_letter, p, 0) for p in range(topics.partitions)])
    found: list[dict[str, Any]] = []

    def collect() -> bool:
        for message in consumer.consume(100, timeout=0.2):
            if message.error() is None:
                headers = {k: v for k, v in message.headers() or []}
                found.append({"value": message.value(), "key": message.key(), **headers})
        return len(found) >= expected

    try:
        wait_for(collect, timeout=30, what=f"{expected} dead letters")
    finally:
        consumer.close()
    return found


def scrape(engine: EngineProcess) -> bytes:
    url = f"http://127.0.0.1:{engine.metrics_port}/metrics"
    return urllib.request.urlopen(url, timeout=5).read()


def no_secret_in(where: str, text: bytes, *secret: str) -> None:
    for value in secret:
        assert value.encode() not in text, f"{value!r} appears in {where}"


def no_card_in(where: str, data: bytes) -> None:
    flat = data.replace(b" ", b"").replace(b"-", b"")
    for pan in PANS:
        assert pan.replace(" ", "").replace("-", "").encode()[:12] not in flat, (where, pan)
    assert mask_raw(data)[1] == 0, f"a card or account number is left in {where}"


def engine_settings(
    broker: Service, server: AclRedis, topics: Topics, password: str, sasl_password: str
) -> Settings:
    return settings_for(
        broker,
        server.url,
        topics,
        redis={"username": USER, "password": password},
        kafka={"sasl_username": "crmstream-engine", "sasl_password": sasl_password},
    )


def test_the_engine_runs_as_its_user_masks_cards_and_never_shows_a_secret(
    broker: Service,
    acl_server: AclRedis,
    make_topics: Callable[..., Topics],
    tmp_path: Path,
) -> None:
    sasl_password = f"sasl-{secrets.token_hex(12)}"
    settings = engine_settings(
        broker, acl_server, make_topics(partitions=1), acl_server.password, sasl_password
    )
    produce(settings, scenario())
    log_path = tmp_path / "engine.log"
    with EngineProcess(settings, log_path) as engine:
        wait_for(
            lambda: engine.metric("crmstream_events_total", outcome="ok") >= 3,
            timeout=60, interval=0.3, what="3 events written to Redis as the engine user",
        )  # fmt: skip
        letters = read_dead_letters(settings, expected=2)
        metrics_text = scrape(engine)
        assert engine.metric("crmstream_redis_write_errors_total") == 0
    admin = acl_server.admin

    # Every write was made, as the engine's user, with nothing refused.
    assert acl_server.denials() == []
    profile = admin.hgetall("crm:profile:C1")
    assert profile["rm_id"] == "RM1"
    assert set(orjson.loads(profile["products"])) == {"current_account", "******************3000"}
    alerts = [fields for _, fields in admin.xrange("crm:alerts")]
    (outflow,) = [a for a in alerts if a["type"] == "large_outflow_external"]
    assert "(************1486)" in outflow["reasons"]  # the counterparty bank, masked

    # The card numbers are nowhere: Redis, dead letters, log, metrics.
    no_card_in("Redis", acl_server.dump())
    reasons = sorted(letter["crmstream.reason_code"] for letter in letters)
    assert reasons == [b"schema", b"sensitive_identifier"]
    for letter in letters:
        assert letter["crmstream.masked"] == b"1"
        no_card_in("a dead letter", letter["value"] + b"\n" + letter["key"])
        no_card_in("a dead-letter reason", letter["crmstream.reason"])
    log = log_path.read_bytes()
    for where, text in (("the engine log", log), ("/metrics", metrics_text)):
        no_secret_in(where, text, *PANS)

    # Nor are the passwords.
    for where, text in (("the engine log", log), ("/metrics", metrics_text)):
        no_secret_in(where, text, acl_server.password, sasl_password)


def test_a_refused_redis_password_is_retried_without_showing_it(
    broker: Service,
    acl_server: AclRedis,
    make_topics: Callable[..., Topics],
    tmp_path: Path,
) -> None:
    wrong = f"wrong-{secrets.token_hex(12)}"
    settings = engine_settings(broker, acl_server, make_topics(partitions=1), wrong, "unused")
    produce(settings, scenario()[:2])
    log_path = tmp_path / "engine.log"
    with EngineProcess(settings, log_path) as engine:
        wait_for(
            lambda: engine.metric("crmstream_redis_write_errors_total") >= 2,
            timeout=60, interval=0.3, what="Redis writes refused and retried",
        )  # fmt: skip
        assert engine.metric("crmstream_redis_up") == 0
        metrics_text = scrape(engine)
        engine.stop(signal.SIGKILL)  # it would retry forever; nothing to finish cleanly
    log = log_path.read_bytes()
    assert b"redis write failed" in log
    for where, text in (("the engine log", log), ("/metrics", metrics_text)):
        no_secret_in(where, text, wrong)


def test_a_failed_sasl_login_does_not_show_the_sasl_password(
    broker: Service, make_topics: Callable[..., Topics]
) -> None:
    sasl_password = f"sasl-{secrets.token_hex(12)}"
    settings = settings_for(
        broker,
        None,
        make_topics(partitions=1),
        kafka={
            "security_protocol": "SASL_PLAINTEXT",  # the test broker speaks plaintext only
            "sasl_mechanism": "PLAIN",
            "sasl_username": "crmstream-engine",
            "sasl_password": sasl_password,
        },
    )
    done = subprocess.run(
        [sys.executable, "-m", "crmstream.run"],
        env={**os.environ, **settings_env(settings)},
        capture_output=True,
        timeout=90,
    )
    output_ = done.stdout + done.stderr
    assert done.returncode != 0, output_.decode(errors="replace")[-2000:]
    assert b"no Kafka broker answered" in output_
    no_secret_in("the engine's output", output_, sasl_password)
