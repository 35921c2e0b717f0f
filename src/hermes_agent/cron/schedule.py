"""When a job runs: 5-field cron expressions, intervals and one-off times.

Three kinds of schedule, told apart by their text:

- a cron expression of five fields, ``minute hour day-of-month month
  day-of-week`` (``0 9 * * 1-5``), with ``*``, ranges ``a-b``, steps ``*/n``
  ``a-b/n`` ``a/n``, lists ``a,b``, month names ``jan``-``dec`` and day names
  ``sun``-``sat`` (0 and 7 are both Sunday), and the shortcuts ``@hourly``,
  ``@daily``, ``@weekly``, ``@monthly``, ``@yearly``. As in every cron since
  Vixie's, when both day fields are restricted a day matches either of them
  (``0 0 13 * 5``: the 13th, and every Friday); a field "is restricted" when
  it does not start with ``*``;
- an interval, ``every 30m`` (units ``s``, ``m``, ``h``, ``d``): runs at
  creation + n intervals, so the times do not drift with how long runs take;
- one time: ``in 20m``, or an ISO time ``2026-12-24T09:00`` (without an
  offset, in the job time zone). It is stored as an ISO time with its offset.

Cron expressions are evaluated in wall-clock time of the zone ``cron.timezone``
(the system's local zone by default), with Debian cron's rules for daylight
saving time: a job at a fixed time (minute and hour fields not starting with
``*``) whose time does not exist on a spring-forward day runs at the first
minute after the gap, and on a fall-back day runs only at the first of the
two moments its time occurs; every other job follows the clock (a minute the
clock skips is skipped, a repeated hour repeats). Every other time here is an
aware UTC datetime.

croniter was considered: its 7.0 release runs a daily ``30 2 * * *`` job twice
on the fall-back day in Europe/Berlin, so the parser is our own and small.
"""

from __future__ import annotations

import calendar
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING

from hermes_agent.errors import UsageError

if TYPE_CHECKING:
    from hermes_agent.config.loader import Config

#: How far ahead a cron expression is searched (a 29 February job may wait 8 years).
SEARCH_YEARS = 30
#: More than any daylight-saving shift (2 h in Antarctica/Troll): how far back a
#: search starts so that the repeated hour of a fall-back day is not missed.
MAX_SHIFT = timedelta(hours=3)

MONTH_NAMES = {
    name: number
    for number, name in enumerate(
        ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1
    )
}
DAY_NAMES = {
    name: number for number, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))
}
MACROS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
#: (name, lowest, highest, names) of the five fields.
FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day-of-month", 1, 31, {}),
    ("month", 1, 12, MONTH_NAMES),
    ("day-of-week", 0, 7, DAY_NAMES),
)
UNITS = {
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hr": 3600,
    "hrs": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
}
_RELATIVE = re.compile(r"(every|in)\s+(\d+)\s*([a-z]+)")

HELP = (
    "a cron expression of 5 fields (minute hour day month weekday, e.g. '0 9 * * 1-5'), "
    "an interval ('every 30m', 'every 2h'), or one time ('in 20m', '2026-12-24T09:00')"
)


class ScheduleError(UsageError):
    """A schedule that cannot be parsed or never runs; the message names it and why."""


# --- cron expressions -------------------------------------------------------------------


