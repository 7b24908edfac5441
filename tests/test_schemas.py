"""The published JSON Schema files are the schemas the engine enforces."""

from __future__ import annotations

import json

import pytest

from crmstream.events import SCHEMA_VERSION, TOPIC_KINDS, json_schema
from crmstream.settings import CONFIG_DIR


@pytest.mark.parametrize("kind", TOPIC_KINDS)
def test_schema_file_matches_the_code(kind: str) -> None:
    path = CONFIG_DIR / "schemas" / f"{kind}.v{SCHEMA_VERSION}.schema.json"
    assert path.is_file(), f"{path} is missing: run `crmstream schemas`"
    assert json.loads(path.read_text()) == json.loads(json.dumps(json_schema(kind))), (
        f"{path} is stale: run `crmstream schemas` and commit the result"
    )


def test_every_schema_requires_the_envelope() -> None:
    for kind in TOPIC_KINDS:
        required = set(json_schema(kind)["required"])
        assert {"schema_version", "event_id", "customer_id", "event_time"} <= required, kind
