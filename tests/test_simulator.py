"""The bank simulator: reproducible, valid, realistic, and honest about what it planted."""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

import orjson
import pytest
import typer
from confluent_kafka import Consumer, TopicPartition
from helpers import settings_for, wait_for
from pydantic import ValidationError
from typer.testing import CliRunner

from crmstream.events import ADAPTERS
from crmstream.settings import load_settings
from crmstream.simulator import (
    GroundTruth,
    SimEvent,
    SimulationConfig,
    acceptance_chance,
    leaving_on,
    read_ground_truth,
    simulate,
)
from crmstream.simulator import command as command_module
from crmstream.simulator.command import simulate_command
from crmstream.simulator.config import KINDS
from crmstream.simulator.population import World
from crmstream.simulator.producer import Pacer, produce

DAY = 86_400.0
HOUR = 3_600.0

# A month and a half, big enough for closures to happen and for every fault to occur.
RUN = SimulationConfig(
    customers=400,
    days=40,
    seed=11,
    churn_fraction=0.1,
    fraud_fraction=0.05,
    out_of_order_fraction=0.02,
    late_fraction=0.002,
    duplicate_fraction=0.005,
    bad_fraction=0.005,
)
SMALL = SimulationConfig(customers=60, days=6, seed=5)


class Run:
    def __init__(self, config: SimulationConfig) -> None:
        self.config = config
        self.truth = GroundTruth()
        self.events = list(simulate(config, self.truth))
        self.good = [e for e in self.events if isinstance(e.value, dict)]
        self.bad = [e for e in self.events if isinstance(e.value, bytes)]
        self.facts: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for fact in self.truth.facts:
            self.facts[fact["fact"]].append(fact)
        self.summary = self.truth.summary
        self.by_customer: dict[str, list[SimEvent]] = defaultdict(list)
        for event in self.good:
            self.by_customer[event.key].append(event)
        self.records = {
            e.key: e.value
            for e in self.good
            if e.kind == "customers" and e.event_time == config.start_ts
        }


@pytest.fixture(scope="module")
def run() -> Run:
    return Run(RUN)


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def first_seen(events: list[SimEvent]) -> list[SimEvent]:
    """The stream without re-sent duplicates."""
    seen: set[tuple[str, str]] = set()
    unique = []
    for event in events:
        key = (event.kind, event.value["event_id"])
        if key not in seen:
            seen.add(key)
            unique.append(event)
    return unique


# -- reproducibility ---------------------------------------------------------------------


def test_same_seed_gives_the_same_stream_and_another_seed_does_not() -> None:
    first = list(simulate(SMALL))
    assert first == list(simulate(SMALL))
    other = list(simulate(SimulationConfig(customers=60, days=6, seed=6)))
    assert [e.value for e in other] != [e.value for e in first]


def test_a_customers_events_do_not_depend_on_the_rest_of_the_population() -> None:
    def customer_7(customers: int) -> list[SimEvent]:
        config = SimulationConfig(
            customers=customers, days=5, seed=3, churn_fraction=0, fraud_fraction=0
        )
        return [e for e in simulate(config) if e.key == "C0000007"]

    alone = customer_7(10)
    assert len(alone) > 5
    assert alone == customer_7(120)


# -- validity ----------------------------------------------------------------------------


def test_every_well_formed_event_validates_against_its_schema(run: Run) -> None:
    settings = load_settings()
    for event in run.good:
        ADAPTERS[event.kind].validate_json(orjson.dumps(event.value))
        assert event.key == event.value["customer_id"]
        assert event.value["event_time"].endswith("Z")
        assert ts(event.value["event_time"]) == pytest.approx(event.event_time, abs=1e-3)
        assert run.config.start_ts <= event.event_time < run.config.end_ts
        if event.kind == "transactions":
            assert event.value["currency"] in settings.bank.fx_rates
            assert event.value["amount"] <= settings.engine.max_amount


