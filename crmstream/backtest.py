"""`crmstream backtest`: replay a labelled file through a configured model, score then learn.

In the engine every event is scored before anything is learned from it, and labels come
later. Replaying a file the same way (prequentially: score a row, then learn its label,
optionally some rows later) measures what the live model would have achieved, without a
train/test split the live model never gets. The file is read twice: once to learn its
shape (which columns are numbers, which values the label takes, how many rows there are),
once to replay it, so a long file is never held in memory unless it must be re-ordered.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import os
import zlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from time import perf_counter, perf_counter_ns
from typing import Annotated, Any, BinaryIO, Protocol, TextIO

import orjson
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from online_models.calibration import RollingQuantile
from online_models.feedback import FeedbackReranker
from online_models.registry import build

BACKTEST_OFFER = "backtest"
DELIMITERS = (",", ";", "\t")
# Values that mean "no value" in exported files (UCI files use "?").
MISSING_TEXT = frozenset({"", "na", "n/a", "nan", "null", "none", "?"})
TRUE_WORDS = frozenset({"1", "true", "yes", "y", "t"})
FALSE_WORDS = frozenset({"0", "false", "no", "n", "f"})
# A categorical column with this many distinct values is almost surely an identifier.
DISTINCT_CAP = 10_000
# Beyond this many categories a column's one-hot features are sparse (see RowEncoder).
DENSE_LIMIT = 1000
BUDGET_WINDOW = 5000


class BacktestError(Exception):
    """Input the backtest cannot use; the message names the problem and what to do."""


class ModelRole(str, Enum):
    churn = "churn"
    anomaly = "anomaly"
    propensity = "propensity"


# Which registry role and settings key configure each backtest model.
REGISTRY_ROLE = {"churn": "churn", "anomaly": "anomaly", "propensity": "offers"}


@dataclass(frozen=True)
class BacktestOptions:
    """What to replay and how; `model_name` and `seed` come from the configuration."""

    model: str
    data: Path
    label: str
    model_name: str
    seed: int = 42
    positive: str | None = None
    time: str | None = None
    drop: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    budget: float = 0.01
    feedback_delay: int | None = None
    warmup: int = 0


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class FileFormat:
    kind: str  # "csv" or "jsonl"
    compressed: bool
    delimiter: str | None = None
    sep_line: bool = False  # Excel's "sep=;" first line, naming the delimiter


@contextmanager
def _readable(path: Path) -> Iterator[None]:
    """Turn the ways a file can be unreadable into one clear BacktestError."""
    try:
        yield
    except FileNotFoundError:
        raise BacktestError(f"{path} does not exist: check the --data path") from None
    except IsADirectoryError:
        raise BacktestError(f"{path} is a directory: pass a CSV or JSONL file") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise BacktestError(
            f"{path} is a damaged or truncated gzip file ({exc}): re-create or re-download it"
        ) from None
    except UnicodeDecodeError as exc:
        raise BacktestError(
            f"{path} is not UTF-8 text (byte {exc.start} of a chunk: {exc.reason}): "
            "re-encode it, e.g. `iconv -f latin1 -t utf-8`"
        ) from None
    except csv.Error as exc:
        raise BacktestError(f"{path} is not valid CSV: {exc}") from None
    except OSError as exc:
        raise BacktestError(f"cannot read {path}: {exc.strerror or exc}") from None


@contextmanager
def open_text(path: Path) -> Iterator[tuple[TextIO, BinaryIO]]:
    """The file as text (gunzipped when its first bytes say gzip) and its raw byte stream.

    The raw stream's position is what progress is measured by, compressed or not.
    """
    with _readable(path), path.open("rb") as raw:
        head = raw.read(4)
        raw.seek(0)
        if head.startswith(b"PK\x03\x04"):
            raise BacktestError(f"{path} is a zip archive: unzip it and pass the file inside")
        binary: BinaryIO = gzip.GzipFile(fileobj=raw) if head.startswith(b"\x1f\x8b") else raw
        text = io.TextIOWrapper(binary, encoding="utf-8-sig", newline="")
        try:
            yield text, raw
        finally:
            text.close()


def _sniff_delimiter(sample: str) -> str:
    """The candidate that splits the first lines into the same number (> 1) of fields."""
    lines = sample.splitlines()[:20]
    if len(lines) > 1:
        lines = lines[:-1]  # the last line of the sample may be cut short
    best, best_width = ",", 1
    for delimiter in DELIMITERS:
        widths = {len(row) for row in csv.reader(lines, delimiter=delimiter) if row}
        width = max(widths, default=1)
        if len(widths) == 1 and width > best_width:
            best, best_width = delimiter, width
    if best_width == 1:  # no consistent split: take the one the header splits most
        header = lines[0] if lines else ""
        best = max(DELIMITERS, key=lambda d: len(next(csv.reader([header], delimiter=d), [])))
    return best


def detect_format(path: Path) -> FileFormat:
    """CSV (comma, semicolon or tab) or JSON Lines, plain or gzipped, from the content."""
    with open_text(path) as (text, _), _readable(path):
        sample = text.read(64 * 1024)
        compressed = isinstance(text.buffer, gzip.GzipFile)
    start = sample.lstrip()
    if not start:
        raise BacktestError(f"{path} is empty: nothing to backtest")
    if start[0] == "{":
        return FileFormat("jsonl", compressed)
    if start[0] == "[":
        raise BacktestError(
            f"{path} looks like one JSON array: write one JSON object per line (JSON Lines)"
        )
    first = sample.split("\n", 1)[0].strip()
    if first.lower().startswith("sep=") and len(first) == 5:
        return FileFormat("csv", compressed, first[4], sep_line=True)
    return FileFormat("csv", compressed, _sniff_delimiter(sample))


def _flatten(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects become dotted columns, as a CSV export of them would have."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _csv_records(path: Path, text: TextIO, fmt: FileFormat) -> Iterator[tuple[int, dict[str, Any]]]:
    skipped = 1 if fmt.sep_line else 0
    if skipped:
        text.readline()
    delimiter = fmt.delimiter or ","
    reader = csv.reader(text, delimiter=delimiter)
    header = [name.strip() for name in next(reader, [])]
    if not header:
        raise BacktestError(f"{path} has no header line")
    if "" in header:
        raise BacktestError(
            f"{path}: column {header.index('') + 1} of the header has no name; name it"
        )
    duplicated = sorted(name for name, n in Counter(header).items() if n > 1)
    if duplicated:
        raise BacktestError(f"{path}: the header names {', '.join(duplicated)} more than once")
    for row in reader:
        if not row:
            continue
        if len(row) != len(header):
            raise BacktestError(
                f"{path} line {reader.line_num + skipped} has {len(row)} fields, the header has "
                f"{len(header)}: fix the line (a stray '{delimiter}' or a missing quote?)"
            )
        yield reader.line_num + skipped, dict(zip(header, row, strict=True))


def _jsonl_records(path: Path, text: TextIO) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(text, start=1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise BacktestError(f"{path} line {number} is not valid JSON: {exc}") from None
        if not isinstance(record, dict):
            raise BacktestError(f"{path} line {number} is not a JSON object")
        yield number, _flatten(record)


def iter_records(
    path: Path, fmt: FileFormat, on_position: Callable[[int], None] | None = None
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, {column: raw value}) for each row, in file order.

    CSV values are strings; JSON values keep their JSON type. `on_position` is told the
    byte position in the (possibly compressed) file every few thousand rows.
    """
    with open_text(path) as (text, raw), _readable(path):
        if fmt.kind == "jsonl":
            records = _jsonl_records(path, text)
        else:
            records = _csv_records(path, text, fmt)
        for count, item in enumerate(records, start=1):
            if on_position is not None and count % 4096 == 0:
                on_position(raw.tell())
            yield item
        if on_position is not None:
            on_position(raw.tell())


