"""Simulated time: fast ISO 8601 stamps, calendar facts, and hour-of-day sampling.

Formatting a timestamp is done once per event, so it avoids `datetime` per call: the date
part is cached per day and the time part is plain integer arithmetic.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from functools import lru_cache
from itertools import accumulate
from random import Random

from crmstream.simulator.catalogue import LOCAL_UTC_OFFSET_HOURS

DAY = 86_400.0
HOUR = 3_600.0
MINUTE = 60.0
_MS_PER_DAY = 86_400_000
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_TABLE_SIZE = 1024


@lru_cache(maxsize=4096)
def _date_prefix(day: int) -> str:
    return date.fromordinal(_EPOCH_ORDINAL + day).isoformat() + "T"


def iso(ms: int) -> str:
    """UTC ISO 8601 with milliseconds and a "Z", e.g. 2026-01-01T08:15:02.120Z."""
    day, rest = divmod(ms, _MS_PER_DAY)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds, millis = divmod(rest, 1000)
    return f"{_date_prefix(day)}{hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}Z"


def iso_seconds(ts: float) -> str:
    """The same stamp for an epoch-seconds float, for ground-truth lines."""
    return iso(round(ts * 1000))


@lru_cache(maxsize=4096)
def calendar_day(day: int) -> tuple[int, int]:
    """(day of month, weekday with Monday 0) of the UTC day `day` days after the epoch."""
    moment = date.fromordinal(_EPOCH_ORDINAL + day)
    return moment.day, moment.weekday()


def to_date(ts: float) -> date:
    return datetime.fromtimestamp(ts, timezone.utc).date()


def hour_table(local_weights: tuple[float, ...]) -> tuple[int, ...]:
    """A lookup table turning a uniform draw into a UTC hour with the given local rhythm.

    Indexing a table is several times cheaper than `Random.choices` per event.
    """
    cum = list(accumulate(local_weights))
    total = cum[-1]
    table = []
    hour = 0
    for slot in range(_TABLE_SIZE):
        point = (slot + 0.5) / _TABLE_SIZE * total
        while cum[hour] < point:
            hour += 1
        table.append((hour - LOCAL_UTC_OFFSET_HOURS) % 24)
    return tuple(table)


def time_in_day(rng: Random, table: tuple[int, ...], day_start: float) -> float:
    """A moment in the 24 hours from `day_start` (any time of day) following `table`.

    The hour is a UTC hour of day; it is placed on whichever calendar day makes it fall
    inside the window, so a window may start at any hour.
    """
    midnight = day_start - day_start % DAY
    moment = midnight + table[int(rng.random() * _TABLE_SIZE)] * HOUR + rng.random() * HOUR
    if moment < day_start:
        moment += DAY
    return moment