def test_all_four_topics_and_every_event_type_appear(run: Run) -> None:
    kinds = Counter(e.kind for e in run.good)
    assert set(kinds) == {"transactions", "interactions", "outcomes", "customers"}
    types = {(e.kind, e.value.get("type") or e.value.get("kind")) for e in run.good}
    for transaction in ("card_present", "card_online", "atm", "transfer_in", "transfer_out",
                        "salary", "bill_payment", "direct_debit"):  # fmt: skip
        assert ("transactions", transaction) in types
    for interaction in ("login", "product_view", "support_contact", "complaint", "survey",
                        "offer_impression", "offer_accepted", "offer_declined",
                        "password_reset", "closure_request"):  # fmt: skip
        assert ("interactions", interaction) in types
    for outcome in ("fraud_confirmed", "fraud_false_alarm", "account_closed", "offer_converted"):
        assert ("outcomes", outcome) in types


def test_event_ids_are_unique_except_for_resent_duplicates(run: Run) -> None:
    seen: dict[tuple[str, str], dict] = {}
    repeats = 0
    for event in run.good:
        key = (event.kind, event.value["event_id"])
        if key in seen:
            assert seen[key] == event.value
            repeats += 1
        seen[key] = event.value
    assert repeats == run.summary["faults"]["duplicate"] > 0


def test_no_card_numbers_names_or_free_text_anywhere(run: Run) -> None:
    pan = re.compile(rb"(?<![0-9])[0-9]{13,19}(?![0-9])")
    token = re.compile(r"^[A-Za-z0-9_.:+-]+$")
    for event in run.events:
        raw = event.value if isinstance(event.value, bytes) else orjson.dumps(event.value)
        assert not pan.search(raw), raw
    for event in run.good:
        for name, value in event.value.items():
            assert "name" not in name
            strings = value if isinstance(value, list) else [value]
            for text in strings:
                if isinstance(text, str):
                    assert token.match(text), (name, text)


# -- ordering ----------------------------------------------------------------------------


def test_each_customers_record_comes_before_its_other_events(run: Run) -> None:
    assert len(run.records) == run.config.customers
    announced: set[str] = set()
    latest_record: dict[str, float] = {}
    for event in run.good:
        if event.kind == "customers":
            # Re-sent records carry changes and are later than the one before.
            assert event.event_time > latest_record.get(event.key, -1.0)
            latest_record[event.key] = event.event_time
            announced.add(event.key)
        else:
            assert event.key in announced


def test_events_arrive_roughly_in_time_order(run: Run) -> None:
    faults = run.summary["faults"]
    newest = 0.0
    behind = behind_minutes = 0
    worst = 0.0
    for event in run.events:
        if event.event_time < newest:
            lag = newest - event.event_time
            behind += 1
            behind_minutes += lag > 5 * 60 + 1
            worst = max(worst, lag)
        newest = max(newest, event.event_time)
    assert faults["out_of_order"] > 0 and faults["late"] > 0
    assert 0 < behind <= faults["out_of_order"] + faults["late"] + faults["duplicate"]
    assert behind_minutes <= faults["late"] + faults["duplicate"]
    assert HOUR < worst <= 6 * HOUR + 2 * 60


# -- realism -----------------------------------------------------------------------------


def test_salaried_customers_are_paid_once_a_month_on_their_own_day(run: Run) -> None:
    churners = {f["customer_id"] for f in run.facts["churner"]}
    checked = 0
    for customer, record in run.records.items():
        if record["segment"] not in ("mass", "affluent", "private") or customer in churners:
            continue
        salaries = [e for e in run.by_customer[customer] if e.value.get("kind") == "salary"]
        assert 1 <= len(first_seen(salaries)) <= 2
        days = {datetime.fromisoformat(e.value["event_time"]).day for e in salaries}
        amounts = [e.value["amount"] for e in salaries]
        assert len(days) == 1 and max(amounts) <= min(amounts) * 1.05
        assert all(e.value["direction"] == "credit" for e in salaries)
        checked += 1
    assert checked > 100


def test_people_sleep_and_spend_near_home(run: Run) -> None:
    card = [e.value for e in run.good if e.value.get("kind") == "card_present"]
    local_hours = [(datetime.fromisoformat(v["event_time"]).hour + 1) % 24 for v in card]
    night = sum(1 for hour in local_hours if 1 <= hour < 5)
    assert night < 0.02 * len(card)
    home = Counter(v["country"] for v in card)
    assert home["DE"] > 0.7 * len(card)