# --------------------------------------------------------------------------- values


def is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in MISSING_TEXT)


def parse_number(value: Any, decimal_comma: bool = False) -> float | None:
    """The value as a float (non-finite allowed), or None when it is not a number.

    With a semicolon separator a single comma is a decimal mark ("1,5"), as in the CSV
    exports of locales that write decimals that way.
    """
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if decimal_comma and text.count(",") == 1 and "." not in text:
        text = text.replace(",", ".")
    try:
        return float(text)
    except ValueError:
        return None


def canonical(value: Any) -> str:
    """One spelling per value, so 1, 1.0, "1" and "1.0" (and True, "TRUE") are the same."""
    if isinstance(value, bool):
        return "true" if value else "false"
    number = parse_number(value) if not isinstance(value, str) or value.strip() else None
    if number is not None and math.isfinite(number):
        return str(int(number)) if number.is_integer() else repr(number)
    text = str(value).strip()
    return text.lower() if text.lower() in ("true", "false") else text


def category(value: Any) -> str:
    """A category's name: text as written (so "05" stays "05"), other values canonical."""
    return value.strip() if isinstance(value, str) else canonical(value)


def parse_time(value: Any) -> tuple[str, float] | None:
    """("number", value) or ("datetime", epoch seconds); None when it is neither.

    A datetime without a timezone is taken as UTC so that it can be ordered with others.
    """
    number = parse_number(value)
    if number is not None and math.isfinite(number) and not isinstance(value, bool):
        return "number", number
    if not isinstance(value, str):
        return None
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return "datetime", moment.timestamp()


# --------------------------------------------------------------------------- scanning


@dataclass
class _ColumnScan:
    """What the first pass learns about one column."""

    numeric: bool = True
    values: int = 0
    distinct: set[str] = field(default_factory=set)
    nested_line: int | None = None

    def observe(self, value: Any, line: int, decimal_comma: bool) -> None:
        if is_missing(value):
            return
        self.values += 1
        if isinstance(value, list):
            self.nested_line = self.nested_line or line
            return
        if self.numeric and parse_number(value, decimal_comma) is None:
            self.numeric = False
        if len(self.distinct) < DISTINCT_CAP:
            self.distinct.add(category(value))


