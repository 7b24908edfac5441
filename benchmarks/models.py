"""Do the online models earn their place? Measured against the simulator's planted truth.

The simulator plants what the models are meant to find (churners drifting away, fraud
episodes with known transaction ids, hidden offer needs), so the engine's models can be
scored against facts rather than against the labels the stream happens to reveal. The
engine runs in-process, in the order events arrive, through its own steps: each record's
JSON bytes through the real decoder (`flows.engine.make_decoder`), `ProfileLogic.apply`
per customer, `ModelShard.handle` per shard (`shard_of`), `DecisionLogic.decide` per
customer, exactly as `flows/engine.py` wires them. Nothing of the engine is re-implemented
here; the harness only watches what the steps emit and compares it with simple baselines:

- churn: prequential ROC AUC of the churn model's (prediction, label) pairs, as the
  decisions emit them, against recency alone at the same snapshots; and per customer at a
  fixed moment against whether the customer closed within the horizon after it;
- anomalies: precision and recall of suspicious-transaction alerts against the fraudulent
  transaction ids, against a fixed amount threshold and plain River HalfSpaceTrees given
  the same budget;
- next-best-offer: on held-back customers (their offer answers are never learned), the
  simulator's own acceptance chance of the engine's choice, of a random eligible offer
  and of the most popular eligible offer; and an inverse-propensity estimate from the
  logged decisions, checked against the truth on the same contexts;
- the cost of each model per event.

The simulator is run twice with the same seed (it is deterministic): once to learn the
truth and the event count, once to feed the engine.

`python -m benchmarks.models` writes benchmarks/reports/models.{json,md};
`python -m benchmarks.models --quick` is a small run for the smoke test (< 60 s);
`--render models.json` rewrites the Markdown from a report without running anything.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pickle
import statistics
import sys
import time
import zlib
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from bytewax.connectors.kafka import KafkaSourceMessage
from river import anomaly, bandit, compose, preprocessing

from benchmarks.machine import git_revision, machine_info, versions
from crmstream.settings import Settings, load_settings
from crmstream.simulator import (
    GroundTruth,
    SimEvent,
    SimulationConfig,
    acceptance_chance,
    leaving_on,
    simulate,
)
from crmstream.simulator.population import Customer, World
from flows.engine import EngineSteps
from online_models.calibration import RollingQuantile
from online_models.shard import ModelShard, shard_of
from operators.decisions import DecisionLogic, DecisionState
from operators.offers import OfferMemory, choose_offer
from operators.profile import CustomerState
from operators.reasons import churn_reasons
from operators.records import Event, Output, Scored, ScoreRequest

DAY = 86400.0
ROOT = Path(__file__).resolve().parent.parent
REPORTS = ROOT / "benchmarks" / "reports"
CARD_PAYMENTS = frozenset({"card_present", "card_online"})
BOOTSTRAP_ROUNDS = 200


@dataclass(frozen=True)
class Size:
    """Which simulated bank; the seeds make every figure reproducible."""

    customers: int
    days: float
    seed: int = 2026
    holdout_share: float = 0.2
    bootstrap_seed: int = 7
    timing_samples: int = 3000


FULL = Size(customers=10_000, days=90)
QUICK = Size(customers=220, days=33, timing_samples=300)


def _held_back(customer_id: str, seed: int, share: float) -> bool:
    """A fixed, seed-dependent share of customers whose offer answers are never learned."""
    return zlib.crc32(f"holdout|{seed}|{customer_id}".encode()) % 10_000 < share * 10_000


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, tz=timezone.utc).isoformat(timespec="seconds")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- ground truth


@dataclass
class Truth:
    """The simulator's facts, keyed the way the evaluation looks them up."""

    summary: dict[str, Any]
    events: int
    fraud_ids: dict[str, str] = field(default_factory=dict)  # transaction id -> episode type
    episodes: list[dict[str, Any]] = field(default_factory=list)
    closures: dict[str, float] = field(default_factory=dict)  # customer -> account_closed
    went_silent: dict[str, float] = field(default_factory=dict)  # churner -> silent_from
    churners: int = 0


def collect_truth(config: SimulationConfig) -> Truth:
    """Run the simulator once without the engine: the facts and how many events there are."""
    truth = GroundTruth()
    events = sum(1 for _ in simulate(config, truth=truth))
    result = Truth(summary=truth.summary, events=events)
    for fact in truth.facts:
        kind = fact["fact"]
        if kind == "fraud_episode":
            result.episodes.append(fact)
            for transaction_id in fact["transaction_ids"]:
                result.fraud_ids[transaction_id] = fact["type"]
        elif kind == "churner":
            result.churners += 1
            result.went_silent[fact["customer_id"]] = datetime.fromisoformat(
                fact["silent_from"]
            ).timestamp()
            closure = fact["closure"]
            if closure not in (None, "dormant"):
                result.closures[fact["customer_id"]] = datetime.fromisoformat(closure).timestamp()
    return result


class HiddenAcceptance:
    """The simulator's own acceptance chance of an offer, for a customer at a moment.

    The chance is the simulator's public `acceptance_chance` (hidden needs, segment taste,
    consent, and whether the customer is leaving that day, `leaving_on`), so the figure is
    the simulator's and not a copy of it. The customers are rebuilt from the run's seed: a
    customer is drawn from its own random stream, so it is the same customer the run
    simulated.
    """

    def __init__(self, config: SimulationConfig, keep: Callable[[str], bool]) -> None:
        world = World(config)
        self.start = config.start_ts
        self.customers: dict[str, Customer] = {}
        for index in range(config.customers):
            customer = world.customer(index)
            if keep(customer.cid):
                self.customers[customer.cid] = customer

    def chance(self, customer_id: str, offer_id: str, at: float, consent: bool) -> float:
        c = self.customers[customer_id]
        leaving = leaving_on(c, at, self.start)
        return acceptance_chance(offer_id, c.needs, c.segment, consent, leaving)


# --------------------------------------------------------------------------- statistics


