"""The engine's dataflow: Kafka in, per-customer profiles, sharded models, decisions, Redis out.

kafka (4 topics) -> decode -> [bad -> dead-letter topic]
  -> by customer: profile (dedupe, lateness, windows, ledgers) -> [late/dup -> dead-letter]
  -> by model shard: score and learn (churn, anomaly, offers)
  -> by customer: decide (alerts, stage, next-best-offer) -> Redis
"""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Generic, TypeVar

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaError, KafkaSourceMessage
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulBatchLogic

from crmstream.settings import Settings, load_offer_catalogue
from online_models.registry import build
from online_models.shard import ModelChoice, ModelShard, shard_of
from operators.decisions import DecisionConfig, DecisionLogic, DecisionState
from operators.decode import DecodeLimits, decode
from operators.profile import CustomerState, ProfileConfig, ProfileLogic
from operators.records import DeadLetter, Event, Origin, ScoreRequest
from sinks.dead_letter import DeadLetterSink
from sinks.model_quality import ModelQualitySink
from sinks.redis_sink import RedisSink
from sources.kafka import SharedConsumerKafkaSource

S = TypeVar("S")
log = logging.getLogger(__name__)


class _KeyedStep(StatefulBatchLogic, Generic[S]):
    """Per-key state driven by a plain function; snapshots are pickled bytes (an immutable copy)."""

    # One per key, a million of them: slots, no per-object dict.
    __slots__ = ("state", "step")

    def __init__(self, state: S, step: Callable[[S, Any], list]) -> None:
        self.state = state
        self.step = step

    def on_batch(self, values: list) -> tuple[list, bool]:
        out: list = []
        for value in values:
            out.extend(self.step(self.state, value))
        return out, StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        return pickle.dumps(self.state, protocol=pickle.HIGHEST_PROTOCOL)