@dataclass
class FileScan:
    """The shape of a file: its columns in order, what they hold, its label's values."""

    rows: int = 0
    columns: dict[str, _ColumnScan] = field(default_factory=dict)
    label_counts: Counter[str] = field(default_factory=Counter)
    unlabelled: int = 0
    time_kind: str | None = None
    timeless_line: int | None = None  # first row without a time value


@dataclass(frozen=True)
class ColumnMapping:
    """How the file's columns are used; written into the report."""

    label: str
    positive: str | None
    positive_rule: str
    time: str | None
    dropped: tuple[str, ...]
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    empty: tuple[str, ...]
    decimal_comma: bool
    sparse: tuple[str, ...] = ()  # categorical columns too varied for dense one-hot

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "positive": self.positive,
            "positive_rule": self.positive_rule,
            "time": self.time,
            "dropped": list(self.dropped),
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
            "categorical_encoding": "one-hot 'column=value' features, 0.0 for the other "
            "categories seen so far (only the present one for the sparse columns)",
            "sparse_categorical": list(self.sparse),
            "empty_ignored": list(self.empty),
            "decimal_comma": self.decimal_comma,
        }


def _observe_time(scan: FileScan, value: Any, column: str, line: int, path: Path) -> None:
    if is_missing(value):
        scan.timeless_line = scan.timeless_line or line
        return
    parsed = parse_time(value)
    if parsed is None:
        raise BacktestError(
            f"{path} line {line}: time column {column!r} holds {value!r}, which is neither "
            "an ISO datetime nor a number; fix the value or leave out --time"
        )
    kind = parsed[0]
    if scan.time_kind not in (None, kind):
        raise BacktestError(
            f"{path} line {line}: time column {column!r} mixes numbers and datetimes "
            f"({value!r}); use one kind throughout"
        )
    scan.time_kind = kind


def scan_file(
    path: Path,
    fmt: FileFormat,
    options: BacktestOptions,
    on_position: Callable[[int], None] | None = None,
) -> FileScan:
    """First pass: which columns are numbers, which values the label takes, how many rows."""
    scan = FileScan()
    skip = {options.label, options.time, *options.drop}
    decimal_comma = fmt.delimiter == ";"
    for line, record in iter_records(path, fmt, on_position):
        scan.rows += 1
        if scan.rows == 1 and fmt.kind == "csv":  # a CSV header names every column: fail fast
            check_named_columns(options, list(record), path)
        for column, value in record.items():
            if column == options.label:
                if not is_missing(value):
                    scan.label_counts[canonical(value)] += 1
            elif column == options.time:
                _observe_time(scan, value, column, line, path)
            if column in skip:
                scan.columns.setdefault(column, _ColumnScan())
                continue
            column_scan = scan.columns.get(column)
            if column_scan is None:
                column_scan = scan.columns[column] = _ColumnScan()
            column_scan.observe(value, line, decimal_comma)
        if options.time is not None and options.time not in record:
            scan.timeless_line = scan.timeless_line or line
    if scan.rows == 0:
        raise BacktestError(f"{path} has a header but no rows: nothing to backtest")
    scan.unlabelled = scan.rows - sum(scan.label_counts.values())  # empty, null or absent
    return scan


# --------------------------------------------------------------------------- columns


def check_named_columns(options: BacktestOptions, columns: list[str], path: Path) -> None:
    """Every column named on the command line must be in the file (typos fail early)."""
    if options.label not in columns:
        raise BacktestError(
            f"no label column {options.label!r} in {path}; its columns are: "
            f"{', '.join(columns)} (name the label with --label COLUMN)"
        )
    for flag, names in (
        ("--time", [options.time] if options.time else []),
        ("--drop", options.drop),
        ("--categorical", options.categorical),
    ):
        unknown = [name for name in names if name not in columns]
        if unknown:
            raise BacktestError(
                f"{flag}: no column {', '.join(map(repr, unknown))} in {path}; "
                f"its columns are: {', '.join(columns)}"
            )


def _shown(values: Iterable[str], limit: int = 8) -> str:
    values = list(values)
    more = f", … ({len(values)} in all)" if len(values) > limit else ""
    return ", ".join(map(repr, values[:limit])) + more


