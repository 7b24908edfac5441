"""Helpers shared by the tests: polling instead of sleeping, settings for test services."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import pytest
from pydantic import BaseModel

from crmstream.devservices import Service
from crmstream.settings import Settings, load_settings

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    *,
    what: str,
) -> T:
    """Poll `predicate` until it returns something truthy, and return that.

    Fails the test naming `what` and the last value seen, so a timeout says what was
    awaited instead of leaving an assertion on stale data.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what} (last value: {value!r})")
        time.sleep(interval)


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def settings_for(
    broker: Service | str | None,
    redis_server: Service | str | None,
    topics: BaseModel | Mapping[str, Any] | None = None,
    **overrides: Any,
) -> Settings:
    """Validated settings pointing at the test's broker, Redis and topics.

    `overrides` are per-section dicts merged key by key into the shipped defaults, e.g.
    `settings_for(broker, redis_server, topics, engine={"model_shards": 2})`.
    Services may be given as `Service` objects or endpoint strings; None keeps the default.
    Recovery is off unless a test passes `engine={"recovery_dir": ...}`: the shipped default
    (`.run/recovery`) would share one store between tests with different topics.
    """
    sections: dict[str, Any] = {"kafka": {}, "redis": {}, "engine": {"recovery_dir": ""}}
    if broker is not None:
        sections["kafka"]["bootstrap_servers"] = _endpoint(broker)
    if redis_server is not None:
        sections["redis"]["url"] = _endpoint(redis_server)
    if topics is not None:
        names = topics.model_dump() if isinstance(topics, BaseModel) else dict(topics)
        sections["kafka"]["topics"] = names
    return load_settings(**_deep_merge(sections, overrides))


def _endpoint(service: Service | str) -> str:
    return service.endpoint if isinstance(service, Service) else service
