"""`crmstream backtest`: file reading, exact metrics, prequential order and the command."""

from __future__ import annotations

import doctest
import gzip
import json
import math
import random
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import online_models.feedback
from crmstream.backtest import (
    BacktestError,
    BacktestOptions,
    ColumnMapping,
    RowEncoder,
    average_precision,
    canonical,
    detect_format,
    roc_auc,
    run_backtest,
    run_prequential,
)
from crmstream.cli import app
from online_models.feedback import FeedbackReranker

REQUIRED = (
    "rows",
    "positives",
    "roc_auc",
    "pr_auc",
    "log_loss",
    "precision_at_budget",
    "recall_at_budget",
    "events_per_second",
)
T0 = datetime(2024, 3, 1, 9, 0, tzinfo=timezone.utc)


# ----------------------------------------------------------------- generated files


def separable_rows(n: int = 600, seed: int = 3) -> list[dict[str, Any]]:
    """Rows whose label is exactly `score > 0`, plus noise, a segment, an id and a time.

    The margin keeps the label separable for every state the online model passes through,
    not only for its last one (prequential scores come from many states).
    """
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        score = rng.choice([-1, 1]) * rng.uniform(0.5, 2)  # a margin around 0
        rows.append(
            {
                "customer_id": f"C{i:05d}",
                "score": round(score, 3),
                "noise": round(rng.gauss(0, 1), 3),
                "segment": rng.choice(["mass", "affluent", "student"]),
                "at": (T0 + timedelta(minutes=i)).isoformat(),
                "churned": "yes" if score > 0 else "no",
            }
        )
    return rows


def write_csv(path: Path, rows: list[dict[str, Any]], delimiter: str = ",") -> Path:
    lines = [delimiter.join(rows[0])]
    for row in rows:
        values = [str(v) for v in row.values()]
        if delimiter == ";":  # as a locale with decimal commas would export it
            values = [v.replace(".", ",") if _is_decimal(v) else v for v in values]
        lines.append(delimiter.join(values))
    text = "\n".join(lines) + "\n"
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def _is_decimal(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return "." in text


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def options(path: Path, **overrides: Any) -> BacktestOptions:
    given: dict[str, Any] = {
        "model": "churn",
        "data": path,
        "label": "churned",
        "model_name": "logistic",
        "drop": ("customer_id",),
        "budget": 0.1,
    }
    given.update(overrides)
    return BacktestOptions(**given)


# ----------------------------------------------------------------- metrics


def brute_force_auc(scores: list[float], labels: list[bool]) -> float:
    rows = list(zip(scores, labels, strict=True))
    pairs = [(p, n) for p, yp in rows if yp for n, yn in rows if not yn]
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)


def brute_force_ap(scores: list[float], labels: list[bool]) -> float:
    precisions = []
    for s, y in zip(scores, labels, strict=True):
        if y:
            at_or_above = [yy for ss, yy in zip(scores, labels, strict=True) if ss >= s]
            precisions.append(sum(at_or_above) / len(at_or_above))
    return sum(precisions) / len(precisions)