def test_normal_transfers_stay_with_the_bank_or_name_no_bank(run: Run) -> None:
    churners = {f["customer_id"] for f in run.facts["churner"]}
    for event in run.good:
        if event.value.get("kind") == "transfer_out" and event.key not in churners:
            assert event.value["counterparty_bank"] in ("CRMB", None)


# -- churn -------------------------------------------------------------------------------


def test_closures_are_planted_churners_who_first_drifted_away(run: Run) -> None:
    churn = {f["customer_id"]: f for f in run.facts["churner"]}
    closures = {e.key: e.event_time for e in run.good if e.value.get("type") == "account_closed"}
    closed = {c: f for c, f in churn.items() if f["closure"] not in (None, "dormant")}
    assert len(closed) >= 10
    assert set(closures) == set(closed)
    for customer, fact in closed.items():
        assert ts(fact["closure"]) == pytest.approx(closures[customer], abs=1e-3)
        events = run.by_customer[customer]
        requests = [e for e in events if e.value.get("type") == "closure_request"]
        assert requests and requests[0].event_time < closures[customer]
        # After asking to close, the customer is silent but for the closure itself.
        after = [e for e in events if e.event_time > requests[0].event_time]
        assert {e.value.get("type") for e in after} == {"account_closed"}
        outflows = [
            e for e in events
            if e.value.get("kind") == "transfer_out" and e.value["counterparty_bank"] not in ("CRMB", None)
        ]  # fmt: skip
        assert outflows, "a leaver moves money to another bank"
    for customer, fact in churn.items():
        if fact["closure"] == "dormant":
            silent = ts(fact["silent_from"])
            assert all(e.event_time < silent for e in run.by_customer[customer])


def test_churners_log_in_and_spend_less_and_complain_more_before_leaving(run: Run) -> None:
    before = during = complaints_before = complaints_during = 0
    for fact in run.facts["churner"]:
        drift, silent = ts(fact["drift_start"]), ts(fact["silent_from"])
        if drift - 7 * DAY < run.config.start_ts or silent > run.config.end_ts:
            continue
        for event in first_seen(run.by_customer[fact["customer_id"]]):
            kind = event.value.get("type") or event.value.get("kind")
            if drift - 7 * DAY <= event.event_time < drift:
                before += kind in ("login", "card_present", "card_online")
                complaints_before += kind == "complaint"
            elif silent - 7 * DAY <= event.event_time < silent:
                during += kind in ("login", "card_present", "card_online")
                complaints_during += kind == "complaint"
    assert before > 200
    assert during < 0.6 * before
    assert complaints_during > complaints_before + 3


# -- fraud -------------------------------------------------------------------------------


def test_fraud_is_confirmed_after_the_fraudulent_transactions_it_names(run: Run) -> None:
    position = {}
    transactions = {}
    for index, event in enumerate(run.events):
        if event.kind == "transactions" and isinstance(event.value, dict):
            position.setdefault(event.value["event_id"], index)
            transactions[event.value["event_id"]] = event
    episodes = run.facts["fraud_episode"]
    assert {e["type"] for e in episodes} == {"ato", "card_testing"}
    fraudulent = {}
    for episode in episodes:
        for transaction_id in episode["transaction_ids"]:
            transaction = transactions[transaction_id]
            assert transaction.key == episode["customer_id"]
            assert ts(episode["start"]) <= transaction.event_time <= ts(episode["end"])
            assert transaction.value["kind"] == "card_online"
            fraudulent[transaction_id] = episode
        amounts = [transactions[t].value["amount"] for t in episode["transaction_ids"]]
        if episode["type"] == "card_testing":
            assert sum(1 for amount in amounts if amount <= 2.0) >= 5
        else:
            assert min(amounts) >= 300
            assert {transactions[t].value["device_id"] for t in episode["transaction_ids"]} == {
                episode["device_id"]
            }
    confirmed = 0
    for index, event in enumerate(run.events):
        if isinstance(event.value, dict) and event.value.get("type") == "fraud_confirmed":
            transaction_id = event.value["transaction_id"]
            assert transaction_id in fraudulent
            assert position[transaction_id] < index
            assert event.event_time > transactions[transaction_id].event_time + HOUR
            confirmed += 1
    assert confirmed >= 0.8 * len(fraudulent)