def roc_auc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Probability that a positive outranks a negative (ties count half); nan if one class.

    Weights let the cluster bootstrap resample customers without re-sorting.
    """
    order = np.argsort(scores, kind="mergesort")
    return _RankedAuc(scores[order], labels[order]).auc(None if weights is None else weights[order])


class _RankedAuc:
    """Scores sorted once; the AUC for any weighting of the rows is then linear time."""

    def __init__(self, sorted_scores: np.ndarray, sorted_labels: np.ndarray) -> None:
        _, self.group = np.unique(sorted_scores, return_inverse=True)
        self.groups = int(self.group.max()) + 1 if len(self.group) else 0
        self.positive = sorted_labels.astype(bool)

    def auc(self, weights: np.ndarray | None = None) -> float:
        w = np.ones(len(self.group)) if weights is None else weights
        pos = np.bincount(self.group, weights=w * self.positive, minlength=self.groups)
        neg = np.bincount(self.group, weights=w * ~self.positive, minlength=self.groups)
        total_pos, total_neg = pos.sum(), neg.sum()
        if total_pos == 0 or total_neg == 0:
            return float("nan")
        below = np.cumsum(neg) - neg
        return float((pos * (below + 0.5 * neg)).sum() / (total_pos * total_neg))


class ClusterBootstrap:
    """Resamples customers (not rows): rows of one customer are not independent.

    Only each round's customer counts are kept; a round's row weights are expanded when
    used, so many rounds over a million rows fit in memory.
    """

    def __init__(self, clusters: np.ndarray, seed: int, rounds: int = BOOTSTRAP_ROUNDS) -> None:
        _, self.cluster = np.unique(clusters, return_inverse=True)
        n = int(self.cluster.max()) + 1 if len(self.cluster) else 0
        rng = np.random.default_rng(seed)
        self.counts = [
            np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(rounds if n else 0)
        ]

    def rounds(self) -> Iterable[np.ndarray]:
        for counts in self.counts:
            yield counts[self.cluster].astype(float)

    @staticmethod
    def interval(values: Sequence[float]) -> list[float] | None:
        finite = [v for v in values if math.isfinite(v)]
        if len(finite) < 10:
            return None
        low, high = np.percentile(finite, [2.5, 97.5])
        return [round(float(low), 4), round(float(high), 4)]

    def aucs(self, scores: dict[str, np.ndarray], labels: np.ndarray) -> dict[str, Any]:
        """AUC of each score, with 95 % intervals and the paired differences to the first."""
        ranked = {}
        for name, values in scores.items():
            order = np.argsort(values, kind="mergesort")
            ranked[name] = (_RankedAuc(values[order], labels[order]), order)
        point = {name: r.auc() for name, (r, _) in ranked.items()}
        samples: dict[str, list[float]] = {name: [] for name in scores}
        for w in self.rounds():
            for name, (r, order) in ranked.items():
                samples[name].append(r.auc(w[order]))
        first = next(iter(scores))
        out: dict[str, Any] = {}
        for name in scores:
            entry: dict[str, Any] = {
                "roc_auc": _round(point[name]),
                "ci95": self.interval(samples[name]),
            }
            if name != first:
                diffs = [a - b for a, b in zip(samples[first], samples[name], strict=True)]
                entry[f"{first}_minus_this"] = _round(point[first] - point[name])
                entry[f"{first}_minus_this_ci95"] = self.interval(diffs)
            out[name] = entry
        return out

    def means(self, values: dict[str, np.ndarray]) -> dict[str, Any]:
        """Means with 95 % intervals and the paired differences to the first."""
        first = next(iter(values))
        samples: dict[str, list[float]] = {name: [] for name in values}
        diffs: dict[str, list[float]] = {name: [] for name in values}
        for w in self.rounds():
            total = w.sum()
            for name, v in values.items():
                samples[name].append(float((w * v).sum() / total))
                diffs[name].append(float((w * (values[first] - v)).sum() / total))
        out: dict[str, Any] = {}
        for name, v in values.items():
            entry: dict[str, Any] = {
                "mean": _round(float(v.mean()) if len(v) else math.nan, 5),
                "ci95": self.interval(samples[name]),
            }
            if name != first:
                d = values[first] - v
                entry[f"{first}_minus_this"] = _round(float(d.mean()) if len(d) else math.nan, 5)
                entry[f"{first}_minus_this_ci95"] = self.interval(diffs[name])
            out[name] = entry
        return out


def _round(value: float | None, digits: int = 4) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, digits)


def _percentiles(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "mean": None, "p50": None, "p99": None}
    data = np.asarray(values, dtype=float)
    return {
        "n": len(data),
        "mean": round(float(data.mean()), 2),
        "p50": round(float(np.percentile(data, 50)), 2),
        "p99": round(float(np.percentile(data, 99)), 2),
    }


# --------------------------------------------------------------------------- churn


class ChurnWatch:
    """Churn predictions and their labels, as the engine pairs them, with recency beside.

    The model's pairs are the `("churn", prediction, label)` quality pairs the decisions
    emit. The recency baseline needs the snapshot's features, so the harness also keeps
    each snapshot's `days_since_transaction` and `days_since_login` (and the risk the model
    gave it) until the profile resolves its label; the two pairings are checked to agree.
    """

    def __init__(self, fixed_moment: float, horizon: float) -> None:
        self.engine_pairs: list[tuple[float, bool]] = []
        self.open: dict[tuple[str, float], tuple[float, float, float, bool]] = {}
        self.customer: list[str] = []
        self.taken = array("d")
        self.risk = array("d")
        self.since_transaction = array("d")
        self.since_login = array("d")
        self.label = array("b")
        self.warm = array("b")
        self.fixed_moment = fixed_moment
        self.horizon = horizon
        self.latest_risk: dict[str, float] = {}
        self.at_fixed_moment: dict[str, tuple[float, float | None, bool]] | None = None
        self.warm_from: float | None = None

    def observe(self, request: ScoreRequest, scored: Scored, output: Output, warm: bool) -> None:
        """`warm`: whether the shard's churn model answered from what it learned, not the prior."""
        customer = request.customer_id
        if request.churn_snapshot is not None:
            x = request.churn_features
            self.open[customer, request.churn_snapshot] = (
                scored.churn_risk,
                x["days_since_transaction"],
                x["days_since_login"],
                warm,
            )
        churn_labels = [label for model, _, label in request.labels if model == "churn"]
        for taken, label in zip(request.resolved_snapshots, churn_labels, strict=True):
            kept = self.open.pop((customer, taken), None)
            if kept is None:
                continue
            self.customer.append(customer)
            self.taken.append(taken)
            self.risk.append(kept[0])
            self.since_transaction.append(kept[1])
            self.since_login.append(kept[2])
            self.warm.append(kept[3])
            self.label.append(bool(label))
        self.engine_pairs.extend((p, y) for model, p, y in output.quality if model == "churn")
        self.latest_risk[customer] = scored.churn_risk
        if warm and self.warm_from is None:
            self.warm_from = request.event.event_time

    def freeze(self, customers: dict[str, CustomerState]) -> None:
        """What the engine shows at the fixed moment: latest risk, last activity, closed."""
        self.at_fixed_moment = {
            cid: (self.latest_risk[cid], state.last_activity, state.closed_at is not None)
            for cid, state in customers.items()
            if cid in self.latest_risk
        }

    def report(self, truth: Truth, seed: int) -> dict[str, Any]:
        label = np.frombuffer(self.label, dtype=np.int8).astype(bool)
        risk = np.frombuffer(self.risk, dtype=float)
        since_tx = np.frombuffer(self.since_transaction, dtype=float)
        since_login = np.frombuffer(self.since_login, dtype=float)
        taken = np.frombuffer(self.taken, dtype=float)
        mine = sorted(zip(risk.tolist(), label.tolist(), strict=True))
        engine = sorted(self.engine_pairs)
        engine_scores = np.array([p for p, _ in self.engine_pairs])
        engine_labels = np.array([y for _, y in self.engine_pairs], dtype=bool)
        result: dict[str, Any] = {
            "labelled_snapshots": len(label),
            "positives": int(label.sum()),
            "engine_quality_pairs": len(engine),
            "engine_quality_positives": int(engine_labels.sum()) if len(engine) else 0,
            "pairing_matches_engine_quality_pairs": mine == engine,
            "model_auc_from_engine_quality_pairs": _round(roc_auc(engine_scores, engine_labels))
            if len(engine)
            else None,
        }
        scores = {
            "model": risk,
            "days_since_last_activity": np.minimum(since_tx, since_login),
            "days_since_transaction": since_tx,
            "days_since_login": since_login,
        }
        bootstrap = ClusterBootstrap(np.array(self.customer), seed)
        result["all_snapshots"] = bootstrap.aucs(scores, label) if len(label) else {}
        warm = np.frombuffer(self.warm, dtype=np.int8).astype(bool)
        result["first_warm_prediction"] = _iso(self.warm_from) if self.warm_from else None
        if warm.any():
            sub = ClusterBootstrap(np.array(self.customer)[warm], seed)
            result["warm_predictions"] = {
                "labelled_snapshots": int(warm.sum()),
                "positives": int(label[warm].sum()),
                "first_snapshot": _iso(float(taken[warm].min())),
                **sub.aucs({k: v[warm] for k, v in scores.items()}, label[warm]),
                "note": "snapshots scored after the shard's churn model had learned both "
                "outcomes often enough to stop answering its prior",
            }
        best_baseline = max(
            ("days_since_last_activity", "days_since_transaction", "days_since_login"),
            key=lambda k: result["all_snapshots"].get(k, {}).get("roc_auc") or 0.0,
        )
        result["best_recency_baseline"] = best_baseline
        result["at_horizon"] = self._at_horizon(truth, seed)
        return result

    def _at_horizon(self, truth: Truth, seed: int) -> dict[str, Any]:
        """Per customer: the risk shown at the fixed moment vs closing within the horizon."""
        if self.at_fixed_moment is None:
            return {"note": "the run never reached the fixed moment"}
        t0, horizon = self.fixed_moment, self.horizon
        rows = [
            (cid, risk, last)
            for cid, (risk, last, closed) in self.at_fixed_moment.items()
            if not closed and truth.closures.get(cid, math.inf) > t0
        ]
        if not rows:
            return {"note": "no open customer at the fixed moment"}
        customers = np.array([cid for cid, _, _ in rows])
        risk = np.array([r for _, r, _ in rows])
        recency = np.array([(t0 - last) / DAY if last is not None else 365.0 for *_, last in rows])
        closed = np.array([t0 < truth.closures.get(c, math.inf) <= t0 + horizon for c in customers])
        silent = np.array(
            [
                closed[i] or t0 < truth.went_silent.get(c, math.inf) <= t0 + horizon
                for i, c in enumerate(customers)
            ]
        )
        scores = {"model": risk, "days_since_last_activity": recency}
        bootstrap = ClusterBootstrap(customers, seed)
        return {
            "fixed_moment": _iso(t0),
            "horizon_days": horizon / DAY,
            "customers": len(rows),
            "closed_within_horizon": int(closed.sum()),
            "label_closed": bootstrap.aucs(scores, closed),
            "closed_or_went_silent_within_horizon": int(silent.sum()),
            "label_closed_or_silent": bootstrap.aucs(scores, silent),
            "note": "model = the churn risk the profile held at the fixed moment (from the "
            "customer's latest event before it); recency is measured at the moment itself",
        }


# --------------------------------------------------------------------------- anomalies


class PlainHalfSpaceTrees:
    """River's HalfSpaceTrees on the features the profile hands the anomaly model.

    One per model shard, as the engine keeps them, with the engine's detector settings;
    score, then learn every transaction (no quarantine, no verdicts, no rules). The score
    is ranked among the shard's last 5,000 scores, the calibration the engine's alerts use.
    """

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.models: dict[str, tuple[Any, RollingQuantile]] = {}

    def rank(self, shard: str, x: dict[str, float]) -> float:
        entry = self.models.get(shard)
        if entry is None:
            model = compose.Pipeline(
                preprocessing.MinMaxScaler(),
                anomaly.HalfSpaceTrees(n_trees=10, height=8, window_size=250, seed=self.seed),
            )
            entry = self.models[shard] = (model, RollingQuantile(window=5000, warmup=500))
        model, ranks = entry
        score = model.score_one(x)
        model.learn_one(x)
        rank = ranks.rank(score)
        ranks.learn_one(score)
        return rank


_ANOMALY_METHODS = ("engine", "amount_threshold", "plain_half_space_trees")