@pytest.mark.parametrize("seed", range(20))
def test_exact_auc_and_average_precision_match_brute_force_with_ties(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(2, 40)
    scores = [round(rng.random(), 1) for _ in range(n)]  # one decimal: many ties
    labels = [rng.random() < 0.4 for _ in range(n)]
    labels[0], labels[-1] = True, False
    assert roc_auc(scores, labels) == pytest.approx(brute_force_auc(scores, labels), abs=1e-12)
    assert average_precision(scores, labels) == pytest.approx(
        brute_force_ap(scores, labels), abs=1e-12
    )


def test_metrics_are_undefined_not_invented_without_both_classes() -> None:
    assert roc_auc([0.1, 0.2], [True, True]) is None
    assert average_precision([0.1, 0.2], [False, False]) is None
    assert roc_auc([0.9, 0.1], [True, False]) == 1.0
    assert roc_auc([0.5, 0.5], [True, False]) == 0.5


# ----------------------------------------------------------------- known answers


def test_separable_label_scores_perfectly_after_warmup(tmp_path: Path) -> None:
    rows = separable_rows()
    path = write_csv(tmp_path / "s.csv", rows)
    report = run_backtest(options(path, drop=("customer_id", "at"), warmup=300))

    counted = rows[300:]
    assert report["rows"] == len(counted)
    assert report["positives"] == sum(r["churned"] == "yes" for r in counted)
    assert report["roc_auc"] == 1.0
    assert report["pr_auc"] == 1.0
    assert report["precision_at_budget"] == 1.0
    assert 0 < report["recall_at_budget"] < 1
    assert report["log_loss"] < 0.4
    assert report["events_per_second"] > 0
    assert report["model"]["name"] == "logistic"
    assert report["columns"]["positive"] == "yes"
    assert report["columns"]["dropped"] == ["customer_id", "at"]
    assert report["columns"]["numeric"] == ["score", "noise"]
    assert report["columns"]["categorical"] == ["segment"]
    assert report["warnings"] == []


def test_every_format_gives_the_same_report(tmp_path: Path) -> None:
    rows = separable_rows(n=300)
    files = [
        write_csv(tmp_path / "comma.csv", rows),
        write_csv(tmp_path / "semicolon.csv", rows, delimiter=";"),
        write_csv(tmp_path / "zipped.csv.gz", rows),
        write_jsonl(tmp_path / "rows.jsonl", rows),
    ]
    formats = [detect_format(path) for path in files]
    assert [(f.kind, f.delimiter, f.compressed) for f in formats] == [
        ("csv", ",", False),
        ("csv", ";", False),
        ("csv", ",", True),
        ("jsonl", None, False),
    ]
    metrics = ("rows", "positives", "roc_auc", "pr_auc", "log_loss", "precision_at_budget")
    reports = [run_backtest(options(path, drop=("customer_id", "at"))) for path in files]
    assert reports[1]["columns"]["decimal_comma"] is True
    assert reports[1]["columns"]["numeric"] == ["score", "noise"]
    for report in reports[1:]:
        assert {m: report[m] for m in metrics} == {m: reports[0][m] for m in metrics}


def test_excel_sep_line_names_the_delimiter(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "excel.csv", separable_rows(n=120), delimiter=";")
    path.write_text("sep=;\n" + path.read_text())
    fmt = detect_format(path)
    assert (fmt.delimiter, fmt.sep_line) == (";", True)
    report = run_backtest(options(path, drop=("customer_id", "at")))
    assert report["rows"] == 120
    assert report["columns"]["numeric"] == ["score", "noise"]


def test_time_column_restores_the_order_of_a_shuffled_file(tmp_path: Path) -> None:
    rows = separable_rows(n=300)
    in_order = run_backtest(
        options(write_csv(tmp_path / "a.csv", rows), drop=("customer_id", "at"))
    )
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    for row in shuffled:  # the same instants, written in other timezones and with "Z"
        moment = datetime.fromisoformat(row["at"])
        row["at"] = moment.astimezone(timezone(timedelta(hours=2))).isoformat()
    shuffled[0]["at"] = datetime.fromisoformat(shuffled[0]["at"]).astimezone(timezone.utc)
    shuffled[0]["at"] = shuffled[0]["at"].strftime("%Y-%m-%dT%H:%M:%SZ")
    path = write_csv(tmp_path / "b.csv", shuffled)

    unordered = run_backtest(options(path, drop=("customer_id", "at")))
    ordered = run_backtest(options(path, time="at"))

    assert ordered["columns"]["time"] == "at"
    metrics = ("rows", "positives", "roc_auc", "pr_auc", "log_loss", "flagged")
    assert {m: ordered[m] for m in metrics} == {m: in_order[m] for m in metrics}
    assert unordered["log_loss"] != in_order["log_loss"]


def test_numeric_times_order_rows_too(tmp_path: Path) -> None:
    rows = separable_rows(n=200)
    for i, row in enumerate(rows):
        row["at"] = 1_700_000_000 + i
    expected = run_backtest(
        options(write_jsonl(tmp_path / "a.jsonl", rows), drop=("customer_id", "at"))
    )
    reversed_path = write_jsonl(tmp_path / "b.jsonl", rows[::-1])
    assert run_backtest(options(reversed_path, time="at"))["log_loss"] == expected["log_loss"]


def test_categorical_columns_are_one_hot_and_dropped_columns_unused(tmp_path: Path) -> None:
    rows = [
        {"customer_id": f"C{i}", "mcc": "0742" if i % 2 else "5411", "segment": "mass",
         "amount": "12.5", "churned": i % 2}
        for i in range(20)
    ]  # fmt: skip
    path = write_csv(tmp_path / "c.csv", rows)
    report = run_backtest(options(path, categorical=("mcc",)))
    columns = report["columns"]
    assert columns["categorical"] == ["mcc", "segment"]
    assert columns["numeric"] == ["amount"]
    assert columns["positive"] == "1"
    mapping = ColumnMapping(
        label="churned", positive="1", positive_rule="", time=None, dropped=("customer_id",),
        numeric=("amount",), categorical=("mcc", "segment"), empty=(), decimal_comma=False,
    )  # fmt: skip
    encoder = RowEncoder(mapping)
    assert encoder.features(rows[0]) == {"amount": 12.5, "mcc=5411": 1.0, "segment=mass": 1.0}
    assert encoder.features({**rows[1], "segment": ""}) == {
        "amount": 12.5,
        "mcc=5411": 0.0,  # known categories this row is not are explicit zeros
        "mcc=0742": 1.0,
        "segment=mass": 0.0,
    }
    assert encoder.label({"churned": "1.0"}) is True


def test_a_categorical_column_alone_is_learned(tmp_path: Path) -> None:
    rng = random.Random(4)
    rows = []
    for _ in range(400):
        segment = rng.choice(["student", "private", "mass"])
        rows.append({"segment": segment, "churned": "Y" if segment == "student" else "N"})
    report = run_backtest(options(write_csv(tmp_path / "c.csv", rows), drop=(), warmup=200))
    assert report["columns"]["categorical"] == ["segment"]
    assert report["columns"]["positive"] == "Y"
    assert report["roc_auc"] == 1.0


# ----------------------------------------------------------------- prequential order


class PeekingScorer:
    """Remembers every label it learned: perfect if a row's label were learned first."""

    name = "peeking"
    probabilistic = True

    def __init__(self) -> None:
        self.memory: dict[float, bool] = {}
        self.calls: list[tuple[str, float]] = []

    def score_one(self, x: dict[str, float]) -> tuple[float, Any]:
        self.calls.append(("score", x["row"]))
        known = self.memory.get(x["row"])
        return (0.5 if known is None else float(known)), None

    def learn_one(self, x: dict[str, float], y: bool, context: Any) -> None:
        self.calls.append(("learn", x["row"]))
        self.memory[x["row"]] = y


def test_a_row_is_scored_before_its_own_label_is_learned(tmp_path: Path) -> None:
    rows = [{"row": i, "churned": i % 3 == 0} for i in range(90)]
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    report = run_backtest(options(path, drop=()), scorer=PeekingScorer())
    assert report["roc_auc"] == 0.5  # it never saw a row's label before scoring it
    assert report["log_loss"] == pytest.approx(-math.log(0.5))

    peeker = PeekingScorer()
    stream = [({"row": float(i)}, i % 3 == 0) for i in range(6)]
    run_prequential(stream, peeker, budget=0.1)
    assert peeker.calls[:4] == [("score", 0), ("learn", 0), ("score", 1), ("learn", 1)]


def test_feedback_delay_learns_each_label_that_many_rows_later() -> None:
    peeker = PeekingScorer()
    stream = [({"row": float(i)}, True) for i in range(6)]
    run_prequential(stream, peeker, budget=0.1, feedback_delay=2)
    assert peeker.calls == [
        ("score", 0), ("score", 1), ("score", 2), ("learn", 0), ("score", 3), ("learn", 1),
        ("score", 4), ("learn", 2), ("score", 5), ("learn", 3),
    ]  # fmt: skip


def test_budget_flags_the_top_fraction_as_the_rows_come() -> None:
    class Constant:
        name, probabilistic = "ordered", False

        def score_one(self, x: dict[str, float]) -> tuple[float, Any]:
            return x["s"], None

        def learn_one(self, x: dict[str, float], y: bool, context: Any) -> None:
            pass

    rng = random.Random(8)
    stream = [({"s": s}, s > 0.9) for s in (rng.random() for _ in range(5000))]
    replay = run_prequential(stream, Constant(), budget=0.1)
    summary = replay.evaluation.summary(probabilistic=False)
    assert summary["flagged"] == pytest.approx(0.1 * 4900, rel=0.1)  # after 100 warm-up
    assert summary["precision_at_budget"] > 0.9
    assert summary["recall_at_budget"] > 0.9


def test_rows_tied_at_the_budget_quantile_are_all_flagged() -> None:
    stream = [({"row": float(i)}, i % 2 == 0) for i in range(300)]
    replay = run_prequential(stream, PeekingScorer(), budget=0.05)  # every score is 0.5
    summary = replay.evaluation.summary(probabilistic=True)
    assert summary["flagged"] == 100  # all after the 200-score warm-up: all at the quantile
    assert summary["precision_at_budget"] == 0.5


# ----------------------------------------------------------------- labels


def multi_class_file(tmp_path: Path) -> Path:
    rows = [{"x": i, "outcome": ["kept", "closed", "dormant"][i % 3]} for i in range(60)]
    return write_csv(tmp_path / "m.csv", rows)


def test_positive_selects_the_class_and_the_rest_are_negative(tmp_path: Path) -> None:
    path = multi_class_file(tmp_path)
    report = run_backtest(options(path, label="outcome", drop=(), positive="closed"))
    assert report["positives"] == 20
    assert report["columns"]["positive"] == "closed"
    with pytest.raises(BacktestError, match=r"3 values .*--positive"):
        run_backtest(options(path, label="outcome", drop=()))


def test_rows_without_a_label_are_skipped_and_counted(tmp_path: Path) -> None:
    rows = [{"x": i, "churned": i % 2} for i in range(40)]
    rows[3]["churned"] = None
    del rows[5]["churned"]
    rows[7]["churned"] = "NA"
    report = run_backtest(options(write_jsonl(tmp_path / "u.jsonl", rows), drop=()))
    assert report["rows"] == 37
    assert report["data"]["rows_without_label"] == 3
    assert "3 rows have no label" in report["warnings"][0]


def test_two_valued_labels_choose_the_positive_plainly() -> None:
    from collections import Counter

    from crmstream.backtest import choose_positive

    assert choose_positive(Counter({"0": 9, "1": 1}), None, "y")[0] == "1"
    assert choose_positive(Counter({"-1": 9, "1": 1}), None, "y")[0] == "1"
    assert choose_positive(Counter({"false": 5, "true": 5}), None, "y")[0] == "true"
    assert choose_positive(Counter({"stayed": 9, "left": 1}), None, "y")[0] == "left"
    assert choose_positive(Counter({"0": 9}), None, "y")[0] is None
    assert canonical("1.0") == canonical(1) == "1"
    assert canonical("TRUE") == canonical(True) == "true"


# ----------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("content", "overrides", "message"),
    [
        ("a,b\n1,2\n", {"label": "churned"}, r"no label column 'churned'.*columns are: a, b"),
        ("a,churned\n1,0\n", {"drop": ("nope",)}, r"--drop: no column 'nope'"),
        ("a,churned\n1,0\n2\n", {"drop": ()}, r"line 3 has 1 fields, the header has 2"),
        ("", {}, r"is empty"),
        ("a,churned\n", {"drop": ()}, r"no rows"),
        ('[{"a": 1}]', {}, r"JSON array"),
        ('{"a": 1, "churned": 0}\n{"a": \n', {"drop": ()}, r"line 2 is not valid JSON"),
        ("a,churned,t\n1,0,yesterday\n", {"drop": (), "time": "t"}, r"neither an ISO"),
    ],
)
def test_bad_input_is_named(
    tmp_path: Path, content: str, overrides: dict[str, Any], message: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(BacktestError, match=message):
        run_backtest(options(path, **overrides))


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda p: None, r"does not exist"),
        (lambda p: p.write_bytes(gzip.compress(b"a,churned\n" * 500)[:40]), r"truncated gzip"),
        (lambda p: p.write_bytes("a,churned\ncafé,1\n".encode("latin-1")), r"not UTF-8.*iconv"),
        (lambda p: p.write_bytes(b"PK\x03\x04rest"), r"zip archive"),
        (lambda p: p.mkdir(), r"is a directory"),
    ],
)
def test_unreadable_files_are_named(
    tmp_path: Path, write: Callable[[Path], None], message: str
) -> None:
    path = tmp_path / "data.csv"
    write(path)
    with pytest.raises(BacktestError, match=message):
        run_backtest(options(path, drop=()))