def choose_positive(
    counts: Counter[str], positive: str | None, label: str
) -> tuple[str | None, str]:
    """The label value taken as positive, and in words why."""
    if positive is not None:
        wanted = canonical(positive)
        if wanted not in counts:
            raise BacktestError(
                f"--positive {positive!r} never occurs in label column {label!r}; "
                f"its values are {_shown(sorted(counts))}"
            )
        return wanted, "given by --positive"
    values = sorted(counts)
    if not values:
        raise BacktestError(f"label column {label!r} has no values: no row can be evaluated")
    if len(values) > 2:
        raise BacktestError(
            f"label column {label!r} has {len(values)} values ({_shown(values)}): "
            "name the positive class with --positive VALUE (every other value is negative)"
        )
    lowered = [value.lower() for value in values]
    if all(value in TRUE_WORDS | FALSE_WORDS for value in lowered):
        truthy = [v for v, low in zip(values, lowered, strict=True) if low in TRUE_WORDS]
        if len(truthy) == 1:
            return truthy[0], "the true/yes/1 value"
        if not truthy:
            return None, "only negative values occur, so no row is positive"
    numbers = [parse_number(value) for value in values]
    if len(values) == 2 and None not in numbers:
        return max(values, key=lambda v: parse_number(v) or 0.0), "the larger of two numbers"
    if len(values) == 1:
        raise BacktestError(
            f"label column {label!r} only holds {values[0]!r}: say with --positive whether "
            "that is the positive class"
        )
    rarer = min(values, key=lambda v: (counts[v], v))
    return rarer, "the rarer of two values (use --positive to choose)"


def map_columns(
    scan: FileScan, options: BacktestOptions, path: Path, fmt: FileFormat
) -> ColumnMapping:
    """Decide each column's role, checking every name the user gave against the file."""
    check_named_columns(options, list(scan.columns), path)
    if scan.timeless_line is not None:
        raise BacktestError(
            f"{path} line {scan.timeless_line} has no value in time column {options.time!r}: "
            "fill it in or leave out --time"
        )
    positive, rule = choose_positive(scan.label_counts, options.positive, options.label)
    used = [c for c in scan.columns if c not in {options.label, options.time, *options.drop}]
    nested = [(c, scan.columns[c].nested_line) for c in used if scan.columns[c].nested_line]
    if nested:
        column, line = nested[0]
        raise BacktestError(
            f"{path} line {line}: column {column!r} holds a list; --drop {column} or "
            "flatten it into columns"
        )
    empty = tuple(c for c in used if scan.columns[c].values == 0)
    features = [c for c in used if c not in empty]
    if not features:
        raise BacktestError(
            f"{path} has no feature columns left besides the label, time and dropped ones"
        )
    forced = set(options.categorical)
    numeric = tuple(c for c in features if scan.columns[c].numeric and c not in forced)
    categorical = tuple(c for c in features if c not in numeric)
    sparse = tuple(c for c in categorical if len(scan.columns[c].distinct) > DENSE_LIMIT)
    return ColumnMapping(
        label=options.label,
        positive=positive,
        positive_rule=rule,
        time=options.time,
        dropped=tuple(options.drop),
        numeric=numeric,
        categorical=categorical,
        empty=empty,
        decimal_comma=fmt.delimiter == ";",
        sparse=sparse,
    )


def column_warnings(scan: FileScan, mapping: ColumnMapping) -> list[str]:
    """Things that are allowed but probably not meant, said before a long replay."""
    warnings = []
    for column in mapping.categorical:
        distinct = len(scan.columns[column].distinct)
        values = scan.columns[column].values
        if distinct >= DISTINCT_CAP or (distinct > 100 and distinct > values / 2):
            shown = f"{distinct}+" if distinct >= DISTINCT_CAP else str(distinct)
            warnings.append(
                f"column {column!r} has {shown} distinct values in {values} rows and each "
                f"becomes its own feature: --drop {column} if it is an identifier"
            )
        if column in mapping.sparse:
            warnings.append(
                f"column {column!r} has over {DENSE_LIMIT} categories, so its one-hot features "
                "are sparse, which a standardising model scales to nothing: bucket it or drop it"
            )
    if scan.unlabelled:
        warnings.append(f"{scan.unlabelled} rows have no label and are skipped")
    return warnings


# --------------------------------------------------------------------------- encoding


class RowEncoder:
    """Turns a raw record into (features, label): numbers as they are, categories one-hot.

    One-hot features are dense over the categories seen so far: a row carries 0.0 for
    each known category it is not, not just 1.0 for the one it is. Scalers such as River's
    StandardScaler only update the features present in a row, so with the 1.0 alone they
    would see a constant and scale it to nothing. The vocabulary grows as the rows come,
    so no row knows of a category before it first occurs. Columns with very many
    categories stay sparse (only the present one is set) to keep rows small.
    """

    def __init__(self, mapping: ColumnMapping) -> None:
        self.mapping = mapping
        self.zeros: dict[str, dict[str, float]] = {
            column: {} for column in mapping.categorical if column not in mapping.sparse
        }

    def features(self, record: dict[str, Any]) -> dict[str, float]:
        x: dict[str, float] = {}
        decimal_comma = self.mapping.decimal_comma
        for column in self.mapping.numeric:
            value = record.get(column)
            if is_missing(value):
                continue
            number = parse_number(value, decimal_comma)
            if number is not None and math.isfinite(number):
                x[column] = number
        for column in self.mapping.categorical:
            known = self.zeros.get(column)
            if known is not None:
                x.update(known)
            value = record.get(column)
            if not is_missing(value):
                name = f"{column}={category(value)}"
                x[name] = 1.0
                if known is not None:
                    known[name] = 0.0
        return x

    def label(self, record: dict[str, Any]) -> bool | None:
        value = record.get(self.mapping.label)
        if is_missing(value):
            return None
        return canonical(value) == self.mapping.positive


