"""Fixtures for tests against a real broker and a real Redis.

One Tansu broker and one private redis-server per test session, each on a free loopback
port (never the developer's 6379, whose data a test must not flush); every test gets its
own topic names, created explicitly before anything can auto-create them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest
import redis
from helpers import settings_for

from crmstream.devservices import Service, start_broker, start_redis
from crmstream.settings import ENV_PREFIX, Settings, Topics
from crmstream.topics import create_topics


@pytest.fixture(scope="session", autouse=True)
def _hermetic_environment() -> Iterator[None]:
    """Ignore CRMSTREAM_* variables of the developer's shell (e.g. from `dev up`)."""
    saved = {name: value for name, value in os.environ.items() if name.startswith(ENV_PREFIX)}
    for name in saved:
        del os.environ[name]
    yield
    os.environ.update(saved)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A Tansu broker for the whole session; `broker.endpoint` is its bootstrap string."""
    service = start_broker(log_path=tmp_path_factory.mktemp("broker") / "broker.log")
    yield service
    service.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """A private redis-server for the whole session; `redis_server.endpoint` is its URL."""
    service = start_redis(log_path=tmp_path_factory.mktemp("redis") / "redis.log")
    yield service
    service.stop()


@pytest.fixture
def redis_client(redis_server: Service) -> Iterator[redis.Redis]:
    """A client on the session's Redis, emptied before the test; replies are str."""
    client = redis.Redis.from_url(redis_server.endpoint, decode_responses=True)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def make_topics(broker: Service) -> Callable[..., Topics]:
    """Create a fresh set of uniquely named topics: `make_topics(partitions=2)`."""

    def make(partitions: int = 4) -> Topics:
        prefix = f"t{uuid.uuid4().hex[:8]}."
        names = {
            "transactions": f"{prefix}transactions",
            "interactions": f"{prefix}interactions",
            "outcomes": f"{prefix}outcomes",
            "customers": f"{prefix}customers",
            "dead_letter": f"{prefix}dead-letter",
            "partitions": partitions,
            "replication_factor": 1,
        }
        settings = settings_for(broker, None, names)
        create_topics(settings, timeout=15)
        return settings.kafka.topics

    return make


@pytest.fixture
def topics(make_topics: Callable[..., Topics]) -> Topics:
    """This test's own topics (4 partitions each), already created on the session broker."""
    return make_topics()


@pytest.fixture
def settings(broker: Service, redis_server: Service, topics: Topics) -> Settings:
    """Shipped defaults pointed at the session broker, the session Redis and this test's
    topics; for other values call `settings_for(broker, redis_server, topics, section={...})`.
    """
    return settings_for(broker, redis_server, topics)