def test_account_takeover_starts_with_a_password_reset_from_a_new_device(run: Run) -> None:
    for episode in run.facts["fraud_episode"]:
        if episode["type"] != "ato":
            continue
        events = run.by_customer[episode["customer_id"]]
        first_use = next(e for e in events if e.value.get("device_id") == episode["device_id"])
        assert first_use.value["type"] == "password_reset"
        assert first_use.event_time == pytest.approx(ts(episode["start"]), abs=1e-3)


def test_false_alarms_concern_genuine_transactions(run: Run) -> None:
    fraudulent = {t for e in run.facts["fraud_episode"] for t in e["transaction_ids"]}
    genuine = {e.value["event_id"] for e in run.good if e.kind == "transactions"} - fraudulent
    alarms = [
        e.value["transaction_id"] for e in run.good if e.value.get("type") == "fraud_false_alarm"
    ]
    assert alarms and set(alarms) <= genuine


# -- offers ------------------------------------------------------------------------------


def test_hidden_needs_drive_acceptance_and_conversions_add_the_product(run: Run) -> None:
    needs = {f["customer_id"]: set(f["needs"]) for f in run.facts["offer_needs"]}
    assert len(needs) == run.config.customers
    shown = Counter()
    accepted = Counter()
    for event in first_seen(run.good):
        offer = event.value.get("offer_id")
        if event.kind == "interactions" and event.value["type"] in (
            "offer_impression",
            "offer_accepted",
        ):
            needed = offer in needs[event.key]
            (shown if event.value["type"] == "offer_impression" else accepted)[needed] += 1
    assert accepted[True] / shown[True] > 5 * accepted[False] / shown[False]
    for event in run.good:
        if event.value.get("type") == "offer_converted" and not event.value["offer_id"].startswith(
            "retention"
        ):
            later = [
                e for e in run.by_customer[event.key]
                if e.kind == "customers" and e.event_time > event.event_time
            ]  # fmt: skip
            if later:
                assert event.value["offer_id"] in later[0].value["products"]


def test_the_public_acceptance_chance_is_the_one_the_answers_follow(run: Run) -> None:
    """Expected accepts from `acceptance_chance` match the accepts the run produced."""
    world = World(run.config)
    customers = {c.cid: c for c in map(world.customer, range(run.config.customers))}
    expected = 0.0
    observed = 0
    for cid, events in run.by_customer.items():
        consent = True
        for event in first_seen(sorted(events, key=lambda e: e.event_time)):
            if event.kind == "customers":
                consent = event.value["marketing_consent"]
            elif event.kind == "interactions" and event.value["type"] == "offer_impression":
                c = customers[cid]
                leaving = leaving_on(c, event.event_time, run.config.start_ts)
                expected += acceptance_chance(
                    event.value["offer_id"], c.needs, c.segment, consent, leaving
                )
            elif event.kind == "interactions" and event.value["type"] == "offer_accepted":
                observed += 1
    # Poisson-binomial noise, and a few answers withheld while a product change is pending.
    assert expected > 30
    assert (
        expected - 4 * expected**0.5 - 0.05 * expected <= observed <= expected + 4 * expected**0.5
    )


def test_acceptance_follows_needs_and_leaving() -> None:
    needed = acceptance_chance("savings", ("savings",), "mass", True, False)
    assert needed > 10 * acceptance_chance("savings", (), "mass", True, False)
    assert acceptance_chance("savings", ("savings",), "mass", True, True) < needed / 10
    assert acceptance_chance("savings", ("savings",), "mass", False, False) < needed
    retention = "retention_fee_waiver"
    assert acceptance_chance(retention, (), "mass", True, True) > acceptance_chance(
        retention, (), "mass", True, False
    )


# -- malformed records -------------------------------------------------------------------