@dataclass(frozen=True)
class ProfileLifetime:
    """How long a customer's profile state lives without events: shared by every key."""

    logic: ProfileLogic
    evict_closed: float
    """Seconds a closed customer's state is kept after its last event."""
    compact_idle: float
    """Seconds of silence after which the window log is dropped."""
    apply: Callable[[CustomerState, Any], list] = field(init=False, repr=False)
    """`logic.apply`, bound once: a bound method per key would cost 64 bytes each."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "apply", self.logic.apply)


class _ProfileStep(_KeyedStep[CustomerState]):
    """The profile step, with the state's lifetime bounded in wall-clock time.

    Silence produces no event, so a timer bounds what silent customers keep: once a
    closed account's grace period is over its state is dropped (its profile stays in
    Redis); once a customer was silent for longer than the longest window, the window log
    and held events are cleared (nothing in them still counts) while reference data,
    recent event ids and known devices stay.
    """

    # The settings live in one shared ProfileLifetime; per key only the due time, as epoch
    # seconds (a float is half a datetime), turned into a datetime when Bytewax asks.
    __slots__ = ("due", "lifetime")

    def __init__(self, state: CustomerState, lifetime: ProfileLifetime) -> None:
        super().__init__(state, lifetime.apply)
        self.lifetime = lifetime
        self.due = self._next_due()

    def _next_due(self) -> float:
        lifetime = self.lifetime
        wait = lifetime.evict_closed if self.state.closed_at is not None else lifetime.compact_idle
        return time.time() + wait

    def on_batch(self, values: list) -> tuple[list, bool]:
        out, keep = super().on_batch(values)
        self.due = self._next_due()
        return out, keep

    def notify_at(self) -> datetime:
        return datetime.fromtimestamp(self.due, timezone.utc)

    def on_notify(self) -> tuple[list, bool]:
        if self.state.closed_at is not None:
            return [], StatefulBatchLogic.DISCARD
        released = self.lifetime.logic.compact(self.state)
        self.due = self._next_due()
        return released, StatefulBatchLogic.RETAIN


def _restore(resume: bytes | None, fresh: Callable[[], S]) -> S:
    return fresh() if resume is None else pickle.loads(resume)


def _restore_shard(resume: bytes | None, choice: ModelChoice) -> ModelShard:
    """Models resume from their checkpoint, and say so; a new shard says it starts empty."""
    if resume is None:
        log.info("model shard starts untrained (no checkpoint in the recovery store)")
        return ModelShard(choice)
    shard = pickle.loads(resume)
    log.info("model shard %s resumed from its checkpoint: %s", shard.shard, shard.versions())
    return shard


def profile_config(settings: Settings) -> ProfileConfig:
    engine, models = settings.engine, settings.models
    return ProfileConfig(
        allowed_lateness=float(engine.allowed_lateness_seconds),
        duplicate_memory=engine.duplicate_memory,
        pending_unknown_customer=engine.pending_unknown_customer,
        unknown_customer_grace=float(engine.unknown_customer_grace_seconds),
        own_bank_code=settings.bank.own_bank_code,
        churn_horizon=models.churn_horizon_days * 86400.0,
        churn_snapshot_every=models.churn_snapshot_every_hours * 3600.0,
        churn_ledger_size=models.churn_ledger_size,
        small_payment_amount=settings.rules.card_testing_max_amount,
    )


def profile_lifetime(logic: ProfileLogic, settings: Settings) -> ProfileLifetime:
    return ProfileLifetime(
        logic,
        evict_closed=settings.engine.evict_closed_after_hours * 3600.0,
        compact_idle=settings.engine.compact_idle_after_days * 86400.0,
    )


def decision_config(settings: Settings) -> DecisionConfig:
    return DecisionConfig(
        alerts=settings.alerts,
        lifecycle=settings.lifecycle,
        catalogue=load_offer_catalogue(settings.models.catalogue_path()),
        contact_policy=settings.contact_policy,
        base_currency=settings.bank.base_currency,
        own_bank_code=settings.bank.own_bank_code,
        rules=settings.rules,
    )


def model_choice(settings: Settings) -> ModelChoice:
    choice = ModelChoice(
        churn=settings.models.churn,
        anomaly=settings.models.anomaly,
        offers=settings.models.offers,
        seed=settings.models.seed,
        shards=settings.engine.model_shards,
        alert_min_amount=settings.alerts.suspicious_min_amount,
        anomaly_hold_candidates=settings.models.anomaly_hold_candidates,
        anomaly_feedback_weight=settings.models.anomaly_feedback_weight,
    )
    # Fail at start, naming the bad setting, rather than on the first event.
    for role in ("churn", "anomaly", "offers"):
        build(role, getattr(choice, role), choice.seed)
    return choice


def make_decoder(settings: Settings) -> Callable[[Any], Event | DeadLetter]:
    kinds = settings.kafka.topics.inputs()
    limits = DecodeLimits(
        max_record_bytes=settings.engine.max_record_bytes,
        max_amount=settings.engine.max_amount,
        fx_rates=dict(settings.bank.fx_rates),
    )

    def decode_message(message: KafkaSourceMessage | KafkaError) -> Event | DeadLetter:
        error = None
        if isinstance(message, KafkaError):
            error, message = message.err, message.msg
        timestamp = message.timestamp[1] / 1000 if message.timestamp else 0.0
        origin = Origin(message.topic, message.partition, message.offset, message.key, timestamp)
        if error is not None:
            return DeadLetter(
                "dead_lettered", "broker_error", f"broker error: {error}", origin, message.value
            )
        return decode(kinds[message.topic], message.value, origin, limits)

    return decode_message


@dataclass(frozen=True)
class EngineSteps:
    """The per-event steps, configured once: what the flow wires, and benchmarks reuse."""

    decode: Callable[[Any], Event | DeadLetter]
    profile: ProfileLogic
    decisions: DecisionLogic
    models: ModelChoice
    shards: int

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineSteps:
        return cls(
            decode=make_decoder(settings),
            profile=ProfileLogic(profile_config(settings)),
            decisions=DecisionLogic(decision_config(settings)),
            models=model_choice(settings),
            shards=settings.engine.model_shards,
        )


def build_flow(settings: Settings) -> Dataflow:
    kafka = settings.kafka
    client_config = kafka.client_config()
    brokers = client_config.pop("bootstrap.servers").split(",")
    steps = EngineSteps.from_settings(settings)
    decoder, profile_logic, decision_logic = steps.decode, steps.profile, steps.decisions
    choice, shards = steps.models, steps.shards
    offer_ids = decision_logic.offer_ids

    flow = Dataflow("crmstream")
    source = SharedConsumerKafkaSource(
        brokers,
        list(kafka.topics.inputs()),
        tail=True,
        # An explicit first offset needs no offset lookup at start (which some
        # Kafka-compatible brokers answer wrongly); if retention removed it, the consumer
        # resets to the earliest offset still kept.
        starting_offset=0,
        # librdkafka waits up to 500 ms for a fetch to fill by default: most of the
        # ingest-to-Redis latency measured under light load. 10 ms keeps it small.
        add_config={"auto.offset.reset": "earliest", "fetch.wait.max.ms": "10", **client_config},
        batch_size=kafka.batch_size,
        raise_on_errors=False,
    )
    raw = op.input("kafka_in", flow, source)
    decoded = op.branch("valid", op.map("decode", raw, decoder), lambda r: isinstance(r, Event))

    by_customer = op.key_on("by_customer", decoded.trues, lambda e: e.customer_id)
    lifetime = profile_lifetime(profile_logic, settings)
    profiled = op.stateful_batch(
        "profile",
        by_customer,
        lambda resume: _ProfileStep(_restore(resume, CustomerState), lifetime),
    )
    applied = op.branch(
        "applied", op.key_rm("profile_out", profiled), lambda r: isinstance(r, ScoreRequest)
    )

    by_shard = op.key_on("by_shard", applied.trues, lambda r: shard_of(r.customer_id, shards))
    scored = op.stateful_batch(
        "models",
        by_shard,
        lambda resume: _KeyedStep(
            _restore_shard(resume, choice),
            lambda shard, request: [shard.handle(request, offer_ids)],
        ),
    )

    back_to_customer = op.key_on(
        "by_customer_again", op.key_rm("models_out", scored), lambda s: s.request.customer_id
    )
    decided = op.stateful_batch(
        "decide",
        back_to_customer,
        lambda resume: _KeyedStep(
            _restore(resume, DecisionState),
            lambda state, s: [decision_logic.decide(state, s)],
        ),
    )
    outputs = op.key_rm("decide_out", decided)
    op.output(
        "redis", outputs, RedisSink(settings.redis, settings.lifecycle.dormant_after_days * 86400.0)
    )
    quality = op.flat_map("quality_pairs", outputs, lambda output: output.quality)
    op.output("model_quality", quality, ModelQualitySink())

    dead = op.merge("dead_letters", decoded.falses, applied.falses)
    op.output(
        "dead_letter_topic", dead, DeadLetterSink(kafka.client_config(), kafka.topics.dead_letter)
    )
    return flow