class AnomalyWatch:
    """Per transaction: amount, kind, truth, the engine's judgement and the baseline's rank.

    Every method is then a mask over the same transactions, compared twice. As flags on
    transactions: each baseline flags as many as the engine judged suspicious (alerted, or
    held back by the customer's alert cool-down). As alerts to the RM: every method's flags
    go through the engine's per-customer cool-down, and each baseline is given as many
    alerts as the engine sent (the alert budget as the engine spent it).
    """

    def __init__(
        self, truth: Truth, budget: float, min_amount: float, cooldown: float, seed: int
    ) -> None:
        self.truth = truth
        self.budget = budget
        self.min_amount = min_amount
        self.cooldown = cooldown
        self.customer = array("i")
        self.customer_index: dict[str, int] = {}
        self.at = array("d")
        self.engine_judged = array("b")  # alerted or held back by the cool-down
        self.rank_qualified = 0  # anomaly score at or above the alert rank
        self.rank_and_amount_qualified = 0  # ... and at least the minimum amount
        self.alertable = 0  # transactions of at least the minimum amount
        self.amount = array("d")
        self.card = array("b")
        self.engine_flag = array("b")  # 0 none, 1 rule, 2 model
        self.plain_rank = array("f")
        self.fraud_index: dict[str, int] = {}  # fraudulent transaction id -> row
        self.plain = PlainHalfSpaceTrees(seed)
        self.plain_seconds = 0.0

    def observe(self, request: ScoreRequest, scored: Scored, output: Output, shard: str) -> None:
        if request.anomaly_features is None:
            return
        event = request.event
        row = len(self.amount)
        if event.event_id in self.truth.fraud_ids:
            self.fraud_index[event.event_id] = row
        body = event.body
        score = scored.anomaly_score
        alertable = body["amount"] >= self.min_amount
        self.alertable += alertable
        if score is not None and score >= 1.0 - self.budget:
            self.rank_qualified += 1
            self.rank_and_amount_qualified += alertable
        self.amount.append(body["amount"])
        self.card.append(body["kind"] in CARD_PAYMENTS)
        flag = 0
        for alert in output.alerts:
            if alert.type == "suspicious_transaction":
                flag = 1 if alert.reasons and alert.reasons[0].startswith("rule ") else 2
        self.engine_flag.append(flag)
        self.engine_judged.append(flag > 0 or "suspicious_transaction" in output.cooled_down)
        self.customer.append(
            self.customer_index.setdefault(event.customer_id, len(self.customer_index))
        )
        self.at.append(event.event_time)
        started = time.perf_counter()
        self.plain_rank.append(self.plain.rank(shard, request.anomaly_features))
        self.plain_seconds += time.perf_counter() - started

    def _episodes(self, mask: np.ndarray) -> dict[str, Any]:
        """Per episode type: caught at all, and fraudulent payments before the first flag."""
        out: dict[str, Any] = {}
        for kind in ("ato", "card_testing"):
            before: list[int] = []
            caught = 0
            for episode in self.truth.episodes:
                rows = [
                    self.fraud_index[t] for t in episode["transaction_ids"] if t in self.fraud_index
                ]
                if episode["type"] != kind or not rows:
                    continue
                first = next((i for i, r in enumerate(rows) if mask[r]), None)
                caught += first is not None
                before.append(len(rows) if first is None else first)
            out[kind] = {
                "episodes": len(before),
                "episodes_caught": caught,
                "median_fraudulent_payments_before_first_flag": statistics.median(before)
                if before
                else None,
            }
        return out

    def _scores(self, mask: np.ndarray) -> dict[str, Any]:
        """Precision and recall over transactions, by episode type, by amount, by episode.

        Card-testing bursts are many tiny payments and account takeovers a few large
        ones, so transaction counts alone would be mostly about card testing.
        """
        flags = int(mask.sum())
        fraud_rows = np.fromiter(self.fraud_index.values(), dtype=np.int64)
        kinds = np.array([self.truth.fraud_ids[t] for t in self.fraud_index])
        amount = np.frombuffer(self.amount, dtype=float)
        hit = mask[fraud_rows] if len(fraud_rows) else np.zeros(0, dtype=bool)
        hits = int(hit.sum())
        by_type = {}
        for kind in ("ato", "card_testing"):
            of_kind = kinds == kind
            by_type[kind] = _round(float(hit[of_kind].mean())) if of_kind.any() else None
        fraud_amount = float(amount[fraud_rows].sum()) if len(fraud_rows) else 0.0
        return {
            "flags": flags,
            "flagged_share_of_transactions": _round(flags / len(mask), 5) if len(mask) else None,
            "true_positives": hits,
            "precision": _round(hits / flags) if flags else None,
            "recall": _round(hits / len(fraud_rows)) if len(fraud_rows) else None,
            "recall_by_episode_type": by_type,
            "fraud_amount_recall": _round(float(amount[fraud_rows][hit].sum()) / fraud_amount)
            if fraud_amount
            else None,
            "episodes": self._episodes(mask),
        }

    @staticmethod
    def _top(scores: np.ndarray, k: int) -> np.ndarray:
        """The k highest scores (earliest first among equals) as a mask."""
        mask = np.zeros(len(scores), dtype=bool)
        if k:
            mask[np.argsort(-scores, kind="mergesort")[:k]] = True
        return mask

    def _cool_down(self, flags: np.ndarray) -> np.ndarray:
        """The flags that become alerts under the engine's per-customer cool-down."""
        alerts = np.zeros(len(flags), dtype=bool)
        customers, times = self.customer, self.at
        last: dict[int, float] = {}
        for row in np.flatnonzero(flags).tolist():
            customer, at = customers[row], times[row]
            previous = last.get(customer)
            if previous is not None and 0 <= at - previous < self.cooldown:
                continue
            last[customer] = at
            alerts[row] = True
        return alerts

    def _top_alerts(self, scores: np.ndarray, alerts: int) -> np.ndarray:
        """Alerts from the fewest highest scores whose flags, cooled down, make `alerts`."""
        low, high = 0, len(scores)
        while low < high:
            middle = (low + high) // 2
            if self._cool_down(self._top(scores, middle)).sum() < alerts:
                low = middle + 1
            else:
                high = middle
        return self._cool_down(self._top(scores, low))

    def report(self) -> dict[str, Any]:
        engine = np.frombuffer(self.engine_flag, dtype=np.int8)
        alerted = engine > 0
        judged = np.frombuffer(self.engine_judged, dtype=np.int8).astype(bool)
        amount = np.frombuffer(self.amount, dtype=float)
        card = np.frombuffer(self.card, dtype=np.int8).astype(bool)
        rank = np.frombuffer(self.plain_rank, dtype=np.float32).astype(float)
        card_amount = np.where(card, amount, -1.0)
        fraud_rows = np.fromiter(self.fraud_index.values(), dtype=np.int64)
        by_source = {}
        for code, source in ((1, "rule"), (2, "model")):
            alerts = int((engine == code).sum())
            hits = int((engine[fraud_rows] == code).sum()) if len(fraud_rows) else 0
            by_source[source] = {
                "alerts": alerts,
                "true_positives": hits,
                "precision": _round(hits / alerts) if alerts else None,
            }
        n = len(engine)
        alert_count, judged_count = int(alerted.sum()), int(judged.sum())
        threshold_flags = self._top(card_amount, judged_count)
        threshold_alerts = self._top_alerts(card_amount, alert_count)
        cooldown_minutes = f"{self.cooldown / 60:g}-minute"
        return {
            "transactions": n,
            "fraudulent_transactions": len(fraud_rows),
            "fraudulent_transactions_by_type": dict(
                Counter(self.truth.fraud_ids[t] for t in self.fraud_index)
            ),
            "cooldown_seconds": self.cooldown,
            "budget_spent": {
                "configured_budget": self.budget,
                "score_at_or_above_alert_rank": _round(self.rank_qualified / n, 5) if n else None,
                "and_at_least_min_amount": _round(self.rank_and_amount_qualified / n, 5)
                if n
                else None,
                "model_alerts_after_cool_down": _round(by_source["model"]["alerts"] / n, 5)
                if n
                else None,
                "alertable_share_of_transactions": _round(self.alertable / n, 5) if n else None,
                "of_alertable_at_or_above_alert_rank": _round(
                    self.rank_and_amount_qualified / self.alertable, 5
                )
                if self.alertable
                else None,
                "of_alertable_model_alerts_after_cool_down": _round(
                    by_source["model"]["alerts"] / self.alertable, 5
                )
                if self.alertable
                else None,
                "note": "shares of all transactions, then of alertable ones (at least "
                "alerts.suspicious_min_amount): how the engine's anomaly alerts fall short "
                "of (or exceed) the configured budget, step by step",
            },
            "alerts": {
                "note": f"alerts to the RM: every method's flags pass the same {cooldown_minutes} "
                "per-customer cool-down the engine applies, and each baseline gets as many "
                "alerts as the engine sent; precision is the share of alerts on a fraudulent "
                "payment, and what counts is how many episodes are caught and how early",
                "engine": {
                    **self._scores(alerted),
                    "by_source": by_source,
                    "note": "suspicious_transaction alerts (rules and model, after the minimum "
                    "amount and the per-customer cool-down)",
                },
                "amount_threshold": {
                    **self._scores(threshold_alerts),
                    "note": "card payments above one fixed amount chosen in hindsight, cooled down",
                },
                "plain_half_space_trees": {
                    **self._scores(self._top_alerts(rank, alert_count)),
                    "note": "the highest plain HalfSpaceTrees ranks, cooled down",
                },
            },
            "transaction_flags": {
                "note": "flags on transactions, no cool-down for any method: the engine's are "
                "the transactions it judged suspicious (alerted, or held back because the "
                "customer had an alert within the cool-down); each baseline flags as many",
                "engine": self._scores(judged),
                "amount_threshold": {
                    **self._scores(threshold_flags),
                    "threshold_base_currency": _round(float(amount[threshold_flags].min()), 2)
                    if judged_count
                    else None,
                    "note": "the card payments above one fixed amount, chosen in hindsight to "
                    "flag as many transactions as the engine judged suspicious",
                },
                "plain_half_space_trees": {
                    **self._scores(self._top(rank, judged_count)),
                    "note": "River HalfSpaceTrees (MinMaxScaler, 10 trees, height 8, window "
                    "250) per shard on the profile's anomaly features, scored then learned; "
                    "the transactions whose rank among the shard's last 5,000 scores is "
                    "highest, as many as the engine judged suspicious",
                    "us_per_transaction": _round(self.plain_seconds / n * 1e6, 1) if n else None,
                },
            },
            "plain_half_space_trees_at_configured_budget": {
                **self._scores(rank >= 1.0 - self.budget),
                "budget": self.budget,
                "note": "the same detector flagging every rank >= 1 - alerts.suspicious_budget, "
                "no cool-down",
            },
        }


