"""RedisWriter against a real (private, per-session) redis-server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis
from factories import DAY, PROFILE_FIELDS, T0, alert, output, settings
from helpers import settings_for
from prometheus_client import REGISTRY

from crmstream.devservices import Service
from crmstream.settings import Redis as RedisSettings
from sinks.redis_sink import RedisWriter


@pytest.fixture
def config(redis_server: Service) -> RedisSettings:
    return settings_for(None, redis_server).redis


DORMANT_AFTER = settings().lifecycle.dormant_after_days * DAY


def new_writer(config: RedisSettings) -> RedisWriter:
    return RedisWriter(config, DORMANT_AFTER)


@pytest.fixture
def writer(config: RedisSettings, redis_client: redis.Redis) -> Iterator[RedisWriter]:
    # redis_client is requested first so that Redis is empty before the test writes.
    made = new_writer(config)
    yield made
    made.client.close()


def dump(client: redis.Redis) -> dict[str, Any]:
    """Every key with its type, full content and whether it expires."""
    state: dict[str, Any] = {}
    for key in sorted(client.scan_iter(count=1000)):
        kind = client.type(key)
        if kind == "hash":
            content: Any = client.hgetall(key)
        elif kind == "zset":
            content = client.zrange(key, 0, -1, withscores=True)
        elif kind == "stream":
            content = client.xrange(key)
        elif kind == "string":
            content = client.get(key)
        else:
            raise AssertionError(f"unexpected {kind} key {key}")
        state[key] = (kind, content, client.ttl(key) > 0)
    return state


def test_writing_the_same_batch_twice_leaves_redis_unchanged(
    config: RedisSettings, writer: RedisWriter, redis_client: redis.Redis
) -> None:
    batch = [
        output("c1", "rm-1", 0.81, alerts=[alert("c1", "rm-1", "churn_risk")]),
        output(
            "c2",
            "rm-2",
            0.30,
            alerts=[
                alert("c2", "rm-2", "suspicious_transaction"),
                alert("c2", "rm-2", "large_inflow"),
            ],
        ),
        output("c3", "rm-1", 0.05, previous_rm_id="rm-2"),
    ]
    writer.write(batch)
    first = dump(redis_client)

    writer.write(batch)
    # A restarted engine replays through a new connection: still nothing changes.
    replayer = new_writer(config)
    replayer.write(batch)
    replayer.client.close()

    assert dump(redis_client) == first
    streams = [key for key, (kind, _, _) in first.items() if kind == "stream"]
    assert sorted(streams) == ["crm:alerts", "crm:alerts:rm:rm-1", "crm:alerts:rm:rm-2"]
    ids = [entry["alert_id"] for _, entry in redis_client.xrange("crm:alerts")]
    assert sorted(ids) == sorted(a.alert_id for o in batch for a in o.alerts)


def test_profile_hash_holds_every_field_and_expires(
    config: RedisSettings, writer: RedisWriter, redis_client: redis.Redis
) -> None:
    written = output("c1", "rm-1", 0.8125, anomaly_score="", last_nps=4)

    writer.write([written])

    stored = redis_client.hgetall("crm:profile:c1")
    assert set(stored) == PROFILE_FIELDS
    assert stored["customer_id"] == "c1"
    assert stored["rm_id"] == "rm-1"
    assert float(stored["churn_risk"]) == 0.8125
    assert stored["anomaly_score"] == ""
    assert stored["last_nps"] == "4"
    assert stored["marketing_consent"] == "1"
    assert orjson.loads(stored["churn_reasons"]) == ["no login for 21 days"]
    assert orjson.loads(stored["channel_mix_30d"]) == {"mobile_app": 1.0}
    assert orjson.loads(stored["products"]) == ["current_account"]
    assert orjson.loads(stored["model_versions"]) == {"churn": "logistic@3"}
    ttl = redis_client.ttl("crm:profile:c1")
    assert config.profile_ttl_seconds - 5 <= ttl <= config.profile_ttl_seconds


def test_the_latest_output_of_a_customer_in_a_batch_wins(
    writer: RedisWriter, redis_client: redis.Redis
) -> None:
    writer.write([output("c1", churn_risk=0.2, at=T0), output("c1", churn_risk=0.6, at=T0 + 5)])

    assert redis_client.hget("crm:profile:c1", "churn_risk") == "0.6"
    assert redis_client.zscore("crm:rm:rm-1:churn", "c1") == 0.6


def test_rm_churn_set_ranks_the_rm_customers_by_risk(
    writer: RedisWriter, redis_client: redis.Redis
) -> None:
    writer.write(
        [
            output("c1", "rm-1", 0.123456),
            output("c2", "rm-1", 0.91),
            output("c3", "rm-1", 0.5),
            output("c4", "rm-2", 0.99),
        ]
    )

    assert redis_client.zrevrange("crm:rm:rm-1:churn", 0, -1, withscores=True) == [
        ("c2", 0.91),
        ("c3", 0.5),
        ("c1", 0.1235),
    ]
    assert redis_client.zrange("crm:rm:rm-2:churn", 0, -1) == ["c4"]


def test_moving_a_customer_to_a_new_rm_removes_it_from_the_old_rm_set(
    writer: RedisWriter, redis_client: redis.Redis
) -> None:
    writer.write([output("c1", "rm-old", 0.7), output("c2", "rm-old", 0.4)])

    writer.write([output("c1", "rm-new", 0.7, previous_rm_id="rm-old", at=T0 + 1)])

    assert redis_client.zrange("crm:rm:rm-old:churn", 0, -1) == ["c2"]
    assert redis_client.zrange("crm:rm:rm-new:churn", 0, -1) == ["c1"]
    assert redis_client.hget("crm:profile:c1", "rm_id") == "rm-new"


def test_moving_a_customer_is_not_lost_when_more_events_follow_in_the_batch(
    writer: RedisWriter, redis_client: redis.Redis
) -> None:
    writer.write([output("c1", "rm-old", 0.7)])

    writer.write(
        [
            output("c1", "rm-new", 0.7, previous_rm_id="rm-old", at=T0 + 1),
            output("c1", "rm-new", 0.72, at=T0 + 2),  # the next event: no longer a move
        ]
    )

    assert redis_client.zrange("crm:rm:rm-new:churn", 0, -1) == ["c1"]
    assert redis_client.zrange("crm:rm:rm-old:churn", 0, -1) == []


def test_alerts_reach_the_global_and_the_rm_stream_with_every_field(
    config: RedisSettings, writer: RedisWriter, redis_client: redis.Redis
) -> None:
    raised = alert("c1", "rm-7", "churn_risk", event_id="tx-99", at=T0 + 0.75)

    writer.write([output("c1", "rm-7", 0.91, alerts=[raised])])

    (global_entry,) = [fields for _, fields in redis_client.xrange("crm:alerts")]
    (rm_entry,) = [fields for _, fields in redis_client.xrange("crm:alerts:rm:rm-7")]
    assert global_entry == rm_entry
    assert global_entry == {
        "alert_id": raised.alert_id,
        "type": "churn_risk",
        "severity": "high",
        "customer_id": "c1",
        "rm_id": "rm-7",
        "event_time": "2025-03-03T12:00:00Z",
        "event_id": "tx-99",
        "reasons": orjson.dumps(list(raised.reasons)).decode(),
        "scores": orjson.dumps(raised.scores).decode(),
    }
    assert orjson.loads(global_entry["reasons"]) == ["churn risk 0.91", "no login for 21 days"]
    assert redis_client.xlen("crm:alerts:rm:rm-1") == 0
    # The id is remembered for the configured time, to refuse a replay.
    seen_ttl = redis_client.ttl(f"crm:alert-seen:{raised.alert_id}")
    assert config.alert_dedupe_ttl_seconds - 5 <= seen_ttl <= config.alert_dedupe_ttl_seconds


def test_an_alert_replayed_in_a_later_batch_is_not_repeated(
    writer: RedisWriter, redis_client: redis.Redis
) -> None:
    raised = alert("c1", "rm-1", "suspicious_transaction")
    writer.write([output("c1", alerts=[raised])])

    writer.write([output("c1", alerts=[raised], at=T0 + 1), output("c2", alerts=[alert("c2")])])

    assert redis_client.xlen("crm:alerts") == 2
    assert redis_client.xlen("crm:alerts:rm:rm-1") == 2
    customers = [fields["customer_id"] for _, fields in redis_client.xrange("crm:alerts")]
    assert customers == ["c1", "c2"]


def test_customers_silent_for_the_dormancy_period_are_marked_dormant(
    writer: RedisWriter, redis_client: redis.Redis
) -> None:
    now = T0 + 100 * DAY
    writer.write(
        [
            output("quiet", at=now - DORMANT_AFTER - DAY),
            output("closed", at=now - DORMANT_AFTER - DAY, stage="closed"),
            output("active", at=now - DORMANT_AFTER + DAY),
            output("newest", at=now),
        ]
    )

    stages = {
        c: redis_client.hget(f"crm:profile:{c}", "stage")
        for c in ("quiet", "closed", "active", "newest")
    }
    assert stages == {
        "quiet": "dormant",
        "closed": "closed",
        "active": "mature",
        "newest": "mature",
    }
    assert redis_client.zrange("crm:activity", 0, -1) == ["active", "newest"]


def test_the_next_event_of_a_dormant_customer_sets_its_stage_again(
    config: RedisSettings, writer: RedisWriter, redis_client: redis.Redis
) -> None:
    writer.write([output("c1", at=T0), output("c2", at=T0 + DORMANT_AFTER + DAY)])
    assert redis_client.hget("crm:profile:c1", "stage") == "dormant"

    later = new_writer(config)  # a fresh writer sweeps on its first batch
    later.write([output("c1", at=T0 + DORMANT_AFTER + 2 * DAY)])
    later.client.close()

    assert redis_client.hget("crm:profile:c1", "stage") == "mature"
    assert redis_client.zscore("crm:activity", "c1") == T0 + DORMANT_AFTER + 2 * DAY


def test_offer_decisions_are_logged_once_with_their_propensities(
    writer: RedisWriter, redis_client: redis.Redis
) -> None:
    decided = output()
    decided.offer_decision = {
        "decision_id": "d-1",
        "customer_id": "c1",
        "offer_id": "savings",
        "channel": "mobile_app",
        "estimated_acceptance": 0.12,
        "action_probability": 0.9625,
        "explored": False,
        "policy": "linucb@40",
        "event_time": "2026-03-01T10:00:00.000Z",
        "context": {"log_inflow_30d": 8.1},
    }
    writer.write([decided])
    writer.write([decided])  # a replay

    (entry,) = [fields for _, fields in redis_client.xrange("crm:offer-decisions")]
    assert entry["offer_id"] == "savings" and entry["channel"] == "mobile_app"
    assert float(entry["action_probability"]) == 0.9625
    assert entry["explored"] == "0"
    assert orjson.loads(entry["context"]) == {"log_inflow_30d": 8.1}


def test_alerts_held_by_the_cool_down_are_counted_by_type(writer: RedisWriter) -> None:
    def cooled_down(kind: str) -> float:
        value = REGISTRY.get_sample_value("crmstream_alerts_cooled_down_total", {"type": kind})
        return value or 0.0

    before = cooled_down("suspicious_transaction"), cooled_down("churn_risk")
    held = output("c1")
    held.cooled_down = ("suspicious_transaction",)
    again = output("c1", at=T0 + 1)
    again.cooled_down = ("suspicious_transaction", "churn_risk")

    writer.write([held, again, output("c2")])

    after = cooled_down("suspicious_transaction"), cooled_down("churn_risk")
    assert (after[0] - before[0], after[1] - before[1]) == (2.0, 1.0)
