"""River's bundled real datasets through `crmstream backtest`, against River's plain models.

Why: the backtest's own tests use generated data with known answers; this checks the
configured models on real, public data that ships inside the river package (no download:
this must run on a machine without internet), and measures them against River's plain
estimators on the same rows, through the same prequential code path (`run_backtest`).

    python -m benchmarks.river_datasets [--repeats 5] [--out benchmarks/reports]

Writes `river_datasets.json` (every report in full) and `river_datasets.md` (a summary).
Quality figures are deterministic (fixed seeds; the repeats check it); timings are the
best and the median of the repeats.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import platform
import statistics
import subprocess
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from river import anomaly, compose, datasets, linear_model, preprocessing

from crmstream.backtest import (
    REGISTRY_ROLE,
    AnomalyScorer,
    BacktestOptions,
    ClassifierScorer,
    Scorer,
    run_backtest,
)
from crmstream.settings import load_settings
from online_models.calibration import RollingQuantile
from online_models.registry import ROLES, build

REPORTS = Path(__file__).parent / "reports"
BUDGET = 0.05
FEEDBACK_DELAYS = (1000, 10_000)
# Datasets River documents; the bundled ones are read from the package, the rest download.
CANDIDATES = (
    "Phishing",
    "Bananas",
    "Shuttle",
    "ImageSegments",
    "SolarFlare",
    "Elec2",
    "CreditCard",
    "HTTP",
    "SMTP",
)
QUALITY = ("rows", "positives", "roc_auc", "pr_auc", "log_loss", "flagged")


@dataclass(frozen=True)
class Export:
    """One dataset written to a file the way a user would hand it to the backtest."""

    name: str
    path: Path
    label: str
    note: str


def offline_datasets() -> dict[str, str]:
    """Which candidate datasets load from the installed package, and why the others don't.

    Bundled datasets are `FileDataset`s whose file is inside the package; the others are
    fetched on first use, which this benchmark must not do.
    """
    found = {}
    for name in CANDIDATES:
        dataset = getattr(datasets, name)()
        if isinstance(dataset, datasets.base.FileDataset) and Path(dataset.path).is_file():
            next(iter(dataset))  # it really reads, without network
            found[name] = f"bundled ({Path(dataset.path).name})"
        else:
            found[name] = "not bundled: downloads on first use, so not used here"
    return found


def write_csv(
    rows: Iterable[tuple[dict[str, Any], Any]], path: Path, label: str, compress: bool = False
) -> Path:
    opener: Callable[..., Any] = gzip.open if compress else open
    with opener(path, "wt", newline="") as out:
        writer = None
        for x, y in rows:
            if writer is None:
                writer = csv.writer(out)
                writer.writerow([*x, label])
            writer.writerow([*x.values(), y])
    return path


def export_datasets(folder: Path) -> list[Export]:
    """River's rows, in River's order, with River's feature names and target."""
    return [
        Export(
            "Phishing",
            write_csv(datasets.Phishing(), folder / "phishing.csv", "is_phishing"),
            "is_phishing",
            "UCI website phishing; positive = phishing (True)",
        ),
        Export(
            "Bananas",
            write_csv(datasets.Bananas(), folder / "bananas.csv", "label"),
            "label",
            "OpenML banana-shaped clusters (2 features, not linearly separable)",
        ),
        Export(
            "Shuttle",
            write_csv(datasets.Shuttle(), folder / "shuttle.csv.gz", "anomaly", compress=True),
            "anomaly",
            "UCI Statlog Shuttle as the ODDS anomaly benchmark: the rare classes are the "
            "anomalies (anomaly = 1, ~7%); the label is used only to evaluate",
        ),
    ]


# ----------------------------------------------------------------- River's plain models


def river_logistic() -> Scorer:
    return ClassifierScorer(
        compose.Pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression()),
        "river StandardScaler|LogisticRegression()",
    )


def river_half_space_trees(seed: int) -> Scorer:
    return AnomalyScorer(
        anomaly.HalfSpaceTrees(seed=seed), f"river HalfSpaceTrees(seed={seed})", None
    )


