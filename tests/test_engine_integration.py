"""The real engine, end to end: broker → `crmstream run` → Redis, dead-letter topic, /metrics."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from confluent_kafka import Consumer, TopicPartition
from engine_process import EngineProcess, produce
from helpers import wait_for

from crmstream.settings import Settings

pytestmark = pytest.mark.integration


def customer(cid: str, rm: str, at: str = "2026-03-01T00:00:00Z", **extra: Any) -> dict:
    return {
        "schema_version": 1, "event_id": f"ref-{cid}-{at}", "customer_id": cid, "event_time": at,
        "segment": "affluent", "rm_id": rm, "branch_id": "B01", "products": ["current_account"],
        "marketing_consent": True, "joined_on": "2019-05-01", "birth_year": 1980, **extra,
    }  # fmt: skip


def txn(cid: str, eid: str, at: str, amount: float, **extra: Any) -> dict:
    return {
        "schema_version": 1, "event_id": eid, "customer_id": cid, "account_id": f"A-{cid}",
        "event_time": at, "amount": amount, "currency": "EUR", "direction": "debit",
        "kind": "card_present", "merchant_category": "5411", "merchant_id": "M1", "country": "DE",
        "device_id": None, "counterparty_bank": None, **extra,
    }  # fmt: skip


def interaction(cid: str, eid: str, at: str, kind: str, **extra: Any) -> dict:
    return {
        "schema_version": 1, "event_id": eid, "customer_id": cid, "event_time": at,
        "channel": "mobile_app", "type": kind, **extra,
    }  # fmt: skip


def scenario() -> list[tuple[str, str | None, Any]]:
    """Two known customers, alert-worthy events, and one of each kind of bad record."""
    good = [
        ("customers", "C1", customer("C1", "RM1")),
        ("customers", "C2", customer("C2", "RM2")),
        *[
            ("transactions", "C1", txn("C1", f"c1-{i}", f"2026-03-02T1{i}:00:00Z", 20.0 + i))
            for i in range(5)
        ],
        ("transactions", "C1", txn("C1", "c1-salary", "2026-03-02T16:00:00Z", 30000.0,
                                   direction="credit", kind="transfer_in", merchant_category=None,
                                   merchant_id=None)),
        ("transactions", "C1", txn("C1", "c1-out", "2026-03-02T17:00:00Z", 15000.0,
                                   kind="transfer_out", merchant_category=None, merchant_id=None,
                                   counterparty_bank="OTHERBANK")),
        ("transactions", "C2", txn("C2", "c2-pay", "2026-03-02T09:00:00Z", 26000.0,
                                   direction="credit", kind="salary", merchant_category=None,
                                   merchant_id=None)),
        ("interactions", "C2", interaction("C2", "c2-complaint", "2026-03-02T10:00:00Z",
                                           "complaint", severity=5)),
        ("interactions", "C1", interaction("C1", "c1-login", "2026-03-02T18:00:00Z", "login",
                                           device_id="D1")),
    ]  # fmt: skip
    bad = [
        ("transactions", "C1", b'{"schema_version": 1, "event_id": "x1", '),
        ("transactions", "C1", {k: v for k, v in txn("C1", "x2", "2026-03-02T18:00:00Z", 5.0).items() if k != "amount"}),
        ("transactions", "C1", txn("C1", "x3", "2026-03-02T18:00:00Z", -5.0)),
        ("transactions", "C1", txn("C1", "x4", "2026-03-02T18:00:00Z", 5.0, currency="XAU")),
        # A replay within the allowed lateness is refused as a duplicate (an older one as late).
        ("transactions", "C1", txn("C1", "c1-out", "2026-03-02T17:00:00Z", 15000.0,
                                   kind="transfer_out", merchant_category=None, merchant_id=None,
                                   counterparty_bank="OTHERBANK")),
        ("transactions", "C1", txn("C1", "x5", "2026-03-02T12:00:00Z", 9.0)),  # 5 h behind: late
        ("transactions", "C9", txn("C9", "x6", "2026-03-02T10:00:00Z", 9.0)),  # never announced
        ("transactions", "C9", txn("C9", "x7", "2026-03-02T13:00:00Z", 9.0)),
    ]  # fmt: skip
    return good + bad


EXPECTED_DEAD = {"malformed_json": 1, "schema": 2, "unknown_currency": 1, "unknown_customer": 1}


def dead_letters(settings: Settings, expected: int) -> list[dict[str, Any]]:
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": "dlq-reader",
         "enable.auto.commit": False}
    )  # fmt: skip
    topic = settings.kafka.topics.dead_letter
    consumer.assign([TopicPartition(topic, p, 0) for p in range(settings.kafka.topics.partitions)])
    found: list[dict[str, Any]] = []

    def collect() -> bool:
        for message in consumer.consume(100, timeout=0.2):
            if message.error() is None:
                headers = {k: v.decode() for k, v in message.headers() or []}
                found.append({"value": message.value(), **headers})
        return len(found) >= expected

    try:
        wait_for(collect, timeout=30, what=f"{expected} dead letters")
    finally:
        consumer.close()
    return found


def redis_state(client: redis.Redis) -> dict[str, Any]:
    """Every key's content; stream entries without their server-assigned ids."""
    state: dict[str, Any] = {}
    for key in sorted(client.scan_iter()):
        kind = client.type(key)
        if kind == "hash":
            state[key] = client.hgetall(key)
        elif kind == "zset":
            state[key] = client.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            state[key] = [fields for _, fields in client.xrange(key)]
        else:
            state[key] = client.get(key)
    return state