# --------------------------------------------------------------------------- offers


@dataclass
class OfferRow:
    """One decision of the engine for a held-back customer, with what the others would do."""

    customer_id: str
    at: float
    eligible: tuple[str, ...]
    chances: tuple[float, ...]
    engine: str | None
    popular: str
    greedy: str | None
    probability: float
    """The engine's logged probability of choosing `engine` here."""
    explored: bool


class OfferWatch:
    """Next-best-offer on held-back customers, and the decision log read by IPS.

    At each simulated offer impression of a held-back customer (the moment the bank has a
    slot to fill), the engine's decision is the one it logged for that impression (the
    decision in force, under the contact caps before the impression counted); the eligible
    offers are those `choose_offer` itself would consider: an offer is eligible when
    `choose_offer`, without exploration, picks it once it is given the only non-zero
    estimate. The random policy takes any eligible offer with equal chance; the popular
    one the eligible offer accepted most often so far by the customers the model learns
    from. Each is scored with the simulator's own acceptance chance.
    """

    def __init__(
        self, logic: DecisionLogic, acceptance: HiddenAcceptance, held_back: set[str]
    ) -> None:
        self.logic = logic
        config = logic.config
        self.catalogue = config.catalogue
        self.no_exploration = config.contact_policy.model_copy(update={"exploration": 0.0})
        self.exploration = config.contact_policy.exploration
        self.at_risk_from = config.alerts.churn_exit
        self.acceptance = acceptance
        self.held_back = held_back
        self.accepted: Counter[str] = Counter()
        self.rows: list[OfferRow] = []
        self.nothing_eligible = 0
        self.logged_without_eligible = 0
        self.logged: list[OfferRow] = []
        self.decisions_logged = 0
        self.impressions = 0
        self.impressions_held_back = 0
        self.expected_accepts_held_back = 0.0
        self.observed_accepts_held_back = 0

    def _eligible(
        self, memory: OfferMemory, profile: dict[str, Any], risk: float, at: float
    ) -> tuple[str, ...]:
        eligible = []
        for offer_id in self.logic.offer_ids:
            estimates = dict.fromkeys(self.logic.offer_ids, 0.0)
            estimates[offer_id] = 1.0
            choice = choose_offer(
                self.catalogue,
                self.no_exploration,
                memory,
                profile,
                risk,
                self.at_risk_from,
                estimates,
                {},
                "eligibility",
                at,
            )
            if choice is None:
                return ()
            if choice.offer_id == offer_id:
                eligible.append(offer_id)
        return tuple(eligible)

    def _popular(self, eligible: tuple[str, ...]) -> str:
        order = {o: i for i, o in enumerate(self.logic.offer_ids)}
        return max(eligible, key=lambda o: (self.accepted[o], -order[o]))

    def observe(
        self, request: ScoreRequest, scored: Scored, output: Output, state: DecisionState
    ) -> None:
        event = request.event
        body = event.body
        customer = request.customer_id
        held = customer in self.held_back
        decision = output.offer_decision
        if decision is not None:
            self.decisions_logged += 1
        kind = body["type"] if event.kind == "interactions" else None
        if kind == "offer_accepted" and body.get("offer_id"):
            if held:
                self.observed_accepts_held_back += 1
            else:
                self.accepted[body["offer_id"]] += 1
        if kind != "offer_impression" or not body.get("offer_id"):
            return
        self.impressions += 1
        if not held:
            return
        at = event.event_time
        consent = bool(request.profile["marketing_consent"])
        # The simulator's own offer: a check that the acceptance chance is the one its
        # answers follow.
        self.impressions_held_back += 1
        self.expected_accepts_held_back += self.acceptance.chance(
            customer, body["offer_id"], at, consent
        )
        # The slot is the engine's to fill: its decision in force is the logged one, judged
        # under the contact caps as they stood before this impression counted.
        memory = state.offers.before_impression(at, body["channel"])
        eligible = self._eligible(memory, request.profile, scored.churn_risk, at)
        if not eligible:
            self.nothing_eligible += 1
            self.logged_without_eligible += decision is not None
            return
        chances = tuple(self.acceptance.chance(customer, o, at, consent) for o in eligible)
        greedy = choose_offer(
            self.catalogue,
            self.no_exploration,
            memory,
            request.profile,
            scored.churn_risk,
            self.at_risk_from,
            scored.offer_propensities,
            scored.offer_bonus,
            "greedy",
            at,
        )
        row = OfferRow(
            customer,
            at,
            eligible,
            chances,
            decision["offer_id"] if decision is not None else None,
            self._popular(eligible),
            greedy.offer_id if greedy is not None else None,
            decision["action_probability"] if decision is not None else 0.0,
            decision["explored"] if decision is not None else False,
        )
        self.rows.append(row)
        if decision is not None:
            self.logged.append(row)

    def _value(self, offer_id: str) -> float:
        return self.catalogue.offers[offer_id].value

    def report(self, start: float, days: float, seed: int) -> dict[str, Any]:
        result: dict[str, Any] = {
            "held_back_customers": len(self.held_back),
            "acceptance_check": {
                "held_back_simulated_impressions": self.impressions_held_back,
                "expected_accepts_by_acceptance_function": round(
                    self.expected_accepts_held_back, 1
                ),
                "observed_accepts": self.observed_accepts_held_back,
                "note": "the simulator's own random impressions to held-back customers: the "
                "acceptance function must predict the answers the simulator gave (it gives "
                "none while a product change is pending, so observed may be slightly lower)",
            },
            "impressions_with_nothing_eligible": self.nothing_eligible,
            "most_popular_ranking": [o for o, _ in self.accepted.most_common()],
        }
        for name, rows in (
            ("all_impressions", self.rows),
            (
                "impressions_in_second_half",
                [r for r in self.rows if r.at >= start + days * DAY / 2],
            ),
        ):
            result[name] = self._direct(rows, seed)
        result["decision_log"] = {
            "impressions_all_customers": self.impressions,
            "decisions_logged_all_customers": self.decisions_logged,
            "held_back_impressions_with_eligible_offers": len(self.rows),
            "held_back_decisions_logged": len(self.logged),
            "logged_with_nothing_eligible": self.logged_without_eligible,
            "note": "crm:offer-decisions holds one decision per offer impression (the "
            "decision in force), none elsewhere",
        }
        result["ips"] = {
            "note": "reward = the simulator's acceptance chance x offer value; IPS = mean of "
            "pi(a|x) / p(a|x) x reward over logged decisions; SNIPS divides by the mean "
            "weight; truth = each policy's expected reward on the same logged contexts",
            "decision_log_as_written": self._ips(self.logged),
        }
        return result

    def _direct(self, rows: list[OfferRow], seed: int) -> dict[str, Any]:
        if not rows:
            return {"impressions": 0}
        accept: dict[str, list[float]] = {"engine": [], "random": [], "most_popular": []}
        value: dict[str, list[float]] = {k: [] for k in (*accept, "best_possible")}
        picks: Counter[str] = Counter()
        for row in rows:
            by_offer = dict(zip(row.eligible, row.chances, strict=True))
            # The engine may have chosen nothing only if nothing was eligible; the rows
            # already exclude that, so a None here would be a disagreement worth seeing.
            engine = row.engine if row.engine in by_offer else None
            picks[engine or "none"] += 1
            accept["engine"].append(by_offer[engine] if engine else 0.0)
            value["engine"].append(by_offer[engine] * self._value(engine) if engine else 0.0)
            accept["random"].append(sum(row.chances) / len(row.chances))
            value["random"].append(
                sum(c * self._value(o) for o, c in by_offer.items()) / len(by_offer)
            )
            accept["most_popular"].append(by_offer[row.popular])
            value["most_popular"].append(by_offer[row.popular] * self._value(row.popular))
            value["best_possible"].append(max(c * self._value(o) for o, c in by_offer.items()))
        bootstrap = ClusterBootstrap(np.array([r.customer_id for r in rows]), seed)
        return {
            "impressions": len(rows),
            "customers": len({r.customer_id for r in rows}),
            "mean_eligible_offers": round(statistics.fmean(len(r.eligible) for r in rows), 2),
            "acceptance_rate": bootstrap.means({k: np.array(v) for k, v in accept.items()}),
            "value_per_impression": bootstrap.means({k: np.array(v) for k, v in value.items()}),
            "engine_choices": dict(picks.most_common()),
        }

    def _ips(self, logged: list[OfferRow]) -> dict[str, Any]:
        """Value of policies estimated from logged decisions alone, vs the truth.

        Each logged decision carries the probability with which the engine chose it; the
        reward is the simulator's acceptance chance times the offer's value. The truth of a
        policy on the same contexts is computable here because the acceptance function is
        known; in production only the estimate would be.
        """
        logged = [r for r in logged if r.engine is not None]
        if not logged:
            return {"decisions": 0}
        explore = self.exploration
        consistent = sum(
            r.engine in r.eligible
            and abs(
                (1 - explore) * (r.engine == r.greedy) + explore / len(r.eligible) - r.probability
            )
            < 1e-5
            for r in logged
        )
        policies: dict[str, Callable[[OfferRow], dict[str, float]]] = {
            "logging_policy": lambda r: {
                o: explore / len(r.eligible) + (1 - explore) * (o == r.greedy) for o in r.eligible
            },
            "uniform_random": lambda r: dict.fromkeys(r.eligible, 1.0 / len(r.eligible)),
            "most_popular": lambda r: {r.popular: 1.0},
            "engine_without_exploration": lambda r: {r.greedy: 1.0} if r.greedy else {},
        }
        out: dict[str, Any] = {
            "decisions": len(logged),
            "customers": len({r.customer_id for r in logged}),
            "explored": sum(r.explored for r in logged),
            "explored_share": round(sum(r.explored for r in logged) / len(logged), 4),
            "configured_exploration": explore,
            "action_probability_consistent_with_eligible_set": round(consistent / len(logged), 4),
        }
        p = np.array([r.probability for r in logged])
        reward = np.array(
            [
                dict(zip(r.eligible, r.chances, strict=True))[r.engine] * self._value(r.engine)
                for r in logged
            ]
        )
        for name, policy in policies.items():
            weights, truth = [], []
            for r in logged:
                pi = policy(r)
                by_offer = dict(zip(r.eligible, r.chances, strict=True))
                weights.append(pi.get(r.engine, 0.0))
                truth.append(sum(q * by_offer[o] * self._value(o) for o, q in pi.items()))
            w = np.array(weights) / p
            terms = w * reward
            out[name] = {
                "ips": round(float(terms.mean()), 3),
                "ips_standard_error": round(float(terms.std(ddof=1) / math.sqrt(len(terms))), 3)
                if len(terms) > 1
                else None,
                "snips": round(float(terms.sum() / w.sum()), 3) if w.sum() > 0 else None,
                "effective_sample_size": round(float(w.sum() ** 2 / (w**2).sum()), 1)
                if (w**2).sum() > 0
                else 0.0,
                "truth_on_logged_contexts": round(float(np.mean(truth)), 3),
            }
        return out