def river_scaled_half_space_trees(seed: int) -> Scorer:
    """River's documented use of the detector: features min-max scaled into [0, 1]."""
    detector = compose.Pipeline(preprocessing.MinMaxScaler(), anomaly.HalfSpaceTrees(seed=seed))
    return AnomalyScorer(detector, f"river MinMaxScaler|HalfSpaceTrees(seed={seed})", None)


class EngineRank:
    """The configured detector scored as the engine publishes it: its raw score's rank
    among the shard's last 5,000 (after 500), which is also what alerts are cut from."""

    probabilistic = False

    def __init__(self, detector: Any, name: str) -> None:
        self.detector = detector
        self.name = name
        self.ranks = RollingQuantile(window=5000, warmup=500)

    def score_one(self, x: dict[str, float]) -> tuple[float, Any]:
        raw = self.detector.score_one(x)
        rank = self.ranks.rank(raw)
        self.ranks.learn_one(raw)
        self.detector.learn_one(x)
        return rank, raw

    def learn_one(self, x: dict[str, float], y: bool, context: Any) -> None:
        pass


def engine_rank(options: BacktestOptions) -> Scorer:
    detector = build("anomaly", options.model_name, options.seed)
    pipeline = getattr(detector, "pipeline", detector)
    return EngineRank(pipeline, f"{options.model_name} as ranked by the engine")


# ----------------------------------------------------------------- runs


@dataclass(frozen=True)
class Run:
    dataset: str
    kind: str  # "crmstream" (a model of the registry) or "river" (a plain estimator)
    options: BacktestOptions
    scorer: Callable[[], Scorer] | None = None  # None: the registry model named in options
    configured: bool = False  # the model the configuration serves the role with


def _registry_runs(dataset: str, base: BacktestOptions, role: str, configured: str) -> list[Run]:
    """Every model the registry offers for the role, the configured one marked."""
    names = sorted(ROLES[REGISTRY_ROLE[role]], key=lambda name: name != configured)
    return [
        Run(
            dataset,
            "crmstream",
            replace(base, model=role, model_name=name),
            None,
            name == configured,
        )
        for name in names
    ]


def _anomaly_runs(dataset: str, detector: BacktestOptions, seed: int) -> list[Run]:
    runs = [
        Run(dataset, "crmstream", detector, None, True),
        Run(dataset, "crmstream", detector, lambda: engine_rank(detector), True),
    ]
    runs += [
        Run(dataset, "crmstream", replace(detector, feedback_delay=delay), None, True)
        for delay in FEEDBACK_DELAYS
    ]
    runs.append(Run(dataset, "river", detector, lambda: river_half_space_trees(seed)))
    runs.append(Run(dataset, "river", detector, lambda: river_scaled_half_space_trees(seed)))
    return runs


def plan(exports: list[Export], models: Any, seed: int) -> list[Run]:
    runs = []
    for export in exports:
        base = BacktestOptions(
            model="churn",
            data=export.path,
            label=export.label,
            model_name=models.churn,
            seed=seed,
            budget=BUDGET,
        )
        if export.name == "Shuttle":
            detector = replace(base, model="anomaly", model_name=models.anomaly)
            runs += _anomaly_runs(export.name, detector, seed)
            continue
        runs += _registry_runs(export.name, base, "churn", models.churn)
        runs += _registry_runs(export.name, base, "propensity", models.offers)
        runs.append(Run(export.name, "river", base, river_logistic))
    return runs


def replay(run: Run) -> dict[str, Any]:
    return run_backtest(run.options, scorer=run.scorer() if run.scorer else None)


def measure(runs: list[Run], repeats: int) -> list[dict[str, Any]]:
    """Every run `repeats` times, in rounds over all runs, so that a burst of other work on
    the machine slows one round of every model rather than every repeat of one model.
    Quality comes from the first round (and must not change); timings are the best and
    the median over the rounds."""
    rounds = []
    for number in range(repeats):
        print(f"round {number + 1} of {repeats}", flush=True)
        rounds.append([replay(run) for run in runs])
    return [summarise(run, [r[i] for r in rounds]) for i, run in enumerate(runs)]