def classify(event: SimEvent, announced: set[str]) -> str:
    """Why a raw record is bad, judged independently of how it was made."""
    settings = load_settings()
    raw = event.value
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return "non_utf8"
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return "malformed_json"
    try:
        ADAPTERS[event.kind].validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors()
        if any(error["type"] == "missing" for error in errors):
            return "missing_field"
        if any(error["loc"] == ("amount",) and error["type"] == "greater_than" for error in errors):
            return "negative_amount"
        return "wrong_type"
    if event.kind == "transactions" and value["amount"] > settings.engine.max_amount:
        return "absurd_amount"
    if event.kind == "transactions" and value["currency"] not in settings.bank.fx_rates:
        return "unknown_currency"
    if value["customer_id"] not in announced:
        return "unknown_customer"
    return "looks fine"


def test_malformed_records_are_broken_in_the_way_the_summary_counts(run: Run) -> None:
    reasons = Counter(classify(event, set(run.records)) for event in run.bad)
    assert reasons == Counter(run.summary["bad_records"])
    assert len(reasons) == 8
    assert all(isinstance(e.value, dict) for e in simulate(SMALL))


# -- ground truth ------------------------------------------------------------------------


def test_ground_truth_streamed_to_a_file_equals_the_one_kept_in_memory(tmp_path: Path) -> None:
    path = tmp_path / "truth" / "gt.jsonl"
    streamed = GroundTruth(path)
    kept = GroundTruth()
    assert list(simulate(SMALL, streamed)) == list(simulate(SMALL, kept))
    facts = read_ground_truth(path)
    assert facts == kept.facts
    assert facts[-1]["fact"] == "summary"
    assert facts[-1]["events"]["customers"] == SMALL.customers
    kept.write(tmp_path / "copy.jsonl")
    assert read_ground_truth(tmp_path / "copy.jsonl") == facts