# --------------------------------------------------------------------------- cost


class StepTimes:
    """Per-event time of each engine step, measured around the very calls the loop makes."""

    def __init__(self) -> None:
        self.micros: dict[str, array] = {
            name: array("f") for name in ("decode", "profile", "models", "decide")
        }

    def add(self, name: str, seconds: float) -> None:
        self.micros[name].append(seconds * 1e6)

    def report(self) -> dict[str, Any]:
        return {name: _percentiles(values) for name, values in self.micros.items()}


def _time_calls(calls: Iterable[Callable[[], Any]]) -> list[float]:
    clock = time.perf_counter_ns
    out = []
    for call in calls:
        started = clock()
        call()
        out.append((clock() - started) / 1000)
    return out


def model_costs(
    shard: ModelShard,
    requests: list[ScoreRequest],
    offer_ids: tuple[str, ...],
    seed: int,
) -> dict[str, Any]:
    """Each model's own methods on a copy of a warmed shard, over recent real requests.

    The copy keeps the measurement from changing the shard the evaluation used; the
    anomaly call scores and learns (or quarantines), as it does per transaction.
    """
    shard = pickle.loads(pickle.dumps(shard))
    churn = shard.churn
    transactions = [r for r in requests if r.anomaly_features is not None]
    contexts = [r for r in requests if r.offer_context is not None]

    def churn_with_reasons(x: dict[str, float]) -> None:
        churn.predict_proba_one(x)
        churn_reasons(x, churn.contributions(x))

    result = {
        "churn_predict": _percentiles(
            _time_calls((lambda x=r.churn_features: churn.predict_proba_one(x)) for r in requests)
        ),
        "churn_predict_with_reasons": _percentiles(
            _time_calls((lambda x=r.churn_features: churn_with_reasons(x)) for r in requests)
        ),
        "anomaly_score_and_learn": _percentiles(
            _time_calls(
                (
                    lambda r=r: shard.anomaly.score_one(
                        f"{r.customer_id}:{r.event.event_id}:timing",
                        r.event.event_time,
                        r.anomaly_features,
                    )
                )
                for r in transactions
            )
        ),
        "offers_score_all": _percentiles(
            _time_calls(
                (lambda x=r.offer_context: shard.offers.score(x, offer_ids)) for r in contexts
            )
        ),
        "offers_in_catalogue": len(offer_ids),
    }
    # River's own contextual bandit, for scale: one pull and one update per context.
    river_linucb = bandit.LinUCBDisjoint(alpha=0.5, seed=seed)
    arms = list(offer_ids)

    def pull_and_update(x: dict[str, float]) -> None:
        arm = river_linucb.pull(arms, context=x)
        river_linucb.update(arm, x, 0.0)

    result["reference_river_linucb_pull_and_update"] = _percentiles(
        _time_calls((lambda x=r.offer_context: pull_and_update(x)) for r in contexts)
    )
    return result


# --------------------------------------------------------------------------- the run


