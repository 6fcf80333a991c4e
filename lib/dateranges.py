"""Dates people type into a query string: one parser for every CSV export and the chart. Framework-free.

``/usage.csv``, ``/payments.csv`` and the dashboard chart's ``?date=`` all read local dates through
here, so they accept the same spelling, the same span of years and the same defaults, and refuse
with the same words. (A later refactor moves this module to the ``lib`` ground floor.)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.utils.translation import gettext

from lib.periods import add_months, first_of_month, local_midnight

# Beyond these a link is garbage, and local midnights (and a year's chart) still fit in a datetime.
FIRST_DATE, LAST_DATE = date(1970, 1, 1), date(2200, 12, 31)
MAX_DAYS = 366  # a leap year is one download
# date.fromisoformat alone also takes 20261122 and 2026-W47-1; a person means YYYY-MM-DD.
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


class DateParamError(ValueError):
    """A date parameter that cannot be used; ``str()`` is a sentence to show as it is (no echo of long input)."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


def parse_day(value: str | None, name: str) -> date | None:
    """The local date ``value`` spells (YYYY-MM-DD, surrounding blanks ignored), None when empty."""
    text = (value or "").strip()
    if not text:
        return None
    try:
        if not _ISO_DATE.fullmatch(text):
            raise ValueError(text)
        day = date.fromisoformat(text)
    except ValueError:
        raise DateParamError(
            name,
            gettext("%(name)s must be a date written YYYY-MM-DD, not %(text)r.") % {"name": name, "text": text[:20]},
        ) from None
    if not FIRST_DATE <= day <= LAST_DATE:
        raise DateParamError(
            name,
            gettext("%(name)s must be between %(first)s and %(last)s.")
            % {"name": name, "first": FIRST_DATE, "last": LAST_DATE},
        )
    return day


def month_of(day: date) -> tuple[date, date]:
    """The first and the last day of ``day``'s month."""
    return first_of_month(day), add_months(day, 1) - timedelta(days=1)


@dataclass(frozen=True)
class DateRange:
    """Local days ``first`` to ``last``, both included, at most MAX_DAYS of them."""

    first: date
    last: date

    @classmethod
    def from_params(cls, params: Mapping[str, str], today: date) -> DateRange:
        """``?start=&end=``. A missing end is the end of the start's month, a missing start the first of the
        end's month, and with neither the range is the current local month."""
        start, end = parse_day(params.get("start"), "start"), parse_day(params.get("end"), "end")
        if start is None and end is None:
            return cls(*month_of(today))
        first = start if start is not None else month_of(end)[0]
        last = end if end is not None else month_of(start)[1]
        if last < first:
            raise DateParamError(
                "end", gettext("end (%(last)s) is before start (%(first)s).") % {"last": last, "first": first}
            )
        if (last - first).days + 1 > MAX_DAYS:
            raise DateParamError(
                "end",
                gettext("At most %(max)s days at a time: %(first)s to %(last)s is %(days)s.")
                % {"max": MAX_DAYS, "first": first, "last": last, "days": (last - first).days + 1},
            )
        return cls(first, last)

    def utc_bounds(self, tz_name: str) -> tuple[datetime, datetime]:
        """The UTC instants the range starts and ends in ``tz_name``: local midnights, so a day of 23 or 25
        hours is still one whole day."""
        return local_midnight(self.first, tz_name), local_midnight(self.last + timedelta(days=1), tz_name)

    @classmethod
    def default(cls, today: date) -> DateRange:
        """What a download form offers first: the same range as a request without dates."""
        return cls(*month_of(today))


@dataclass(frozen=True)
class RangeForm:
    """A download form's dates: what it shows, the days a person may pick, and why the last try was refused.

    The inputs offer the days there is data for (``min``: the first data day; ``max``: today); what they
    show first is the current month cut to those days. A refused request shows what was typed (cut
    short) beside the sentence, so the person sees what to change.
    """

    start: str
    end: str
    min: date | None
    max: date
    error: str = ""

    @classmethod
    def offer(cls, today: date, first_day: date | None) -> RangeForm:
        days = DateRange.default(today)
        first = days.first if first_day is None else min(max(days.first, first_day), today)
        return cls(first.isoformat(), min(days.last, today).isoformat(), first_day, today)

    @classmethod
    def refused(cls, params: Mapping[str, str], today: date, first_day: date | None, error: str) -> RangeForm:
        start, end = ((params.get(name) or "").strip()[:10] for name in ("start", "end"))
        return cls(start, end, first_day, today, error)
