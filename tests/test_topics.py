"""Creating the configured topics on a real broker."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka.admin import AdminClient
from helpers import settings_for

from crmstream.devservices import Service, free_port
from crmstream.settings import Topics
from crmstream.topics import TopicError, create_topics, topic_names


def _fresh_topics(partitions: int) -> dict[str, object]:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    return {
        "transactions": f"{prefix}transactions",
        "interactions": f"{prefix}interactions",
        "outcomes": f"{prefix}outcomes",
        "customers": f"{prefix}customers",
        "dead_letter": f"{prefix}dead-letter",
        "partitions": partitions,
        "replication_factor": 1,
    }


def _partition_counts(broker: Service) -> dict[str, int]:
    metadata = AdminClient({"bootstrap.servers": broker.endpoint}).list_topics(timeout=5)
    return {name: len(topic.partitions) for name, topic in metadata.topics.items()}


def test_creating_twice_is_idempotent_with_the_configured_partitions(broker: Service) -> None:
    settings = settings_for(broker, None, _fresh_topics(partitions=3))
    names = topic_names(settings.kafka.topics)

    assert sorted(create_topics(settings, timeout=15)) == sorted(names)
    assert create_topics(settings, timeout=15) == []

    counts = _partition_counts(broker)
    assert {name: counts.get(name) for name in names} == dict.fromkeys(names, 3)


def test_an_existing_topic_with_other_partitions_is_named_in_the_error(
    broker: Service, topics: Topics
) -> None:
    settings = settings_for(broker, None, topics.model_copy(update={"partitions": 6}))

    with pytest.raises(TopicError, match=rf"{re.escape(topics.transactions)}.*4 partitions.*is 6"):
        create_topics(settings, timeout=15)


def test_an_unreachable_broker_fails_clearly_within_the_timeout() -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    settings = settings_for(bootstrap, None)

    started = time.monotonic()
    with pytest.raises(TopicError) as raised:
        create_topics(settings, timeout=2)

    assert time.monotonic() - started < 4
    message = str(raised.value)
    assert bootstrap in message
    assert "crmstream dev up" in message
    assert "CRMSTREAM_KAFKA__BOOTSTRAP_SERVERS" in message


def test_no_configured_broker_says_how_to_get_one() -> None:
    with pytest.raises(TopicError, match=r"bootstrap_servers is empty.*crmstream dev up"):
        create_topics(settings_for("", None), timeout=2)


def test_topics_fixture_gives_each_test_its_own_created_topics(
    broker: Service, topics: Topics, make_topics: Callable[..., Topics]
) -> None:
    other = make_topics(partitions=2)

    assert set(topic_names(topics)).isdisjoint(topic_names(other))
    counts = _partition_counts(broker)
    assert all(counts[name] == 4 for name in topic_names(topics))
    assert all(counts[name] == 2 for name in topic_names(other))
