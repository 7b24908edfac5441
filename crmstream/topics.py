"""Create the Kafka topics crmstream reads and writes, with the configured partition count.

Create them before anything else touches them: Tansu (and brokers with
auto.create.topics.enable) create an unknown topic on the first metadata request for it,
with the broker's default partition count instead of ours.
"""

from __future__ import annotations

import concurrent.futures
import logging
import time

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata, NewTopic

from crmstream.settings import Settings, Topics

log = logging.getLogger(__name__)

START_BROKER_HINT = (
    "start a local one with `crmstream dev up` and export the variables it prints, or set "
    "CRMSTREAM_KAFKA__BOOTSTRAP_SERVERS to a reachable broker"
)


class TopicError(Exception):
    """Topics could not be created or checked; names the topic and what to do."""


def topic_names(topics: Topics) -> list[str]:
    """The four input topics and the dead-letter topic."""
    return [*topics.inputs(), topics.dead_letter]


def create_topics(settings: Settings, timeout: float = 30.0) -> list[str]:
    """Make sure every topic exists with the configured partitions; return those created now.

    Topics that already exist with the right partition count are left as they are. Returns
    only once metadata shows every topic with all its partitions led by a broker.
    """
    kafka = settings.kafka
    bootstrap = kafka.bootstrap_servers.strip()
    if not bootstrap:
        raise TopicError(
            f"kafka.bootstrap_servers is empty, so there is no broker to create topics on: "
            f"{START_BROKER_HINT}"
        )
    names = topic_names(kafka.topics)
    partitions = kafka.topics.partitions
    deadline = time.monotonic() + timeout
    try:
        admin = AdminClient(kafka.client_config(), logger=log)
    except KafkaException as exc:
        raise TopicError(f"invalid Kafka client configuration: {exc}") from None

    existing = _metadata(admin, bootstrap, deadline, timeout)
    for name in names:
        _check_partitions(name, existing, partitions)
    missing = [name for name in names if name not in existing.topics]
    created = _create(admin, missing, settings, deadline) if missing else []
    _wait_until_ready(admin, names, created, partitions, bootstrap, deadline, timeout)
    return created


def _remaining(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.001)


def _metadata(
    admin: AdminClient, bootstrap: str, deadline: float, timeout: float
) -> ClusterMetadata:
    # Always all topics, never a named one: naming an unknown topic auto-creates it.
    try:
        return admin.list_topics(timeout=_remaining(deadline))
    except KafkaException as exc:
        raise TopicError(
            f"no Kafka broker answered at {bootstrap} within {timeout:g} s "
            f"({exc.args[0].str()}): {START_BROKER_HINT}"
        ) from None


def _check_partitions(name: str, metadata: ClusterMetadata, partitions: int) -> None:
    topic = metadata.topics.get(name)
    if topic is None or topic.error is not None or len(topic.partitions) == partitions:
        return
    found = len(topic.partitions)
    raise TopicError(
        f"topic {name!r} already exists with {found} partitions, but kafka.topics.partitions "
        f"is {partitions}. Kafka cannot shrink a topic, and adding partitions moves customers "
        f"to other partitions: either configure CRMSTREAM_KAFKA__TOPICS__PARTITIONS={found}, "
        f"or delete the topic (its data is lost) and run `crmstream topics create` again. "
        f"On the local development broker something probably auto-created it first; "
        f"`crmstream dev down && crmstream dev up` gives an empty broker."
    )


def _create(admin: AdminClient, names: list[str], settings: Settings, deadline: float) -> list[str]:
    topics = settings.kafka.topics
    requests = [NewTopic(name, topics.partitions, topics.replication_factor) for name in names]
    remaining = _remaining(deadline)
    futures = admin.create_topics(requests, request_timeout=remaining, operation_timeout=remaining)
    created = []
    for name, future in futures.items():
        try:
            future.result(timeout=_remaining(deadline))
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue  # someone else created it meanwhile; its partitions are checked next
            raise TopicError(
                f"could not create topic {name!r} ({topics.partitions} partitions, "
                f"replication factor {topics.replication_factor}) on "
                f"{settings.kafka.bootstrap_servers}: {error.str()}. {_advice(error)}"
            ) from None
        except concurrent.futures.TimeoutError:
            raise TopicError(
                f"the broker did not confirm topic {name!r} in time; run "
                f"`crmstream topics create` again or give it a longer --timeout"
            ) from None
        created.append(name)
    return created


def _advice(error: KafkaError) -> str:
    code = error.code()
    if code == KafkaError.INVALID_REPLICATION_FACTOR:
        return "Set kafka.topics.replication_factor to at most the number of brokers."
    if code == KafkaError.INVALID_PARTITIONS:
        return "Set kafka.topics.partitions to a count the cluster accepts."
    if code in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED):
        return "Ask the cluster operators for permission to create topics, or to create them."
    if code == KafkaError.INVALID_TOPIC_EXCEPTION:
        return "Fix the topic name under [kafka.topics]."
    return "Check the broker log, then run `crmstream topics create` again."


def _wait_until_ready(
    admin: AdminClient,
    names: list[str],
    created: list[str],
    partitions: int,
    bootstrap: str,
    deadline: float,
    timeout: float,
) -> None:
    """Wait until metadata shows every topic with all its partitions led by a broker.

    A topic created just now may briefly show fewer partitions; one that existed before
    with another count is an error at once.
    """
    while True:
        metadata = _metadata(admin, bootstrap, deadline, timeout)
        pending = []
        for name in names:
            if name not in created:
                _check_partitions(name, metadata, partitions)
            topic = metadata.topics.get(name)
            ready = (
                topic is not None
                and topic.error is None
                and len(topic.partitions) == partitions
                and all(p.error is None and p.leader >= 0 for p in topic.partitions.values())
            )
            if not ready:
                pending.append(name)
        if not pending:
            return
        if time.monotonic() + 0.1 >= deadline:
            raise TopicError(
                f"topics {', '.join(pending)} were created but metadata on {bootstrap} did not "
                f"show all {partitions} partitions with a leader within {timeout:g} s; check "
                "the broker, then run `crmstream topics create` again"
            )
        time.sleep(0.1)