def _replay_order(
    records: Iterator[tuple[int, dict[str, Any]]], mapping: ColumnMapping
) -> Iterator[dict[str, Any]]:
    """Records in file order, or by time when asked (equal times keep file order).

    Ordering by time needs the whole file, so only then are the records held in memory;
    they are encoded after sorting, so the one-hot vocabulary grows in replay order.
    """
    if mapping.time is None:
        for _, record in records:
            yield record
        return
    timed = []
    for _, record in records:
        if not is_missing(record.get(mapping.label)):
            parsed = parse_time(record.get(mapping.time))
            timed.append((parsed[1] if parsed is not None else 0.0, record))
    timed.sort(key=lambda item: item[0])
    for _, record in timed:
        yield record


def labelled_rows(
    path: Path,
    fmt: FileFormat,
    mapping: ColumnMapping,
    on_position: Callable[[int], None] | None = None,
) -> Iterator[tuple[dict[str, float], bool]]:
    """Second pass: (features, label) per labelled row, in replay order."""
    encoder = RowEncoder(mapping)
    for record in _replay_order(iter_records(path, fmt, on_position), mapping):
        y = encoder.label(record)
        if y is not None:
            yield encoder.features(record), y


# --------------------------------------------------------------------------- models


class Scorer(Protocol):
    """A model under test, seen as a binary scorer.

    `score_one` returns the row's score and the context its label will be learned with
    later (the anomaly detector's raw score at scoring time); `learn_one` gets it back.
    """

    name: str
    probabilistic: bool

    def score_one(self, x: dict[str, float]) -> tuple[float, Any]: ...

    def learn_one(self, x: dict[str, float], y: bool, context: Any) -> None: ...


class ClassifierScorer:
    """A binary classifier: the crmstream churn model or any River classifier."""

    probabilistic = True

    def __init__(self, model: Any, name: str) -> None:
        self.model = model
        self.name = name

    def score_one(self, x: dict[str, float]) -> tuple[float, Any]:
        proba = self.model.predict_proba_one(x)
        if isinstance(proba, dict):  # River classifiers answer {label: probability}
            proba = proba.get(True, 0.0)
        return float(proba), None

    def learn_one(self, x: dict[str, float], y: bool, context: Any) -> None:
        self.model.learn_one(x, y)


class OfferScorer:
    """The per-offer propensity model seen through a single offer."""

    probabilistic = True

    def __init__(self, model: Any, name: str, offer_id: str = BACKTEST_OFFER) -> None:
        self.model = model
        self.name = name
        self.offer_id = offer_id

    def score_one(self, x: dict[str, float]) -> tuple[float, Any]:
        return float(self.model.propensity(x, self.offer_id)), None

    def learn_one(self, x: dict[str, float], y: bool, context: Any) -> None:
        self.model.learn_one(x, self.offer_id, y)


class AnomalyScorer:
    """An unsupervised detector, optionally re-ranked by a layer that learns from labels.

    The detector learns every row right after scoring it (it needs no label); labels only
    ever reach the reranker, and only when `--feedback-delay` asked for one.
    """

    probabilistic = False

    def __init__(self, detector: Any, name: str, reranker: FeedbackReranker | None) -> None:
        self.detector = detector
        self.name = name
        self.reranker = reranker

    def score_one(self, x: dict[str, float]) -> tuple[float, Any]:
        raw = float(self.detector.score_one(x))
        score = raw if self.reranker is None else self.reranker.rank_one(x, raw)
        self.detector.learn_one(x)
        return score, raw

    def learn_one(self, x: dict[str, float], y: bool, context: Any) -> None:
        if self.reranker is not None:
            self.reranker.learn_one(x, y, detector_score=context)


def _whole_row_detector(detector: Any) -> tuple[Any, str]:
    """The detector to feed every feature column, and how the report should describe it.

    The engine's detector picks named transaction features out of what it is given; a
    file's columns are others, so the backtest feeds its pipeline (the same scaler and
    trees with the same parameters) directly.
    """
    pipeline = getattr(detector, "pipeline", None)
    if pipeline is not None and hasattr(pipeline, "score_one"):
        return pipeline, "every feature column, into the configured detector's pipeline"
    return detector, "every feature column, into the configured detector"