# ----------------------------------------------------------------- the command


def invoke(*args: str) -> Any:
    return CliRunner().invoke(app, ["backtest", *args])


def test_command_prints_the_table_and_writes_the_json_report(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "s.csv.gz", separable_rows(n=300))
    out = tmp_path / "reports" / "churn.json"
    result = invoke(
        "--model", "churn", "--data", str(data), "--label", "churned", "--positive", "yes",
        "--drop", "customer_id", "--time", "at", "--budget", "0.05", "--report", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "ROC AUC" in result.output
    report = json.loads(out.read_text())
    for name in REQUIRED:
        assert name in report
    assert report["rows"] == 300
    assert report["model"] == {
        "role": "churn",
        "name": "logistic_small_step",
        "configured": "logistic_small_step",
        "seed": 42,
        "input": "every feature column",
        "gives_probabilities": True,
    }
    assert report["columns"]["label"] == "churned"
    assert report["data"]["compressed"] is True


def test_command_runs_the_anomaly_and_propensity_models(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "s.csv", separable_rows(n=300))
    for model, extra in (("anomaly", ["--feedback-delay", "10"]), ("propensity", [])):
        out = tmp_path / f"{model}.json"
        result = invoke(
            "--model", model, "--data", str(data), "--label", "churned",
            "--drop", "customer_id,at", "--report", str(out), *extra,
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        report = json.loads(out.read_text())
        assert report["rows"] == 300
        assert (report["log_loss"] is None) == (model == "anomaly")
    assert (
        "feedback_logistic" in json.loads((tmp_path / "anomaly.json").read_text())["model"]["name"]
    )


def test_command_exits_2_naming_the_problem(tmp_path: Path) -> None:
    path = multi_class_file(tmp_path)

    def failure(*args: str) -> str:
        result = invoke("--model", "churn", *args)
        assert result.exit_code == 2
        return " ".join(result.output.split())  # the console wraps long lines

    assert "--positive" in failure("--data", str(path), "--label", "outcome")
    assert "no label column 'missing'" in failure("--data", str(path), "--label", "missing")
    assert "does not exist" in failure("--data", str(tmp_path / "nope.csv"), "--label", "y")
    assert "--budget" in failure("--data", str(path), "--label", "outcome", "--budget", "2")


# ----------------------------------------------------------------- feedback layer


def test_feedback_reranker_doctest_runs() -> None:
    failures, tried = doctest.testmod(online_models.feedback)
    assert tried > 0 and failures == 0


def test_feedback_reranker_answers_the_detector_rank_until_it_saw_both_outcomes() -> None:
    reranker = FeedbackReranker(min_per_class=3, window=100, warmup=5)
    for score in (0.1, 0.2, 0.3, 0.4, 0.5):
        reranker.rank_one({"a": 1.0}, score)
    for _ in range(10):
        reranker.learn_one({"a": 1.0}, True, detector_score=0.9)
    assert not reranker.warm  # positives only: no say yet
    assert reranker.rank_one({"a": 1.0}, 0.45) == 0.8
    for _ in range(3):
        reranker.learn_one({"a": 0.0}, False, detector_score=0.1)
    assert reranker.warm
    assert 0.0 <= reranker.rank_one({"a": 1.0}, 0.45) <= 1.0