@dataclass(frozen=True)
class CronExpr:
    """A parsed 5-field cron expression."""

    text: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    #: 0 = Sunday ... 6 = Saturday.
    weekdays: frozenset[int]
    #: The day-of-month / day-of-week field starts with ``*`` (is not restricted).
    dom_star: bool
    dow_star: bool
    #: Minute and hour fields both restricted: Debian cron's daylight-saving rules apply.
    fixed_time: bool

    kind = "cron"

    def matches_day(self, day: date) -> bool:
        in_dom = day.day in self.days
        in_dow = day.isoweekday() % 7 in self.weekdays
        if self.dom_star or self.dow_star:
            return in_dom and in_dow
        return in_dom or in_dow

    def matches(self, wall: datetime) -> bool:
        """Whether a wall-clock time (naive, minute precision) matches every field."""
        return (
            wall.month in self.months
            and self.matches_day(wall.date())
            and wall.hour in self.hours
            and wall.minute in self.minutes
        )

    def next_wall(self, after: datetime) -> datetime | None:
        """The first naive wall-clock minute strictly after ``after`` that matches."""
        t = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
        last_year = t.year + SEARCH_YEARS
        while t.year <= last_year:
            if t.month not in self.months:
                year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
                t = datetime(year, month, 1)
                continue
            if not self.matches_day(t.date()):
                t = datetime(t.year, t.month, t.day) + timedelta(days=1)
                continue
            if t.hour not in self.hours:
                later = [h for h in self.hours if h > t.hour]
                if later:
                    t = t.replace(hour=later[0], minute=0)
                else:
                    t = datetime(t.year, t.month, t.day) + timedelta(days=1)
                continue
            if t.minute not in self.minutes:
                later = [m for m in self.minutes if m > t.minute]
                if later:
                    t = t.replace(minute=later[0])
                else:
                    t = t.replace(minute=0) + timedelta(hours=1)
                continue
            return t
        return None

    def instants(self, wall: datetime, zone: tzinfo) -> list[datetime]:
        """The moments (UTC) at which a matching wall-clock minute fires in ``zone``."""
        first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
        second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
        if first == second:
            return [first]
        if _wall(first, zone) == wall:  # The clock shows this minute twice (fall back).
            return [first] if self.fixed_time else [first, second]
        if not self.fixed_time:  # The clock skips this minute (spring forward).
            return []
        return [_after_gap(wall, zone)]

    def next_after(self, after: datetime, zone: tzinfo) -> datetime | None:
        """The first moment strictly after ``after`` (aware) at which the job runs, in UTC."""
        after = after.astimezone(UTC)
        cursor = _wall(after, zone)
        if _shift_near(after, zone):  # A repeated hour may hold earlier walls' later moments.
            cursor -= MAX_SHIFT
        best: datetime | None = None
        best_wall: datetime | None = None
        while True:
            wall = self.next_wall(cursor)
            if wall is None or (best_wall is not None and wall > best_wall + MAX_SHIFT):
                return best
            for moment in self.instants(wall, zone):
                if moment > after and (best is None or moment < best):
                    best, best_wall = moment, wall
            if best is not None and not _shift_near(best, zone):
                return best  # Without a clock change nearby, later walls are later moments.
            cursor = wall

    def first(self, now: datetime, zone: tzinfo) -> datetime | None:
        return self.next_after(now, zone)

    def following(self, scheduled: datetime, now: datetime, zone: tzinfo) -> datetime | None:
        return self.next_after(max(scheduled, now), zone)

    def occurrences(
        self, start: datetime, end: datetime, zone: tzinfo, limit: int = 1000
    ) -> Iterator[datetime]:
        """Moments from ``start`` (included) to ``end`` (included), at most ``limit``."""
        moment: datetime | None = start - timedelta(microseconds=1)
        for _ in range(limit):
            assert moment is not None
            moment = self.next_after(moment, zone)
            if moment is None or moment > end:
                return
            yield moment


def _wall(moment: datetime, zone: tzinfo) -> datetime:
    return moment.astimezone(zone).replace(tzinfo=None)


def _shift_near(moment: datetime, zone: tzinfo) -> bool:
    """Whether the zone's clock changes within MAX_SHIFT of ``moment``."""
    before = (moment - MAX_SHIFT).astimezone(zone).utcoffset()
    return before != (moment + MAX_SHIFT).astimezone(zone).utcoffset()


def _number(token: str, field: int, where: str) -> int:
    _, low, high, names = FIELDS[field]
    lowered = token.lower()
    if lowered in names:
        return names[lowered]
    if not (token.isascii() and token.isdigit()):  # "²".isdigit(), yet int() refuses it
        known = f" or a name ({', '.join(names)})" if names else ""
        raise ScheduleError(f"{where}: {token!r} is not a number{known}")
    value = int(token)
    if not low <= value <= high:
        raise ScheduleError(f"{where}: {value} is out of range ({low}-{high})")
    return value


def _parse_field(text: str, field: int, expression: str) -> set[int]:
    name, low, high, _ = FIELDS[field]
    values: set[int] = set()
    for part in text.split(","):
        where = f"schedule {expression!r}: {name} field {part!r}"
        if not part:
            raise ScheduleError(f"schedule {expression!r}: {name} field has an empty list item")
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not (step_text.isascii() and step_text.isdigit()) or int(step_text) == 0:
                raise ScheduleError(f"{where}: the step after '/' must be a number above 0")
            step = int(step_text)
        if base == "*":
            first, last = low, high
            if field == 4:
                last = 6  # 7 is Sunday again: "*" already has it as 0.
        elif "-" in base:
            start, _, end = base.partition("-")
            if not start or not end:
                raise ScheduleError(f"{where}: a range needs both ends, like 1-5")
            first, last = _number(start, field, where), _number(end, field, where)
            if field == 4 and last == 0 and first > 0:
                last = 7  # fri-sun: Sunday as the end of a week.
            if first > last:
                raise ScheduleError(
                    f"{where}: the range runs backwards; write it as a list (e.g. 22-23,0-2)"
                )
        else:
            first = _number(base, field, where)
            last = (6 if field == 4 else high) if slash else first
        values.update(range(first, last + 1, step))
    if field == 4:
        values = {value % 7 for value in values}
    return values