def build_scorer(options: BacktestOptions) -> tuple[Scorer, str]:
    """The configured model for the role, wrapped as a scorer; and what it is fed."""
    model = build(REGISTRY_ROLE[options.model], options.model_name, options.seed)
    if options.model == "churn":
        return ClassifierScorer(model, options.model_name), "every feature column"
    if options.model == "propensity":
        name = f"{options.model_name}[{BACKTEST_OFFER}]"
        return OfferScorer(model, name), f"every feature column, as offer {BACKTEST_OFFER!r}"
    detector, fed = _whole_row_detector(model)
    if options.feedback_delay is None:
        return AnomalyScorer(detector, options.model_name, None), fed
    reranker = FeedbackReranker()
    name = f"{options.model_name}+{reranker.name}"
    return AnomalyScorer(detector, name, reranker), fed + "; labels to FeedbackReranker"


# --------------------------------------------------------------------------- metrics


def _tie_groups(scores: list[float], labels: list[bool]) -> list[tuple[int, int]]:
    """(positives, negatives) per distinct score, lowest score first."""
    order = sorted(range(len(scores)), key=scores.__getitem__)
    groups: list[tuple[int, int]] = []
    previous: float | None = None
    for index in order:
        score = scores[index]
        if previous is None or score != previous:
            groups.append((0, 0))
            previous = score
        positives, negatives = groups[-1]
        groups[-1] = (positives + 1, negatives) if labels[index] else (positives, negatives + 1)
    return groups


def roc_auc(scores: list[float], labels: list[bool]) -> float | None:
    """Exact ROC AUC: the share of (positive, negative) pairs ordered right, ties half.

    None when either class is absent (the AUC is undefined, not 0.5).
    """
    positives = sum(labels)
    negatives = len(labels) - positives
    if positives == 0 or negatives == 0:
        return None
    right = 0.0
    negatives_below = 0
    for group_positives, group_negatives in _tie_groups(scores, labels):
        right += group_positives * (negatives_below + group_negatives / 2)
        negatives_below += group_negatives
    return right / (positives * negatives)


def average_precision(scores: list[float], labels: list[bool]) -> float | None:
    """PR AUC as average precision: mean over positives of the precision at their score.

    Rows tied at a score are flagged together, so a tie cannot be ordered in one's favour.
    """
    positives = sum(labels)
    if positives == 0:
        return None
    total = 0.0
    true_flags = false_flags = 0
    for group_positives, group_negatives in reversed(_tie_groups(scores, labels)):
        true_flags += group_positives
        false_flags += group_negatives
        total += group_positives * true_flags / (true_flags + false_flags)
    return total / positives


def log_loss(probabilities: list[float], labels: list[bool]) -> float | None:
    if not labels:
        return None
    eps = 1e-15
    total = 0.0
    for p, y in zip(probabilities, labels, strict=True):
        p = min(max(p, eps), 1 - eps)
        total -= math.log(p if y else 1 - p)
    return total / len(labels)


def budget_warmup(budget: float) -> int:
    """Scores seen before the running quantile is trusted: ten flags' worth, at most 500."""
    return min(500, max(20, math.ceil(10 / budget)))


class Evaluation:
    """Collects (score, label) pairs and the alert decisions taken as the rows came.

    A row is flagged when its score is at or above the (1 - budget) quantile of the scores
    before it, so precision and recall at the budget are what alerts cut that way would
    have been, not what a threshold chosen after the fact would give. Rows tied at the
    quantile are all flagged (as average precision counts ties together), so a model that
    gives many equal scores flags more than the budget: `flagged_fraction` shows it.
    """

    def __init__(self, budget: float) -> None:
        self.budget = budget
        self.ranks = RollingQuantile(window=BUDGET_WINDOW, warmup=budget_warmup(budget))
        self.scores: list[float] = []
        self.labels: list[bool] = []
        self.flagged = 0
        self.flagged_positives = 0

    def add(self, score: float, label: bool, counted: bool) -> None:
        if not math.isfinite(score):
            raise BacktestError(f"the model gave a non-finite score ({score}) on a row")
        at_or_below = self.ranks.rank(math.nextafter(score, math.inf))
        flag = self.ranks.ready and at_or_below > 1 - self.budget + 1e-9
        self.ranks.learn_one(score)
        if not counted:
            return
        self.scores.append(score)
        self.labels.append(label)
        if flag:
            self.flagged += 1
            self.flagged_positives += label

    def summary(self, probabilistic: bool) -> dict[str, Any]:
        positives = sum(self.labels)
        return {
            "rows": len(self.labels),
            "positives": positives,
            "roc_auc": roc_auc(self.scores, self.labels),
            "pr_auc": average_precision(self.scores, self.labels),
            "log_loss": log_loss(self.scores, self.labels) if probabilistic else None,
            "budget": self.budget,
            "flagged": self.flagged,
            "flagged_fraction": self.flagged / len(self.labels) if self.labels else None,
            "precision_at_budget": (
                self.flagged_positives / self.flagged if self.flagged else None
            ),
            "recall_at_budget": self.flagged_positives / positives if positives else None,
        }


