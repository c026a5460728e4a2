"""A small, strict parser for five-field cron expressions (minute hour day-of-month month day-of-week).

Supports ``*``, numbers, ranges ``a-b``, steps ``*/n`` and ``a-b/n``, and lists ``a,b``. Day of week
is 0-6 with 0 = Sunday (7 is accepted as Sunday). As in classic cron, when both day fields are
restricted a day matches if either does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .errors import ConfigurationError

_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)


def _parse_field(text: str, name: str, lo: int, hi: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) < 1:
                raise ValueError(f"bad step {step_text!r} in the {name} field")
            step = int(step_text)
        if part == "*":
            start, end = lo, hi
        elif "-" in part:
            a, b = part.split("-", 1)
            if not (a.isdigit() and b.isdigit()):
                raise ValueError(f"bad range {part!r} in the {name} field")
            start, end = int(a), int(b)
        elif part.isdigit():
            start = end = int(part)
            if step != 1:
                end = hi
        else:
            raise ValueError(f"bad value {part!r} in the {name} field")
        if not (lo <= start <= hi and lo <= end <= hi and start <= end):
            raise ValueError(f"{part!r} is outside {lo}-{hi} in the {name} field")
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Cron:
    """A parsed cron expression; :meth:`next_after` gives the next firing time."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, expression: str) -> Cron:
        parts = expression.split() if isinstance(expression, str) else []
        if len(parts) != 5:
            raise ConfigurationError(
                f"cron expression {expression!r} needs five fields (minute hour day month weekday), "
                "e.g. '*/15 * * * *'"
            )
        try:
            fields = [_parse_field(p, n, lo, hi) for p, (n, lo, hi) in zip(parts, _FIELDS, strict=True)]
        except ValueError as exc:
            raise ConfigurationError(f"invalid cron expression {expression!r}: {exc}") from None
        weekdays = frozenset(d % 7 for d in fields[4])
        cron = cls(
            expression,
            fields[0],
            fields[1],
            fields[2],
            fields[3],
            weekdays,
            any_day=parts[2] == "*",
            any_weekday=parts[4] == "*",
        )
        cron.next_after(datetime(2000, 1, 1))  # "0 0 31 2 *" never fires: say so now, not mid-run
        return cron

    def _day_ok(self, day: datetime) -> bool:
        if day.month not in self.months:
            return False
        dom = day.day in self.days
        dow = (day.isoweekday() % 7) in self.weekdays
        if self.any_day and self.any_weekday:
            return True
        if self.any_day:
            return dow
        if self.any_weekday:
            return dom
        return dom or dow

    def next_after(self, moment: datetime) -> datetime:
        """The first matching minute strictly after ``moment`` (same timezone)."""
        start = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        day = start.replace(hour=0, minute=0)
        for _ in range(366 * 8):  # leap-day-only expressions repeat within 8 years
            if self._day_ok(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        candidate = day.replace(hour=hour, minute=minute)
                        if candidate >= start:
                            return candidate
            day += timedelta(days=1)
        raise ConfigurationError(f"cron expression {self.expression!r} never fires")