def parse_cron(text: str) -> CronExpr:
    """Parse a 5-field expression (or an ``@`` shortcut); :class:`ScheduleError` says why not."""
    expression = MACROS.get(text.strip().lower(), text.strip())
    if expression.startswith("@"):
        raise ScheduleError(
            f"schedule {text!r}: unknown shortcut (known: {', '.join(MACROS)}); "
            "@reboot is not supported"
        )
    parts = expression.split()
    if len(parts) != 5:
        extra = " (fields for seconds or years are not supported)" if len(parts) in (6, 7) else ""
        raise ScheduleError(
            f"schedule {text!r}: a cron expression has 5 fields, this has {len(parts)}{extra}; "
            f"expected {HELP}"
        )
    fields = [_parse_field(part, index, text) for index, part in enumerate(parts)]
    minutes, hours, days, months, weekdays = fields
    expr = CronExpr(
        text=" ".join(parts) if text.strip() == expression else text.strip().lower(),
        minutes=tuple(sorted(minutes)),
        hours=tuple(sorted(hours)),
        days=frozenset(days),
        months=frozenset(months),
        weekdays=frozenset(weekdays),
        dom_star=parts[2].startswith("*"),
        dow_star=parts[4].startswith("*"),
        fixed_time=not parts[0].startswith("*") and not parts[1].startswith("*"),
    )
    if expr.dow_star and not any(
        day <= _longest_month(month) for month in expr.months for day in expr.days
    ):
        raise ScheduleError(
            f"schedule {text!r}: never runs: no month in it has day "
            f"{min(expr.days)} (day-of-month and month do not meet)"
        )
    return expr


def _longest_month(month: int) -> int:
    return calendar.monthrange(2024, month)[1]  # 2024 is a leap year: February has 29.


# --- intervals and one-off times -------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """``every N<unit>``: runs at creation + k * seconds."""

    text: str
    seconds: int

    kind = "interval"

    def first(self, now: datetime, zone: tzinfo) -> datetime | None:
        return now + timedelta(seconds=self.seconds)

    def following(self, scheduled: datetime, now: datetime, zone: tzinfo) -> datetime | None:
        """The first of scheduled + k * interval (k >= 1) that is after ``now``."""
        step = timedelta(seconds=self.seconds)
        if scheduled > now:
            return scheduled + step
        behind = (now - scheduled) // step
        return scheduled + (behind + 1) * step

    def occurrences(
        self, start: datetime, end: datetime, zone: tzinfo, limit: int = 1000
    ) -> Iterator[datetime]:
        step = timedelta(seconds=self.seconds)
        moment = start
        for _ in range(limit):
            if moment > end:
                return
            yield moment
            moment += step


@dataclass(frozen=True)
class Once:
    """One run at ``at``."""

    text: str
    at: datetime

    kind = "once"

    def first(self, now: datetime, zone: tzinfo) -> datetime | None:
        return self.at

    def following(self, scheduled: datetime, now: datetime, zone: tzinfo) -> datetime | None:
        return None

    def occurrences(
        self, start: datetime, end: datetime, zone: tzinfo, limit: int = 1000
    ) -> Iterator[datetime]:
        if start <= self.at <= end:
            yield self.at


Schedule = CronExpr | Interval | Once


def _unit_seconds(count: str, unit: str, text: str) -> int:
    if unit not in UNITS:
        raise ScheduleError(
            f"schedule {text!r}: unknown unit {unit!r} (use s, m, h or d, e.g. 'every 30m')"
        )
    seconds = int(count) * UNITS[unit]
    if seconds <= 0:
        raise ScheduleError(f"schedule {text!r}: the interval must be longer than 0")
    if seconds > MAX_INTERVAL:  # 'in 3000000d' overflowed datetime: an internal error.
        raise ScheduleError(
            f"schedule {text!r}: the interval must be at most {MAX_INTERVAL // 86400} days"
        )
    return seconds


#: The longest interval or delay a schedule may name (100 years).
MAX_INTERVAL = 36_525 * 86_400