@dataclass(frozen=True)
class Replay:
    evaluation: Evaluation
    processed: int
    seconds: float
    model_seconds: float


def run_prequential(
    rows: Iterable[tuple[dict[str, float], bool]],
    scorer: Scorer,
    *,
    budget: float,
    feedback_delay: int = 0,
    warmup: int = 0,
    on_row: Callable[[], None] | None = None,
) -> Replay:
    """Score each row before its label is learned; the label is learned `feedback_delay`
    rows later (0: right after). The first `warmup` rows are replayed but not counted.
    """
    evaluation = Evaluation(budget)
    pending: deque[tuple[dict[str, float], bool, Any]] = deque()
    model_ns = 0
    processed = 0
    started = perf_counter()
    for x, y in rows:
        before = perf_counter_ns()
        score, context = scorer.score_one(x)
        pending.append((x, y, context))
        if len(pending) > feedback_delay:
            scorer.learn_one(*pending.popleft())
        model_ns += perf_counter_ns() - before
        evaluation.add(score, y, counted=processed >= warmup)
        processed += 1
        if on_row is not None:
            on_row()
    return Replay(evaluation, processed, perf_counter() - started, model_ns / 1e9)


# --------------------------------------------------------------------------- running


def _check_options(options: BacktestOptions) -> None:
    if options.model not in REGISTRY_ROLE:
        raise BacktestError(f"--model {options.model!r}: choose one of {', '.join(REGISTRY_ROLE)}")
    if not 0 < options.budget < 1:
        raise BacktestError(f"--budget {options.budget}: give a fraction between 0 and 1")
    if options.feedback_delay is not None and options.feedback_delay < 0:
        raise BacktestError("--feedback-delay must be 0 or more rows")
    if options.warmup < 0:
        raise BacktestError("--warmup must be 0 or more rows")
    if options.label == options.time:
        raise BacktestError("--label and --time name the same column")
    if options.label in options.drop:
        raise BacktestError(f"--drop names the label column {options.label!r}")


def _progress(console: Console | None) -> Progress | None:
    if console is None or not console.is_terminal:
        return None
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )


def run_backtest(
    options: BacktestOptions,
    *,
    scorer: Scorer | None = None,
    console: Console | None = None,
) -> dict[str, Any]:
    """Replay the file prequentially and return the report (see `backtest_command`).

    `scorer` replaces the configured model (the benchmarks compare plain River models
    through this same path); `console` shows progress when it is a terminal.
    """
    _check_options(options)
    path = options.data
    fmt = detect_format(path)
    size = path.stat().st_size
    progress = _progress(console)
    with progress if progress is not None else nullcontext():
        on_scan = _position_callback(progress, "checking the file", size)
        scan = scan_file(path, fmt, options, on_scan)
        mapping = map_columns(scan, options, path, fmt)
        warnings = column_warnings(scan, mapping)
        if scorer is None:
            scorer, fed = build_scorer(options)
        else:
            fed = "every feature column"
        delay = options.feedback_delay or 0
        on_read = _position_callback(progress, "reading to order by time", size)
        on_read = on_read if options.time else None
        rows = labelled_rows(path, fmt, mapping, on_read)
        on_row = _row_callback(progress, sum(scan.label_counts.values()))
        replay = run_prequential(
            rows,
            scorer,
            budget=options.budget,
            feedback_delay=delay,
            warmup=options.warmup,
            on_row=on_row,
        )
    return _report(options, fmt, mapping, scorer, fed, scan, replay, warnings)


def _position_callback(
    progress: Progress | None, what: str, size: int
) -> Callable[[int], None] | None:
    if progress is None:
        return None
    task = progress.add_task(what, total=size)

    def update(position: int) -> None:
        progress.update(task, completed=position)

    return update


def _row_callback(progress: Progress | None, total: int) -> Callable[[], None] | None:
    if progress is None:
        return None
    task = progress.add_task(f"score, then learn {total:,} rows", total=total)
    seen = 0

    def advance() -> None:
        nonlocal seen
        seen += 1
        if seen % 1000 == 0 or seen == total:
            progress.update(task, completed=seen)

    return advance


def _report(
    options: BacktestOptions,
    fmt: FileFormat,
    mapping: ColumnMapping,
    scorer: Scorer,
    fed: str,
    scan: FileScan,
    replay: Replay,
    warnings: list[str],
) -> dict[str, Any]:
    processed = replay.processed
    return {
        "model": {
            "role": options.model,
            "name": scorer.name,
            "configured": options.model_name,
            "seed": options.seed,
            "input": fed,
            "gives_probabilities": scorer.probabilistic,
        },
        "data": {
            "path": str(options.data),
            "format": fmt.kind,
            "compressed": fmt.compressed,
            "delimiter": fmt.delimiter,
            "rows_read": scan.rows,
            "rows_without_label": scan.unlabelled,
        },
        "columns": mapping.as_dict(),
        "warmup_rows": min(options.warmup, processed),
        "feedback_delay": options.feedback_delay,
        **replay.evaluation.summary(scorer.probabilistic),
        "events_per_second": processed / replay.seconds if replay.seconds else None,
        "model_us_per_event": replay.model_seconds / processed * 1e6 if processed else None,
        "seconds": replay.seconds,
        "warnings": warnings,
    }