def test_a_run_stopped_early_only_claims_what_was_emitted(run: Run) -> None:
    truth = GroundTruth()
    with closing(simulate(RUN, truth)) as events:
        emitted = list(islice(events, len(run.events) // 2))
    ids = {e.value["event_id"] for e in emitted if isinstance(e.value, dict)}
    episodes = [f for f in truth.facts if f["fact"] == "fraud_episode"]
    assert 0 < len(episodes) < len(run.facts["fraud_episode"])
    for episode in episodes:
        assert set(episode["transaction_ids"]) <= ids
    closures = {
        e.key
        for e in emitted
        if isinstance(e.value, dict) and e.value.get("type") == "account_closed"
    }
    claimed = {
        f["customer_id"] for f in truth.facts
        if f["fact"] == "churner" and f["closure"] not in (None, "dormant")
    }  # fmt: skip
    assert claimed == closures
    assert 0 < len(claimed) < run.summary["churners"]["closed"]
    assert ts(truth.summary["emitted_until"]) >= max(e.event_time for e in emitted)


# -- Kafka edge --------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept = 0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept += 1
        self.now += seconds


@pytest.mark.parametrize("rate", [5_000, 20_000, 50_000])
def test_pacer_holds_the_rate_when_the_source_is_fast(rate: int) -> None:
    clock = FakeClock()
    pacer = Pacer(rate, clock=clock, sleep=clock.sleep)
    for _ in range(rate * 3):
        pacer.take()
        clock.now += 2e-6  # the cost of producing one event
    assert rate * 3 / clock.now == pytest.approx(rate, rel=0.01)
    assert clock.slept > 0


def test_pacer_catches_up_only_a_short_burst_after_a_stall() -> None:
    clock = FakeClock()
    pacer = Pacer(10_000, burst_seconds=0.1, clock=clock, sleep=clock.sleep)
    clock.now = 5.0  # the source stalled for five seconds
    sent = 0
    while clock.now < 6.0:
        pacer.take()
        sent += 1
    assert sent == pytest.approx(10_000 * 1.1, rel=0.01)


def test_produce_sends_each_event_to_its_topic_keyed(broker, make_topics) -> None:
    topics = make_topics(partitions=1)
    settings = settings_for(broker, None, topics)
    events = list(simulate(SimulationConfig(customers=20, days=2, seed=1, bad_fraction=0.05)))
    before = time.time()
    stats = produce(events, settings, rate=None, progress=False)
    assert stats.produced == stats.delivered == len(events) and stats.failed == 0

    consumer = Consumer({"bootstrap.servers": broker.endpoint, "group.id": "sim-reader"})
    consumer.assign([TopicPartition(getattr(topics, kind), 0, 0) for kind in KINDS])
    received: dict[str, list[tuple[bytes, bytes, int]]] = {kind: [] for kind in KINDS}
    by_topic = {getattr(topics, kind): kind for kind in KINDS}

    def all_received() -> bool:
        for message in consumer.consume(500, timeout=0.2):
            if message.error() is None:
                received[by_topic[message.topic()]].append(
                    (message.key(), message.value(), message.timestamp()[1])
                )
        return sum(map(len, received.values())) >= len(events)

    try:
        wait_for(all_received, timeout=30, what=f"{len(events)} simulated events on the broker")
    finally:
        consumer.close()
    for kind in KINDS:
        sent = [e for e in events if e.kind == kind]
        got = received[kind]
        assert [key for key, _, _ in got] == [e.key.encode() for e in sent]
        assert [value for _, value, _ in got] == [
            e.value if isinstance(e.value, bytes) else orjson.dumps(e.value) for e in sent
        ]
        # Stamped when sent, not with the (simulated) event time.
        assert all(stamp / 1000 >= before - 1 for _, _, stamp in got)


# -- command -----------------------------------------------------------------------------


def _cli() -> typer.Typer:
    app = typer.Typer()
    app.command()(simulate_command)
    return app


def test_dry_run_writes_every_event_and_the_ground_truth(tmp_path: Path) -> None:
    out, truth = tmp_path / "events.jsonl", tmp_path / "gt.jsonl"
    result = CliRunner().invoke(
        _cli(),
        ["--customers", "30", "--days", "3", "--seed", "9", "--bad-fraction", "0.02", "--dry-run",
         "--output", str(out), "--ground-truth", str(truth), "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    expected = list(simulate(SimulationConfig(customers=30, days=3, seed=9, bad_fraction=0.02)))
    assert len(lines) == len(expected)
    assert [line.get("value") for line in lines] == [
        None if isinstance(e.value, bytes) else e.value for e in expected
    ]
    assert any("raw_base64" in line for line in lines)
    summary = read_ground_truth(truth)[-1]
    assert summary["fact"] == "summary" and summary["customers"] == 30


def test_ctrl_c_stops_between_events_and_everything_taken_is_written(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    taken = []

    def interrupted_run(config: SimulationConfig, truth: GroundTruth) -> Iterator[SimEvent]:
        for number, event in enumerate(simulate(config, truth)):
            if number == 50:
                os.kill(os.getpid(), signal.SIGINT)
            taken.append(event)
            yield event

    monkeypatch.setattr(command_module, "simulate", interrupted_run)
    out = tmp_path / "events.jsonl"
    result = CliRunner().invoke(
        _cli(),
        ["--customers", "30", "--days", "3", "--dry-run", "--output", str(out),
         "--ground-truth", str(tmp_path / "gt.jsonl"), "--no-progress"],
    )  # fmt: skip
    assert result.exit_code == 130, result.output
    assert 50 < len(taken) < 60
    assert len(out.read_bytes().splitlines()) == len(taken)
    summary = read_ground_truth(tmp_path / "gt.jsonl")[-1]
    assert sum(summary["events"].values()) == len(taken)


def test_command_reports_bad_configuration_with_exit_code_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CRMSTREAM_KAFKA__SECURITY_PROTOCOL", "CARRIER_PIGEON")
    result = CliRunner().invoke(_cli(), ["--ground-truth", str(tmp_path / "gt.jsonl")])
    assert result.exit_code == 2
    assert "kafka.security_protocol" in result.output
    monkeypatch.delenv("CRMSTREAM_KAFKA__SECURITY_PROTOCOL")
    monkeypatch.setenv("CRMSTREAM_KAFKA__BOOTSTRAP_SERVERS", "")
    result = CliRunner().invoke(_cli(), ["--ground-truth", str(tmp_path / "gt.jsonl")])
    assert result.exit_code == 2
    assert "bootstrap_servers is empty" in result.output
