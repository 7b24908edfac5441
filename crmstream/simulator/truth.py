"""Ground truth: what was planted in the stream, to measure the engine's models against.

Facts describe only what was actually yielded: a run cut short (by `--duration`, say)
lists only the fraudulent transactions that were emitted and only closures that
happened. One JSON object per line, each with a `fact` field:

- `offer_needs`: customer_id, needs (offer ids the customer would welcome; fixed at start)
- `churner`: customer_id, drift_start, closure (time of the `account_closed` event, or
  "dormant", or null while still drifting at the end), silent_from, ending
- `fraud_episode`: customer_id, type (ato or card_testing), start, end, transaction_ids,
  device_id (the fraudster's device for ato)
- `summary`, last: counts of everything above, of well-formed events by topic (re-sent
  duplicates included), of delivery faults, and of malformed records by reason
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import orjson

from crmstream.simulator.clock import iso_seconds
from crmstream.simulator.config import SimEvent, SimulationConfig
from crmstream.simulator.records import Tags


class GroundTruth:
    """Collects facts while a run yields events; streams them to `path` if given.

    Without a path the facts stay in `facts` (for tests and small runs) and can be
    written later with `write`. Facts about customers are written as each customer is
    announced, so a streamed truth file uses little memory however large the run.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self.facts: list[dict[str, Any]] = []
        self.summary: dict[str, Any] = {}
        self.counts: Counter[str] = Counter()
        self._file: IO[bytes] | None = None
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._file = Path(path).open("wb")  # noqa: SIM115 - finish() closes it

    def _add(self, fact: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(orjson.dumps(fact) + b"\n")
        else:
            self.facts.append(fact)

    def announced(self, customer_id: str, needs: Iterable[str]) -> None:
        self._add({"fact": "offer_needs", "customer_id": customer_id, "needs": list(needs)})

    def observe(self, event: SimEvent, tags: Tags) -> None:
        """Account for one yielded event carrying tags."""
        for tag in tags:
            if tag.__class__ is str:
                self.counts[tag] += 1
            else:
                tag.observe(event)

    def finish(
        self,
        config: SimulationConfig,
        churn_plans: Iterable[Any],
        episodes: Iterable[Any],
        events: Counter[str],
        now: float,
    ) -> None:
        """Write the churn and fraud facts and the summary, as far as the run got."""
        churners = [fact for plan in churn_plans if (fact := plan.fact(now)) is not None]
        frauds = [fact for episode in episodes if (fact := episode.fact()) is not None]
        for fact in (*churners, *frauds):
            self._add(fact)
        counts = self.counts
        self.summary = {
            "fact": "summary",
            "seed": config.seed,
            "customers": config.customers,
            "start": iso_seconds(config.start_ts),
            "end": iso_seconds(config.end_ts),
            "emitted_until": iso_seconds(now),
            "events": dict(sorted(events.items())),
            "churners": {
                "total": len(churners),
                "closed": sum(1 for f in churners if f["closure"] not in (None, "dormant")),
                "dormant": sum(1 for f in churners if f["closure"] == "dormant"),
                "drifting": sum(1 for f in churners if f["closure"] is None),
            },
            "fraud": {
                "episodes": len(frauds),
                "ato": sum(1 for f in frauds if f["type"] == "ato"),
                "card_testing": sum(1 for f in frauds if f["type"] == "card_testing"),
                "transactions": sum(len(f["transaction_ids"]) for f in frauds),
                "confirmed": counts["fraud_confirmed"],
                "false_alarms": counts["fraud_false_alarm"],
            },
            "offers": {
                name: counts[f"offer_{name}"]
                for name in ("impression", "accepted", "declined", "converted")
            },
            "customer_updates": counts["customer_update"],
            "closure_requests": counts["closure_request"],
            "faults": {name: counts[name] for name in ("out_of_order", "late", "duplicate")},
            "bad_records": {
                name.removeprefix("bad:"): n
                for name, n in sorted(counts.items())
                if name.startswith("bad:")
            },
        }
        self._add(self.summary)
        self.close()

    def close(self) -> None:
        """Close the streamed file; `finish` does this, calling it again is harmless."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def write(self, path: str | Path) -> None:
        """Write facts kept in memory as JSONL."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("wb") as out:
            for fact in self.facts:
                out.write(orjson.dumps(fact) + b"\n")


def read_ground_truth(path: str | Path) -> list[dict[str, Any]]:
    """The facts of a ground-truth file, summary last."""
    with Path(path).open("rb") as lines:
        return [orjson.loads(line) for line in lines if line.strip()]