def summarise(run: Run, reports: list[dict[str, Any]]) -> dict[str, Any]:
    first = reports[0]
    for other in reports[1:]:
        if any(other[key] != first[key] for key in QUALITY):
            raise RuntimeError(f"{run.dataset} {first['model']['name']}: results vary by run")
    costs = [r["model_us_per_event"] for r in reports]
    return {
        **first,
        "dataset": run.dataset,
        "kind": run.kind,
        "configured": run.configured,
        "events_per_second": statistics.median(r["events_per_second"] for r in reports),
        "model_us_per_event": statistics.median(costs),
        "model_us_per_event_min": min(costs),
        "model_us_per_event_runs": costs,
        "seconds": statistics.median(r["seconds"] for r in reports),
    }


# ----------------------------------------------------------------- environment


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _load() -> list[float] | None:
    """Other work on the machine stretches timings; the load says how much there was."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parent,
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out.stdout.strip()


def environment() -> dict[str, Any]:
    return {
        "machine": {
            "cpu": _cpu(),
            "cores": os.cpu_count(),
            "system": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(),
            "load_average_at_start": _load(),
        },
        "versions": {
            package: metadata.version(package) for package in ("river", "numpy", "bytewax")
        }
        | {"crmstream": f"{metadata.version('crmstream')} (git {_commit()})"},
    }


# ----------------------------------------------------------------- summary


def _cell(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _model_label(result: dict[str, Any], for_table: bool = True) -> str:
    model = result["model"]
    name = model["name"]
    if for_table:
        name = name.replace("|", "\\|")  # a bare pipe would end the table cell
    label = f"`{name}`"
    if result["kind"] == "crmstream":
        label = f"crmstream {model['role']}: {label}"
        if result["configured"] and result["feedback_delay"] is None:
            label += " (configured)"
    if result["feedback_delay"] is not None:
        label += f", labels {result['feedback_delay']:,} rows late"
    return label


def markdown(summary: dict[str, Any]) -> str:
    env = summary["environment"]
    machine, versions = env["machine"], env["versions"]
    lines = [
        "# River's bundled datasets through `crmstream backtest`",
        "",
        "Generated by `python -m benchmarks.river_datasets` "
        f"({summary['repeats']} repeats; quality is identical across repeats; µs/event is "
        "the best and the median run, events/s the median). Every row is scored, then learned (prequential), through "
        "`crmstream.backtest.run_backtest`, the code path of the command.",
        "",
        f"- machine: {machine['cpu']}, {machine['cores']} cores, {machine['system']}, "
        f"Python {machine['python']}; load average (1, 5, 15 min) "
        f"{machine['load_average_at_start']} at start, {machine['load_average_at_end']} at "
        "the end (other work stretches the timings)",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"- seeds: models.seed = {summary['seed']} (HalfSpaceTrees, configured and plain); "
        "River's LogisticRegression has no randomness",
        f"- alert budget: {summary['budget']:.0%}: a row is flagged when its score is at or "
        "above the 95th percentile of the scores before it (RollingQuantile over 5,000, "
        "after 200; ties at the percentile are all flagged), so the flagged share shows "
        "how well the budget held",
        "- events/s: rows per second of the whole replay (reading, encoding, model, "
        "metrics); µs/event: model only (score + learn)",
        "",
        "Datasets checked (only bundled ones are used; HTTP is blocked here):",
        "",
    ]
    lines += [f"- {name}: {status}" for name, status in summary["offline"].items()]
    for export in summary["datasets"]:
        lines += ["", f"## {export['name']}", "", export["note"], ""]
        lines += [
            "| model | rows | positives | ROC AUC | PR AUC | log loss | precision@5% | "
            "recall@5% | flagged | µs/event best (median) | events/s |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for r in (r for r in summary["runs"] if r["dataset"] == export["name"]):
            lines.append(
                f"| {_model_label(r)} | {r['rows']:,} | {r['positives']:,} | "
                f"{_cell(r['roc_auc'])} | {_cell(r['pr_auc'])} | {_cell(r['log_loss'])} | "
                f"{_cell(r['precision_at_budget'])} | {_cell(r['recall_at_budget'])} | "
                f"{r['flagged_fraction']:.1%} | {r['model_us_per_event_min']:.1f} "
                f"({r['model_us_per_event']:.1f}) | "
                f"{r['events_per_second']:,.0f} |"
            )
    lines += ["", "## Notes (written for these figures: re-check them after a model change)", ""]
    lines += [f"- {note}" for note in summary["notes"]]
    return "\n".join(lines) + "\n"


NOTES = [
    "Shuttle has no fraud; its rare classes are the anomalies of the ODDS benchmark, "
    "used here as a stand-in for fraud. Phishing and Bananas stand in for churn and "
    "offer acceptance: they test the models and the backtest, not banking behaviour.",
    "The configured detector picks named transaction features in the engine; the backtest "
    "feeds its pipeline (the same MinMaxScaler and HalfSpaceTrees, same parameters and "
    "seed) with every column of the file, so on Shuttle it is River's documented "
    "MinMaxScaler|HalfSpaceTrees, and the two rows agree exactly.",
    "Plain HalfSpaceTrees on unscaled features is far worse: it assumes features in [0, 1].",
    "'as ranked by the engine' scores each row by its raw score's rank among the previous "
    "5,000 (0 for the first 500), which is what the engine publishes and alerts on. "
    "Ranks follow drift, which lifts PR AUC over the raw scores; the tied zeros of rows "
    "200-500 are all flagged, part of why its flagged share (and the reranker's, which "
    "starts from the same ranks) exceeds 5%.",
    "'+feedback_logistic' is online_models.feedback.FeedbackReranker: each label reaches it "
    "the stated number of rows late, and the detector never sees a label. Its score is a "
    "blend of ranks, so it is compared with the engine's rank, not with the raw score.",
    "The flagged share is not the budget when the scores' distribution moves. On Phishing "
    "every classifier flags about 10-13%: their scores spread out as they grow confident, and "
    "new scores outrank the early ones the 5,000-row window still holds (13% of LinUCB's "
    "scores also tie at its 1.0 clip). The churn model's 18.8% on Bananas is its "
    "intercept climbing from the 5% prior it starts at (it answers that prior until it "
    "learned 50 rows of each class, which log loss pays for too). LinUCB on Bananas goes "
    "the other way: its early scores spread wider (95th percentile 0.58 over the first "
    "1,000 rows, 0.50 after), so fewer than 5% are flagged.",
    "Bananas is not linearly separable: every linear model stays near chance on it.",
    "µs/event is the model alone (score + learn, as timed inside the replay); events/s is "
    "the whole replay including reading and encoding the CSV. Other work on a shared "
    "machine stretches single runs (see the load average), so the best run is the closer "
    "estimate of a model's own cost; compare models by it, not by one median.",
]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs per model (timings)")
    parser.add_argument("--out", type=Path, default=REPORTS, help="folder for the reports")
    args = parser.parse_args(argv)
    settings = load_settings()
    env = environment()
    offline = offline_datasets()
    with tempfile.TemporaryDirectory(prefix="river-datasets-") as folder:
        exports = export_datasets(Path(folder))
        results = measure(plan(exports, settings.models, settings.models.seed), args.repeats)
    for result in results:
        print(
            f"{result['dataset']:9} {_model_label(result, for_table=False):70} "
            f"ROC AUC {_cell(result['roc_auc'])}  PR AUC {_cell(result['pr_auc'])}  "
            f"{result['model_us_per_event_min']:.1f} µs"
        )
    summary = {
        "environment": env,
        "seed": settings.models.seed,
        "budget": BUDGET,
        "repeats": args.repeats,
        "offline": offline,
        "datasets": [
            {"name": e.name, "file": e.path.name, "label": e.label, "note": e.note} for e in exports
        ],
        "runs": results,
        "notes": NOTES,
    }
    env["machine"]["load_average_at_end"] = _load()
    for result in results:  # the temporary folder is gone: keep the file's name only
        result["data"]["path"] = Path(result["data"]["path"]).name
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "river_datasets.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out / "river_datasets.md").write_text(markdown(summary))
    print(f"wrote {args.out / 'river_datasets.json'} and {args.out / 'river_datasets.md'}")


if __name__ == "__main__":
    main()