def _short(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def localize(wall: datetime, zone: tzinfo) -> datetime:
    """A naive wall-clock time in ``zone`` as an aware UTC time.

    A time the clock skips (spring forward) becomes the first minute after
    the gap; a time it shows twice (fall back) is its first occurrence.
    """
    moment = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if _wall(moment, zone) == wall:
        return moment
    return _after_gap(wall, zone)


def _after_gap(wall: datetime, zone: tzinfo) -> datetime:
    """The first existing minute after a wall-clock time that a spring-forward skipped."""
    candidate = wall.replace(second=0, microsecond=0)
    for _ in range(int(MAX_SHIFT.total_seconds() // 60)):
        candidate += timedelta(minutes=1)
        moment = candidate.replace(tzinfo=zone).astimezone(UTC)
        if _wall(moment, zone) == candidate:
            return moment
    raise ScheduleError(f"{wall} does not exist in {zone_name(zone)}")  # pragma: no cover


def parse_schedule(text: str, *, now: datetime, zone: tzinfo) -> Schedule:
    """Parse any kind of schedule; relative times (``in 20m``) count from ``now``."""
    raw = " ".join(str(text).split())
    if not raw:
        raise ScheduleError(f"the schedule is empty; expected {HELP}")
    lowered = raw.lower()
    relative = _RELATIVE.fullmatch(lowered)
    if relative:
        word, count, unit = relative.groups()
        seconds = _unit_seconds(count, unit, raw)
        if word == "every":
            return Interval(f"every {_short(seconds)}", seconds)
        at = (now + timedelta(seconds=seconds)).replace(microsecond=0)
        return Once(at.astimezone(zone).isoformat(), at.astimezone(UTC))
    if lowered.startswith(("every", "in ")):
        raise ScheduleError(f"schedule {raw!r}: expected 'every N<unit>' or 'in N<unit>'")
    if re.match(r"^\d{4}-\d{2}-\d{2}", raw):
        return _parse_time(raw, zone)
    return parse_cron(raw)


def _parse_time(raw: str, zone: tzinfo) -> Once:
    text = raw[:-1] + "+00:00" if raw.endswith(("Z", "z")) else raw
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ScheduleError(
            f"schedule {raw!r}: not a valid ISO time (e.g. 2026-12-24T09:00, or with an "
            "offset: 2026-12-24T09:00+01:00)"
        ) from None
    try:
        at = localize(moment, zone) if moment.tzinfo is None else moment.astimezone(UTC)
        if not in_range(at):
            raise OverflowError
        return Once(at.astimezone(zone).isoformat(), at)
    except OverflowError:  # 9999-12-31T23:59-14:00 is past what datetime holds, in UTC.
        raise ScheduleError(
            f"schedule {raw!r}: the time must be between the years {EARLIEST.year} and "
            f"{LATEST.year - 1}"
        ) from None


#: The times a job may name: far enough from datetime's ends (years 1 and 9999) that
#: showing one in any time zone, or adding a day, never overflows.
EARLIEST = datetime(2, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def in_range(moment: datetime) -> bool:
    """Whether an aware ``moment`` lies between :data:`EARLIEST` and :data:`LATEST`."""
    return EARLIEST <= moment < LATEST


# --- the time zone ------------------------------------------------------------------------


def zone_name(zone: tzinfo) -> str:
    """A name for messages: the IANA key, else what the zone calls itself now."""
    key = getattr(zone, "key", None)
    if isinstance(key, str) and key:
        return key
    return datetime.now(zone).tzname() or "local time"


def local_zone() -> tzinfo:
    """The system's time zone with its daylight-saving rules: ``$TZ``, else /etc/localtime."""
    from zoneinfo import ZoneInfo

    name = os.environ.get("TZ", "").strip().removeprefix(":")
    if name:
        try:
            return ZoneInfo(name)
        except (ValueError, OSError, KeyError):  # KeyError: ZoneInfoNotFoundError
            pass  # A POSIX rule string ("CET-1CEST"...): the C library's view below.
    else:
        link = os.path.realpath("/etc/localtime")
        if "/zoneinfo/" in link:
            try:
                return ZoneInfo(link.split("/zoneinfo/", 1)[1])
            except (ValueError, OSError, KeyError):  # KeyError: ZoneInfoNotFoundError
                pass
        try:
            with open("/etc/localtime", "rb") as handle:
                return ZoneInfo.from_file(handle, key="localtime")
        except (ValueError, OSError, KeyError):  # KeyError: ZoneInfoNotFoundError
            pass
    fixed = datetime.now().astimezone().tzinfo
    return fixed if fixed is not None else UTC


def job_zone(config: Config) -> tzinfo:
    """The zone cron expressions and local times are read in (``cron.timezone``)."""
    from zoneinfo import ZoneInfo

    name = str(config.get("cron.timezone") or "").strip()
    if not name:
        return local_zone()
    try:
        return ZoneInfo(name)
    except (ValueError, OSError, KeyError):  # KeyError: ZoneInfoNotFoundError
        raise UsageError(
            f"{config.path}: cron.timezone: unknown time zone {name!r} (use an IANA name "
            "such as Europe/Berlin or America/New_York, or leave it empty for local time)"
        ) from None


def show_time(moment: datetime | None, zone: tzinfo, *, empty: str = "-") -> str:
    """A moment as the user reads it: ``Mon 2026-11-30 09:00`` in ``zone``."""
    if moment is None:
        return empty
    return moment.astimezone(zone).strftime("%a %Y-%m-%d %H:%M")