class EngineReplay:
    """The flow's steps over plain dicts, fed the simulated records as Kafka would."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        steps = EngineSteps.from_settings(settings)
        self.decode, self.profile, self.decisions = steps.decode, steps.profile, steps.decisions
        self.choice, self.shard_count = steps.models, steps.shards
        self.offer_ids = self.decisions.offer_ids
        self.customers: dict[str, CustomerState] = {}
        self.decided: dict[str, DecisionState] = {}
        self.shards: dict[str, ModelShard] = {}
        topics = settings.kafka.topics
        self.topics = {
            kind: getattr(topics, kind)
            for kind in ("transactions", "interactions", "outcomes", "customers")
        }
        self.offset = 0
        self.dead_letters: Counter[str] = Counter()

    def message(self, event: SimEvent) -> KafkaSourceMessage:
        """The record as the Kafka source hands it over: key, JSON bytes, topic, time."""
        value = event.value
        raw = value if value.__class__ is bytes else orjson.dumps(value)
        key = event.key.encode()
        self.offset += 1
        return KafkaSourceMessage(
            key=key,
            value=raw,
            topic=self.topics[event.kind],
            headers=[],
            latency=None,
            offset=self.offset,
            partition=zlib.crc32(key) % 4,
            timestamp=(1, round(event.event_time * 1000)),
        )


def run(size: Size, settings: Settings | None = None) -> dict[str, Any]:
    """Simulate, replay through the engine, and measure every model against the truth."""
    started = time.perf_counter()
    settings = settings or load_settings()
    config = SimulationConfig(customers=size.customers, days=size.days, seed=size.seed)
    _log(f"models benchmark: {size.customers:,} customers x {size.days:g} days, seed {size.seed}")
    truth = collect_truth(config)
    _log(
        f"  truth: {truth.events:,} events, {truth.churners:,} churners "
        f"({len(truth.closures):,} closed), {len(truth.episodes):,} fraud episodes "
        f"({time.perf_counter() - started:.0f} s)"
    )
    engine = EngineReplay(settings)
    horizon = settings.models.churn_horizon_days * DAY
    start = config.start_ts
    fixed_moment = start + max(min(size.days * DAY / 2, size.days * DAY - horizon), 0.0)
    churn = ChurnWatch(fixed_moment, horizon)
    budget = settings.alerts.suspicious_budget
    anomalies = AnomalyWatch(
        truth,
        budget,
        settings.alerts.suspicious_min_amount,
        float(settings.alerts.cooldown_seconds.get("suspicious_transaction", 0)),
        settings.models.seed,
    )
    acceptance = HiddenAcceptance(
        config, lambda cid: _held_back(cid, size.seed, size.holdout_share)
    )
    held_back = set(acceptance.customers)
    offers = OfferWatch(engine.decisions, acceptance, held_back)
    steps = StepTimes()
    recent: deque[ScoreRequest] = deque(maxlen=size.timing_samples)
    clock = time.perf_counter
    processed = 0
    report_every = max(1, truth.events // 20)
    replay_started = clock()
    frozen = False
    for event in simulate(config):
        processed += 1
        if not frozen and event.event_time >= fixed_moment:
            churn.freeze(engine.customers)
            frozen = True
        t0 = clock()
        record = engine.decode(engine.message(event))
        t1 = clock()
        steps.add("decode", t1 - t0)
        if not isinstance(record, Event):
            engine.dead_letters[record.reason_code] += 1
            continue
        customer_id = record.customer_id
        state = engine.customers.get(customer_id)
        if state is None:
            state = engine.customers[customer_id] = CustomerState()
        results = engine.profile.apply(state, record)
        steps.add("profile", clock() - t1)
        for result in results:
            if not isinstance(result, ScoreRequest):
                engine.dead_letters[result.reason_code] += 1
                continue
            if customer_id in held_back:
                # The hold-out: the offer model never learns a held-back customer's answers.
                result.labels = [label for label in result.labels if label[0] != "offer"]
            key = shard_of(result.customer_id, engine.shard_count)
            shard = engine.shards.get(key)
            if shard is None:
                shard = engine.shards[key] = ModelShard(engine.choice)
            t2 = clock()
            scored = shard.handle(result, engine.offer_ids)
            t3 = clock()
            decision = engine.decided.get(customer_id)
            if decision is None:
                decision = engine.decided[customer_id] = DecisionState()
            output = engine.decisions.decide(decision, scored)
            t4 = clock()
            steps.add("models", t3 - t2)
            steps.add("decide", t4 - t3)
            churn.observe(result, scored, output, getattr(shard.churn, "warm", True))
            anomalies.observe(result, scored, output, key)
            offers.observe(result, scored, output, decision)
            if key == "0":
                recent.append(result)
        if processed % report_every == 0:
            elapsed = clock() - replay_started
            rate = processed / elapsed
            _log(
                f"  {processed / truth.events:4.0%}  {processed:,} events, {rate:,.0f}/s, "
                f"~{(truth.events - processed) / rate:,.0f} s left"
            )
    if not frozen:
        churn.freeze(engine.customers)
    replay_seconds = clock() - replay_started
    _log(f"  replay done in {replay_seconds:.0f} s; measuring model costs")
    costs = model_costs(engine.shards["0"], list(recent), engine.offer_ids, settings.models.seed)
    anomaly_report = anomalies.report()
    churn_report = churn.report(truth, size.bootstrap_seed)
    offer_report = offers.report(start, size.days, size.bootstrap_seed)
    return {
        "benchmark": "models",
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {**machine_info(), "load_average": os.getloadavg()},
        "versions": versions(),
        "git": git_revision(ROOT),
        "seeds": {
            "simulator": size.seed,
            "models": settings.models.seed,
            "holdout": size.seed,
            "bootstrap": size.bootstrap_seed,
        },
        "sizes": {
            "customers": size.customers,
            "days": size.days,
            "start": _iso(start),
            "events": truth.events,
            "events_processed": processed,
            "dead_letters": dict(engine.dead_letters),
            "churners": truth.churners,
            "churners_closed": len(truth.closures),
            "fraud_episodes": len(truth.episodes),
            "fraudulent_transactions": len(truth.fraud_ids),
            "held_back_customers": len(held_back),
            "holdout_share": size.holdout_share,
            "model_shards": engine.shard_count,
            "simulator_summary": truth.summary,
        },
        "settings": {
            "models": settings.models.model_dump(),
            "alerts": settings.alerts.model_dump(),
            "rules": settings.rules.model_dump(),
            "contact_policy": settings.contact_policy.model_dump(),
        },
        "churn": churn_report,
        "anomalies": anomaly_report,
        "offers": offer_report,
        "cost": {
            "per_event_steps_us": steps.report(),
            "per_call_models_us": costs,
            "replay_events_per_second": round(processed / replay_seconds, 1),
            "note": "per_event_steps: every event of the run, timed around the calls; "
            "models = ModelShard.handle (all three models, learning included). "
            "per_call_models: the models' own methods on a copy of a warmed shard",
        },
        "seconds": round(time.perf_counter() - started, 1),
        "cpu_seconds": round(time.process_time(), 1),
    }


# --------------------------------------------------------------------------- the report


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _ci(interval: list[float] | None, digits: int = 3) -> str:
    if not interval:
        return ""
    return f" [{interval[0]:.{digits}f}, {interval[1]:.{digits}f}]"


def _auc_verdict(block: dict[str, Any], baseline: str, what: str) -> str:
    """Whether the model is ahead of a baseline, and "clearly" so.

    Clearly: ahead by at least 0.02 AUC, the difference's 95 % interval above 0, and the
    model's own interval above 0.5 (a baseline worse than chance is no bar to clear).
    """
    entry = block.get(baseline, {})
    diff, ci = entry.get("model_minus_this"), entry.get("model_minus_this_ci95")
    model = block.get("model", {})
    if diff is None or model.get("roc_auc") is None:
        return f"{what}: not measurable"
    figures = f"{model['roc_auc']:.3f} vs {entry['roc_auc']:.3f} ({diff:+.3f}{_ci(ci)})"
    informative = bool(model.get("ci95")) and model["ci95"][0] > 0.5
    if diff >= 0.02 and ci and ci[0] > 0 and informative:
        return f"{what}: beats {baseline} clearly, {figures}"
    if diff > 0:
        return f"{what}: ahead of {baseline} but NOT clearly, {figures}"
    return f"{what}: does NOT beat {baseline}, {figures}"


def _verdicts(report: dict[str, Any]) -> dict[str, str]:
    """Plain-word verdicts from the figures, each naming the numbers it rests on."""
    out: dict[str, str] = {}
    churn = report["churn"]
    baseline = churn.get("best_recency_baseline", "days_since_last_activity")
    out["churn, all snapshots"] = _auc_verdict(
        churn.get("all_snapshots", {}), baseline, "prequential AUC"
    )
    if churn.get("warm_predictions"):
        out["churn, warm predictions"] = _auc_verdict(
            churn["warm_predictions"], baseline, "prequential AUC once warm"
        )
    horizon = churn.get("at_horizon", {})
    if "label_closed" in horizon:
        out["churn, at the fixed moment"] = _auc_verdict(
            horizon["label_closed"], "days_since_last_activity", "AUC for closing within H"
        )
    anomalies = report["anomalies"]
    for view, what in (("alerts", "RM alerts"), ("transaction_flags", "transaction flags")):
        engine = anomalies[view]["engine"]
        for name in ("amount_threshold", "plain_half_space_trees"):
            other = anomalies[view][name]
            if engine["recall"] is None or other["recall"] is None:
                out[f"anomalies vs {name}, {what}"] = "not measurable"
                continue
            ahead = engine["true_positives"] > other["true_positives"]
            e, o = engine["episodes"], other["episodes"]
            out[f"anomalies vs {name}, {what}"] = (
                f"{'beats' if ahead else 'does NOT beat'} it with {other['flags']:,} "
                f"{what} each: precision {engine['precision']:.3f} vs {other['precision']:.3f}, "
                f"fraudulent payments {engine['recall']:.3f} vs {other['recall']:.3f}; "
                f"episodes caught: ATO {e['ato']['episodes_caught']} vs "
                f"{o['ato']['episodes_caught']}, card testing "
                f"{e['card_testing']['episodes_caught']} vs {o['card_testing']['episodes_caught']}"
                f"; fraudulent amount {_fmt(engine['fraud_amount_recall'])} vs "
                f"{_fmt(other['fraud_amount_recall'])}"
            )
    value = report["offers"].get("all_impressions", {}).get("value_per_impression", {})
    for name in ("random", "most_popular"):
        entry = value.get(name, {})
        diff, ci = entry.get("engine_minus_this"), entry.get("engine_minus_this_ci95")
        if diff is None:
            out[f"offers vs {name}"] = "not measurable"
            continue
        figures = (
            f"value per impression {value['engine']['mean']:.2f} vs {entry['mean']:.2f} "
            f"({diff:+.2f}{_ci(ci, 2)})"
        )
        if diff > 0 and ci and ci[0] > 0:
            out[f"offers vs {name}"] = f"beats it, {figures}"
        else:
            out[f"offers vs {name}"] = f"does NOT beat it, {figures}"
    return out


def _findings(report: dict[str, Any]) -> list[str]:
    """What the figures say beyond the verdicts, each sentence built from the report."""
    notes: list[str] = []
    churn = report["churn"]
    warm = churn.get("warm_predictions")
    if warm:
        share = warm["labelled_snapshots"] / max(1, churn["labelled_snapshots"])
        notes.append(
            f"Churn: the model answered its prior until {churn['first_warm_prediction']}: "
            "'stayed' labels need the whole horizon to resolve and the model waits for both "
            f"outcomes. {1 - share:.0%} of the labelled snapshots were scored before that, "
            "so the all-snapshot AUC mixes a constant with the model. Once warm, compare the "
            "model with the best recency score in the warm columns."
        )
    anomalies = report["anomalies"]
    engine = anomalies["alerts"]["engine"]
    judged = anomalies["transaction_flags"]["engine"]
    at_budget = anomalies["plain_half_space_trees_at_configured_budget"]
    budget = report["settings"]["alerts"]["suspicious_budget"]
    spent = anomalies.get("budget_spent")
    steps = (
        f": {spent['score_at_or_above_alert_rank']:.2%} of transactions score at or above the "
        f"alert rank, {spent['and_at_least_min_amount']:.2%} do so and reach the minimum "
        f"amount, and {spent['model_alerts_after_cool_down']:.2%} remain model alerts after "
        "the cool-down"
        if spent and spent["score_at_or_above_alert_rank"] is not None
        else ""
    )
    if spent and spent.get("of_alertable_at_or_above_alert_rank") is not None:
        steps += (
            f". Only payments of at least the minimum amount may alert "
            f"({spent['alertable_share_of_transactions']:.1%} of transactions) and the rank "
            f"is among them: {spent['of_alertable_at_or_above_alert_rank']:.2%} of them score "
            f"at or above the alert rank and {spent['of_alertable_model_alerts_after_cool_down']:.2%}"
            " remain model alerts after the cool-down"
        )
    notes.append(
        f"Anomalies: the engine alerted on {engine['flagged_share_of_transactions']:.2%} of "
        f"transactions against a configured budget of {budget:.2%}{steps}. At the configured "
        f"budget plain HalfSpaceTrees flags {at_budget['flags']:,} transactions and reaches "
        f"recall {_fmt(at_budget['recall'])}; the engine's {judged['flags']:,} transaction "
        f"flags reach {_fmt(judged['recall'])}."
    )
    kinds = anomalies.get("fraudulent_transactions_by_type", {})
    share = kinds.get("card_testing", 0) / max(1, anomalies["fraudulent_transactions"])
    flags = anomalies["transaction_flags"]
    notes.append(
        f"Anomalies: {share:.0%} of the fraudulent transactions are card-testing payments "
        "(many tiny payments per burst). Below the minimum amount only the CARD_TESTING rule "
        "can judge them suspicious; once it has, the cool-down holds the rest of the burst "
        "back from the RM (one alert per burst) while every payment of it is still judged "
        f"suspicious: card-testing payments flagged {_fmt(engine['recall_by_episode_type']['card_testing'])} "
        f"as alerts, {_fmt(flags['engine']['recall_by_episode_type']['card_testing'])} as "
        "transaction flags. Comparing the engine's cooled-down alerts with baselines' "
        "uncooled flags would count each baseline's burst of flags as many alerts."
    )
    written = report["offers"].get("ips", {}).get("decision_log_as_written", {})
    if written.get("decisions"):
        w = written["uniform_random"]
        notes.append(
            "Offers, IPS: the decision log holds the decision in force at every offer "
            f"impression: {written['explored_share']:.1%} of logged decisions explored "
            f"against {written['configured_exploration']:.0%} configured, and IPS of uniform "
            f"random from it is {w['ips']:.2f} ± {w['ips_standard_error']:.2f} against "
            f"{w['truth_on_logged_contexts']:.2f} true (a log of changed decisions only "
            "selected on the action and overstated it)."
        )
    value = report["offers"].get("all_impressions", {})
    if value.get("impressions"):
        acc = value["acceptance_rate"]
        notes.append(
            "Offers: the engine ranks by estimated acceptance x value x weight, so it wins on "
            f"value per impression while its acceptance rate ({acc['engine']['mean']:.4f}) is "
            f"about random's ({acc['random']['mean']:.4f}) and below most-popular's "
            f"({acc['most_popular']['mean']:.4f})."
        )
    return notes


def markdown(report: dict[str, Any], command: str) -> str:
    sizes, machine = report["sizes"], report["machine"]
    churn, anomalies, offers, cost = (
        report["churn"],
        report["anomalies"],
        report["offers"],
        report["cost"],
    )
    verdicts = report["verdicts"]
    lines = [
        "# Online models against the simulator's planted truth",
        "",
        f"Reproduce: `{command}` ({report['seconds']:.0f} s on this machine, "
        f"{report.get('cpu_seconds', 0):.0f} s of CPU). "
        "Generated by `benchmarks/models.py`; every figure is in `models.json`.",
        "",
        "## Verdicts",
        "",
        *(f"- **{k}**: {v}" for k, v in verdicts.items()),
        "",
        "## Setup",
        "",
        f"- Simulated bank: {sizes['customers']:,} customers x {sizes['days']:g} days from "
        f"{sizes['start']}, {sizes['events']:,} events ({sizes['dead_letters']} dead-lettered "
        "by the engine, as planted by the simulator's delivery faults).",
        f"- Planted: {sizes['churners']:,} churners ({sizes['churners_closed']:,} closed their "
        f"account in the run), {sizes['fraud_episodes']:,} fraud episodes with "
        f"{sizes['fraudulent_transactions']:,} fraudulent transactions.",
        f"- Held back from the offer model: {sizes['held_back_customers']:,} customers "
        f"({sizes['holdout_share']:.0%}).",
        f"- Seeds: {report['seeds']}. Models: {report['settings']['models']['churn']}, "
        f"{report['settings']['models']['anomaly']}, {report['settings']['models']['offers']}; "
        f"{sizes['model_shards']} shards.",
        f"- Machine: {machine['cpu_model']}, {machine['cores']} cores "
        f"({machine['cores_usable']} usable), load average at the end "
        f"{', '.join(f'{x:.1f}' for x in machine['load_average'])} (shared machine: costs are "
        "upper bounds); Python "
        f"{report['versions']['python']}, River {report['versions']['river']}, bytewax "
        f"{report['versions']['bytewax']}; git {(report['git']['commit'] or '')[:10]}"
        f"{' (dirty tree)' if report['git']['dirty'] else ''}.",
        "",
        "The engine ran in-process in arrival order through its own steps (real decoder on "
        "each record's JSON bytes, `ProfileLogic.apply`, `ModelShard.handle` by `shard_of`, "
        "`DecisionLogic.decide`). The only change to what the flow does: held-back "
        "customers' offer answers are removed from the labels before the model shard.",
        "",
        "## Churn",
        "",
        f"Prequential: {churn['labelled_snapshots']:,} snapshot predictions paired with their "
        f"labels as they resolved ({churn['positives']:,} closed within the "
        f"{report['settings']['models']['churn_horizon_days']}-day horizon). The model's AUC "
        "from the engine's own quality pairs is "
        f"{_fmt(churn['model_auc_from_engine_quality_pairs'])} "
        f"({churn['engine_quality_pairs']:,} pairs; the harness's pairing with the recency "
        f"features {'matches them exactly' if churn['pairing_matches_engine_quality_pairs'] else 'DIFFERS from them'}).",
        "",
        "Recency baselines score each snapshot with its own features: "
        "`days_since_transaction`, `days_since_login`, and their minimum "
        "(`days_since_last_activity`); more days = more risk. Intervals: customers resampled "
        f"({BOOTSTRAP_ROUNDS} rounds).",
        "",
        "| score at the snapshot | ROC AUC, all snapshots [95 % CI] | model minus this [95 % CI] "
        "| ROC AUC, warm predictions [95 % CI] | model minus this, warm [95 % CI] |",
        "|---|---|---|---|---|",
    ]
    warm = churn.get("warm_predictions", {})
    for name, entry in churn.get("all_snapshots", {}).items():
        w = warm.get(name, {})
        lines.append(
            f"| {name} | {_fmt(entry['roc_auc'])}{_ci(entry['ci95'])} | "
            f"{_fmt(entry.get('model_minus_this'))}{_ci(entry.get('model_minus_this_ci95'))} | "
            f"{_fmt(w.get('roc_auc'))}{_ci(w.get('ci95'))} | "
            f"{_fmt(w.get('model_minus_this'))}{_ci(w.get('model_minus_this_ci95'))} |"
        )
    if warm:
        lines += [
            "",
            f"Warm predictions: {warm['labelled_snapshots']:,} of the labelled snapshots "
            f"({warm['positives']:,} positive), scored after the shard's churn model had learned "
            "both outcomes often enough to stop answering its prior (first warm prediction: "
            f"{churn['first_warm_prediction']}). Before that every snapshot gets the prior, "
            "which is what holds the all-snapshot AUC down: 'stayed' labels take the whole "
            "horizon to resolve.",
        ]
    horizon = churn["at_horizon"]
    if "label_closed" in horizon:
        lines += [
            "",
            f"At a fixed moment ({horizon['fixed_moment']}), per customer: the churn risk the "
            f"profile held then vs closing the account within {horizon['horizon_days']:g} days "
            f"({horizon['customers']:,} open customers, {horizon['closed_within_horizon']:,} "
            f"closed; {horizon['closed_or_went_silent_within_horizon']:,} closed or went silent).",
            "",
            "| score at the moment | AUC: closed within H | AUC: closed or went silent within H |",
            "|---|---|---|",
        ]
        for name in ("model", "days_since_last_activity"):
            a, b = (
                horizon["label_closed"].get(name, {}),
                horizon["label_closed_or_silent"].get(name, {}),
            )
            lines.append(
                f"| {name} | {_fmt(a.get('roc_auc'))}{_ci(a.get('ci95'))} | "
                f"{_fmt(b.get('roc_auc'))}{_ci(b.get('ci95'))} |"
            )
    else:
        lines += ["", f"At a fixed moment: {horizon.get('note')}."]

    alerts, flags = anomalies["alerts"], anomalies["transaction_flags"]
    lines += [
        "",
        "## Anomalies",
        "",
        f"{anomalies['transactions']:,} transactions, {anomalies['fraudulent_transactions']:,} "
        "fraudulent. Two views, each with the same number of flags for every method. "
        f"**RM alerts**: every method's flags pass the engine's "
        f"{anomalies['cooldown_seconds'] / 60:g}-minute per-customer cool-down, and each "
        f"baseline gets as many alerts as the engine sent ({alerts['engine']['flags']:,}, "
        f"{_fmt(alerts['engine']['flagged_share_of_transactions'], 4)} of transactions). "
        "**Transaction flags**: no cool-down; the engine's flags are the transactions it "
        "judged suspicious, alerted or held back by the cool-down "
        f"({flags['engine']['flags']:,}). The last row is plain HalfSpaceTrees at the "
        "configured budget, without cool-down.",
        "",
        "| view | method | flags | true positives | precision | recall | recall: ATO payments "
        "| recall: card-testing payments | share of fraudulent amount flagged | ATO episodes "
        "flagged | ATO: median fraudulent payments before the first flag | card-testing "
        "episodes flagged |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = [
        *(("RM alerts", name, alerts[name]) for name in _ANOMALY_METHODS),
        *(("transaction flags", name, flags[name]) for name in _ANOMALY_METHODS),
        (
            "flags at the configured budget",
            "plain_half_space_trees",
            anomalies["plain_half_space_trees_at_configured_budget"],
        ),
    ]
    for view, name, entry in rows:
        episodes = entry.get("episodes") or {}
        ato, testing = episodes.get("ato", {}), episodes.get("card_testing", {})
        by_type = entry.get("recall_by_episode_type", {})
        lines.append(
            f"| {view} | {name} | {_fmt(entry['flags'])} | {_fmt(entry['true_positives'])} | "
            f"{_fmt(entry['precision'])} | {_fmt(entry['recall'])} | "
            f"{_fmt(by_type.get('ato'))} | {_fmt(by_type.get('card_testing'))} | "
            f"{_fmt(entry.get('fraud_amount_recall'))} | "
            f"{_fmt(ato.get('episodes_caught'))}/{_fmt(ato.get('episodes'))} | "
            f"{_fmt(ato.get('median_fraudulent_payments_before_first_flag'))} | "
            f"{_fmt(testing.get('episodes_caught'))}/{_fmt(testing.get('episodes'))} |"
        )
    by_source = alerts["engine"]["by_source"]
    lines += [
        "",
        f"Engine alerts by source: rules {by_source['rule']['alerts']:,} "
        f"(precision {_fmt(by_source['rule']['precision'])}), model "
        f"{by_source['model']['alerts']:,} (precision {_fmt(by_source['model']['precision'])}). "
        f"Amount threshold (transaction flags): card payments above "
        f"{_fmt(flags['amount_threshold']['threshold_base_currency'], 2)} (base currency). "
        "An episode never flagged counts all its payments as got through. The engine's "
        "model may not alert below `alerts.suspicious_min_amount`, so tiny card-testing "
        "payments can only be judged by the CARD_TESTING rule; the baselines have no such "
        "limit.",
        "",
        "## Next-best-offer",
        "",
    ]
    check = offers["acceptance_check"]
    lines += [
        f"Held-back customers: {offers['held_back_customers']:,}. Acceptance function check on "
        f"the simulator's own random impressions to them: {check['expected_accepts_by_acceptance_function']:,} "
        f"accepts expected, {check['observed_accepts']:,} observed.",
        "",
    ]
    for name in ("all_impressions", "impressions_in_second_half"):
        block = offers.get(name, {})
        if not block.get("impressions"):
            lines += [f"{name}: none.", ""]
            continue
        lines += [
            f"**{name}**: {block['impressions']:,} impressions of {block['customers']:,} "
            f"held-back customers, {block['mean_eligible_offers']} eligible offers on average.",
            "",
            "| policy | acceptance rate [95 % CI] | value per impression [95 % CI] | engine minus this (value) |",
            "|---|---|---|---|",
        ]
        for policy in ("engine", "random", "most_popular", "best_possible"):
            acc = block["acceptance_rate"].get(policy, {})
            val = block["value_per_impression"][policy]
            lines.append(
                f"| {policy} | {_fmt(acc.get('mean'), 4)}{_ci(acc.get('ci95'), 4)} | "
                f"{_fmt(val['mean'], 2)}{_ci(val['ci95'], 2)} | "
                f"{_fmt(val.get('engine_minus_this'), 2)}{_ci(val.get('engine_minus_this_ci95'), 2)} |"
            )
        lines += ["", f"Engine choices: {block['engine_choices']}", ""]
    lines += [
        "**Inverse propensity scoring** (IPS) of policies from the engine's decision log "
        "(`crm:offer-decisions`: the decision in force at each offer impression) for "
        "held-back customers and the `action_probability` each carries, against each "
        "policy's true value on the same contexts. Reward = the simulator's acceptance "
        "chance x offer value.",
        "",
    ]
    log = offers.get("decision_log")
    if log:
        lines += [
            f"Decisions logged: {log['decisions_logged_all_customers']:,} for "
            f"{log['impressions_all_customers']:,} offer impressions (all customers; none "
            "is logged where nothing may be offered); held back: "
            f"{log['held_back_decisions_logged']:,} logged of "
            f"{log['held_back_impressions_with_eligible_offers']:,} impressions with an "
            "eligible offer.",
            "",
        ]
    titles = {"decision_log_as_written": "decision log as written (every impression)"}
    for key, title in titles.items():
        ips = offers["ips"][key]
        if not ips.get("decisions"):
            lines += [f"{title}: no decisions.", ""]
            continue
        lines += [
            f"*{title}*: {ips['decisions']:,} decisions of {ips['customers']:,} customers, "
            f"{ips['explored_share']:.1%} explored (configured: "
            f"{ips['configured_exploration']:.0%}); logged action probability consistent with "
            f"the eligible set in {ips['action_probability_consistent_with_eligible_set']:.1%}.",
            "",
            "| target policy | IPS ± s.e. | SNIPS | effective sample size | truth on the same contexts |",
            "|---|---|---|---|---|",
        ]
        for name, entry in ips.items():
            if isinstance(entry, dict):
                lines.append(
                    f"| {name} | {_fmt(entry['ips'], 2)} ± {_fmt(entry['ips_standard_error'], 2)} | "
                    f"{_fmt(entry['snips'], 2)} | {_fmt(entry['effective_sample_size'], 1)} | "
                    f"{_fmt(entry['truth_on_logged_contexts'], 2)} |"
                )
        lines.append("")
    steps, calls = cost["per_event_steps_us"], cost["per_call_models_us"]
    lines += [
        "",
        "## Per-event cost (µs)",
        "",
        "| what | calls | mean | p50 | p99 |",
        "|---|---|---|---|---|",
    ]
    for name in (
        "churn_predict",
        "churn_predict_with_reasons",
        "anomaly_score_and_learn",
        "offers_score_all",
        "reference_river_linucb_pull_and_update",
    ):
        e = calls[name]
        lines.append(f"| {name} | {_fmt(e['n'])} | {e['mean']} | {e['p50']} | {e['p99']} |")
    for name, e in steps.items():
        lines.append(
            f"| step: {name} (every event) | {_fmt(e['n'])} | {e['mean']} | {e['p50']} | {e['p99']} |"
        )
    lines += [
        "",
        f"Offer scoring covers all {calls['offers_in_catalogue']} catalogue offers. The replay "
        f"ran at {cost['replay_events_per_second']:,.0f} events/s with the harness's "
        "observers (including the plain HalfSpaceTrees baseline at "
        f"{_fmt(anomalies['transaction_flags']['plain_half_space_trees']['us_per_transaction'], 1)} µs per "
        "transaction).",
        "",
    ]
    lines += ["## Reading the figures", "", *(f"- {n}" for n in _findings(report)), ""]
    return "\n".join(lines)


def write_reports(report: dict[str, Any], out: Path, command: str) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "models.json", out / "models.md"
    json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
    md_path.write_text(markdown(report, command))
    return json_path, md_path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a small run (< 60 s)")
    parser.add_argument("--customers", type=int)
    parser.add_argument("--days", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument(
        "--out",
        type=Path,
        help="report directory (default benchmarks/reports; with --quick a temporary one)",
    )
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="only rewrite the Markdown report from an existing models.json",
    )
    args = parser.parse_args(argv)
    if args.render is not None:
        report = json.loads(args.render.read_text())
        md_path = args.render.with_suffix(".md")
        md_path.write_text(markdown(report, report.get("command", "python -m benchmarks.models")))
        _log(f"wrote {md_path}")
        return
    size = QUICK if args.quick else FULL
    overrides = {
        k: v
        for k, v in (("customers", args.customers), ("days", args.days), ("seed", args.seed))
        if v is not None
    }
    size = Size(**{**asdict(size), **overrides})
    out = args.out
    if out is None:
        out = (
            Path(os.environ.get("TMPDIR", "/tmp")) / "crmstream-models-quick"
            if args.quick
            else REPORTS
        )
    report = run(size)
    report["verdicts"] = _verdicts(report)
    command = "python -m benchmarks.models" + (" --quick" if args.quick else "")
    command += "".join(f" --{k} {v}" for k, v in overrides.items())
    report["command"] = command
    json_path, md_path = write_reports(report, out, command)
    _log(f"wrote {json_path} and {md_path}")
    for name, verdict in report["verdicts"].items():
        _log(f"  {name}: {verdict}")


if __name__ == "__main__":
    main()