# --------------------------------------------------------------------------- output


def _figure(value: Any, digits: int = 4) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}"


def report_table(report: dict[str, Any]) -> Table:
    """The report as a two-column table for people; the JSON holds everything."""
    model = report["model"]
    table = Table(title=f"backtest: {model['role']} ({model['name']})", show_header=False)
    table.add_column("metric", style="bold")
    table.add_column("value", justify="right")
    columns = report["columns"]
    table.add_row("rows evaluated", _figure(report["rows"]))
    table.add_row(
        "positives",
        f"{_figure(report['positives'])} ({columns['label']} = {columns['positive']!r})",
    )
    table.add_row("ROC AUC", _figure(report["roc_auc"]))
    table.add_row("PR AUC (average precision)", _figure(report["pr_auc"]))
    table.add_row("log loss", _figure(report["log_loss"]))
    budget = f"{report['budget']:.2%}"
    table.add_row(f"precision at {budget} budget", _figure(report["precision_at_budget"]))
    table.add_row(f"recall at {budget} budget", _figure(report["recall_at_budget"]))
    fraction = report["flagged_fraction"]
    share = f" ({fraction:.2%})" if fraction is not None else ""
    table.add_row("rows flagged", f"{_figure(report['flagged'])}{share}")
    table.add_row("events/s", _figure(report["events_per_second"], 0))
    table.add_row("model µs/event (score+learn)", _figure(report["model_us_per_event"], 1))
    return table


def _split(names: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in names.split(",") if name.strip())


def backtest_command(
    model: Annotated[ModelRole, typer.Option(help="Which configured model to replay.")],
    data: Annotated[Path, typer.Option(help="CSV (, ; or tab), plain or gzipped, or JSONL.")],
    label: Annotated[str, typer.Option(help="Column holding the outcome.")],
    positive: Annotated[
        str | None, typer.Option(help="Label value that counts as positive (others: negative).")
    ] = None,
    time: Annotated[
        str | None, typer.Option(help="Replay in the order of this column (ISO or numbers).")
    ] = None,
    drop: Annotated[str, typer.Option(help="Columns to ignore, comma-separated.")] = "",
    categorical: Annotated[
        str, typer.Option(help="Numeric-looking columns to one-hot instead, comma-separated.")
    ] = "",
    budget: Annotated[
        float,
        typer.Option(
            help="Alert budget: flag a row when its score ranks in this top fraction of the "
            "scores before it."
        ),
    ] = 0.01,
    feedback_delay: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Learn each label this many rows later; with --model anomaly it enables "
            "the supervised feedback layer.",
        ),
    ] = None,
    warmup: Annotated[
        int, typer.Option(min=0, help="Rows replayed first but left out of the metrics.")
    ] = 0,
    report: Annotated[Path | None, typer.Option(help="Write the report as JSON here.")] = None,
) -> None:
    """Replay a labelled file through a configured model: score each row, then learn it.

    Prints rows, positives, exact ROC AUC and PR AUC, log loss, precision and recall at
    the alert budget and events/s (and writes them as JSON with --report). Columns that
    are not numbers are one-hot encoded. Exits with 2, naming the problem, when the file
    or the options cannot be used.
    """
    from crmstream.settings import ConfigError, load_settings

    err = Console(stderr=True)
    try:
        settings = load_settings()
    except ConfigError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    role = model.value
    options = BacktestOptions(
        model=role,
        data=data,
        label=label,
        model_name=getattr(settings.models, REGISTRY_ROLE[role]),
        seed=settings.models.seed,
        positive=positive,
        time=time,
        drop=_split(drop),
        categorical=_split(categorical),
        budget=budget,
        feedback_delay=feedback_delay,
        warmup=warmup,
    )
    try:
        if report is not None:
            _check_writable(report)
        result = run_backtest(options, console=err)
    except BacktestError as exc:
        err.print(f"[red]backtest: {exc}[/red]", highlight=False)
        raise typer.Exit(2) from None
    for warning in result["warnings"]:
        err.print(f"[yellow]warning: {warning}[/yellow]", highlight=False)
    Console().print(report_table(result))
    if report is not None:
        report.write_text(json.dumps(result, indent=2) + "\n")
        err.print(f"wrote {report}", highlight=False)


def _check_writable(report: Path) -> None:
    """Fail before a long replay, not after it, when the report cannot be written."""
    try:
        report.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BacktestError(f"cannot write the report to {report}: {exc.strerror}") from None
    target = report if report.exists() else report.parent
    if report.is_dir() or not os.access(target, os.W_OK):
        raise BacktestError(f"cannot write the report to {report}: choose a writable file path")