def test_profiles_alerts_dead_letters_and_metrics(
    settings: Settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    produce(settings, scenario())
    with EngineProcess(settings, tmp_path / "engine.log") as engine:
        wait_for(
            lambda: engine.metric("crmstream_events_total", outcome="ok") >= 12,
            timeout=60,
            interval=0.5,
            what="12 events applied",
        )
        letters = dead_letters(settings, expected=7)

        profile = redis_client.hgetall("crm:profile:C1")
        assert profile["rm_id"] == "RM1" and profile["segment"] == "affluent"
        features = orjson.loads(profile["features"])
        # Five card payments plus the salary-sized inflow and the external transfer.
        assert features["spend_count_30d"] == 5 and features["spend_amount_30d"] == 110.0
        assert features["inflow_amount_30d"] == 30000.0
        assert features["external_outflow_amount_30d"] == 15000.0
        assert features["logins_30d"] == 1
        assert profile["value_tier"] == "platinum"
        assert profile["updated_at"] == "2026-03-02T18:00:00.000Z"
        assert 0.0 <= float(profile["churn_risk"]) <= 1.0
        assert redis_client.ttl("crm:profile:C1") > 0
        assert "C1" in redis_client.zrange("crm:rm:RM1:churn", 0, -1)

        alerts = [fields for _, fields in redis_client.xrange("crm:alerts")]
        by_type = {a["type"]: a for a in alerts}
        assert {"large_inflow", "large_outflow_external", "high_value_complaint"} <= set(by_type)
        outflow = by_type["large_outflow_external"]
        assert outflow["customer_id"] == "C1" and outflow["rm_id"] == "RM1"
        assert "transfer of 15,000 EUR to another bank (OTHERBANK)" in orjson.loads(
            outflow["reasons"]
        )
        assert "churn_risk" in orjson.loads(outflow["scores"])
        complaint = by_type["high_value_complaint"]
        assert complaint["rm_id"] == "RM2" and complaint["severity"] == "high"
        rm1 = [fields["type"] for _, fields in redis_client.xrange("crm:alerts:rm:RM1")]
        assert sorted(rm1) == ["large_inflow", "large_outflow_external"]

        codes: dict[str, int] = {}
        for letter in letters:
            codes[letter["crmstream.reason_code"]] = (
                codes.get(letter["crmstream.reason_code"], 0) + 1
            )
        assert codes == {**EXPECTED_DEAD, "duplicate": 1, "late": 1}
        malformed = next(x for x in letters if x["crmstream.reason_code"] == "malformed_json")
        assert malformed["value"] == b'{"schema_version": 1, "event_id": "x1", '
        assert malformed["crmstream.source_topic"] == settings.kafka.topics.transactions
        assert malformed["crmstream.source_offset"].isdigit()
        missing = next(x for x in letters if "missing field 'amount'" in x["crmstream.reason"])
        assert missing["crmstream.reason_code"] == "schema"
        late = next(x for x in letters if x["crmstream.reason_code"] == "late")
        assert "beyond the allowed lateness" in late["crmstream.reason"]

        wait_for(
            lambda: (
                engine.metric("crmstream_events_total", outcome="late") == 1
                and engine.metric("crmstream_events_total", outcome="duplicate") == 1
                and engine.metric("crmstream_events_total", outcome="dead_lettered") == 5
            ),
            timeout=10,
            what="outcome counters",
        )
        assert engine.metric("crmstream_alerts_total", type="large_inflow") == 1
        assert engine.metric("crmstream_ingest_to_redis_seconds_count") >= 12
        assert engine.metric("crmstream_dead_letters_total", reason="unknown_currency") == 1
        assert engine.metric("process_resident_memory_bytes") > 0
        # Lag is reported for every input partition and drains once everything is read.
        wait_for(
            lambda: (
                engine.metric("crmstream_kafka_consumer_lag_messages") == 0
                and engine.series("crmstream_kafka_consumer_lag_messages") == 4 * 4
            ),
            timeout=15,
            interval=0.5,
            what="lag reported as 0 for the 16 input partitions",
        )


def test_replaying_the_input_leaves_redis_unchanged(
    settings: Settings, redis_client: redis.Redis, tmp_path: Path
) -> None:
    produce(settings, scenario())
    applied = 12
    with EngineProcess(settings, tmp_path / "first.log") as engine:
        wait_for(
            lambda: engine.metric("crmstream_events_total", outcome="ok") >= applied,
            timeout=60,
            what="first pass applied",
        )
    first = redis_state(redis_client)
    alerts_first = len(first["crm:alerts"])

    # A new engine without recovery reads every topic from the start: a full replay.
    with EngineProcess(settings, tmp_path / "second.log") as engine:
        wait_for(
            lambda: engine.metric("crmstream_events_total", outcome="ok") >= applied,
            timeout=60,
            what="replay applied",
        )
        assert engine.metric("crmstream_alerts_replayed_total") == alerts_first
        assert engine.metric("crmstream_alerts_total") == 0
    second = redis_state(redis_client)
    assert second == first
    ids = [a["alert_id"] for a in second["crm:alerts"]]
    assert len(ids) == len(set(ids)) == alerts_first >= 3
