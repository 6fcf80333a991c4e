"""The dashboard's comparison panel: the period in view beside the previous one and the same one a year before.

What is compared, and how like is kept with like:

- The periods are the chart's (meters/charts.py ``Period``): a local day, ISO week, month or year in
  the household's time zone. The previous period is the one just before; "last year" is the same
  date a year earlier for a day (29 February: the 28th), the week 52 weeks earlier (same weekdays),
  the same month a year earlier. For a year the previous period is last year, so it is shown once.
- A period that is not over (today, this week...) counts up to the last whole hour, and every
  period it is compared with counts up to the same point of its own clock: this day until 14:00
  against yesterday until 14:00; the 6th of this month at 14:00 against the 6th of last month at
  14:00 (never past that month's end: the 30th of March against all of February).
- Periods of different lengths by the clock (February against January, a leap year, a month
  against a shorter month it was cut to) are compared by their average per day; the page says so.
  A 23- or 25-hour day is still one day: its total is compared as it is, and the page names the
  clock change.
- Money is what the household pays for its lines: energy, standing charge and taxes
  (payments/figures.py ``line_amount``), the dashboard's definition. kWh are the energy lines'.
  Lines still waiting for a price count in kWh only.
- A period before the household's first usage line has "no data"; one whose first day is before the
  day of that line has only part of its data: neither gets a percentage (never +inf% or a misleading
  +300%).

Two queries: one aggregate for the three stretches (conditional sums) and the household's first
line; the hint (meters/insight.py) adds its own. The rendered panel is cached like the chart,
under ``cache_key``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

from babel.numbers import format_percent
from django.db.models import Min, Q, Sum
from django.utils import dateformat
from django.utils.translation import get_language, gettext
from django.utils.translation import gettext_lazy as _

from lib.money import babel_locale
from lib.periods import HOUR, floor_hour, local_date, zone
from meters.charts import DAY, EUR, MONTH, WEEK, YEAR, ChartView, Period
from meters.insight import ShiftHint, shift_saving
from meters.models import HourlyUsage, Household
from payments.figures import line_amount

ZERO = Decimal("0")
CACHE_SECONDS = 3600
CURRENT, PREVIOUS, LAST_YEAR = "current", "previous", "last_year"

# "+12% vs <name>": the period compared with, by range; the article is part of the name (Spanish needs it).
PREVIOUS_NAMES = {
    DAY: _("the previous day"),
    WEEK: _("the previous week"),
    MONTH: _("the previous month"),
    YEAR: _("the previous year"),
}
LAST_YEAR_NAMES = {
    DAY: _("the same day last year"),
    WEEK: _("the same week last year"),
    MONTH: _("the same month last year"),
}


@dataclass(frozen=True)
class Totals:
    eur: Decimal = ZERO
    kwh: Decimal = ZERO
    pending_kwh: Decimal = ZERO


@dataclass
class Stretch:
    """The part of one period that is compared: UTC [start, end), and how long that is by the local clock."""

    kind: str
    period: Period
    start: datetime
    end: datetime
    clock: timedelta  # wall-clock length: a 23-hour day is one day
    totals: Totals = Totals()
    coverage: str = "full"  # "full", "partial" (history starts inside it) or "none"

    @property
    def hours(self) -> int:
        return (self.end - self.start) // HOUR

    @property
    def clock_hours(self) -> int:
        return round(self.clock / HOUR)

    @property
    def clock_days(self) -> Decimal:
        return Decimal(round(self.clock / HOUR)) / 24

    @property
    def clocks_changed(self) -> bool:
        return self.hours != self.clock_hours

    def value(self, unit: str, per_day: bool) -> Decimal:
        amount = self.totals.eur if unit == EUR else self.totals.kwh
        if per_day and self.clock_days:
            return amount / self.clock_days
        return amount


@dataclass
class Change:
    """The current stretch against one other: the percentage, or why there is none."""

    name: str
    other: Stretch
    percent: int | None  # None: see ``reason``
    reason: str = ""  # "no_data", "partial", "nothing" (the other used nothing)

    @property
    def text(self) -> str:
        """The change in the reader's percent format with a sign: "+12%" in English, "+12 %" in Spanish."""
        if self.percent is None:
            return ""
        formatted = format_percent(Decimal(abs(self.percent)) / 100, locale=babel_locale())
        if self.percent > 0:
            return f"+{formatted}"
        if self.percent < 0:
            return f"\N{MINUS SIGN}{formatted}"
        return formatted

    @property
    def sentence(self) -> str:
        if self.reason == "no_data":
            return gettext("No data for %(other)s.") % {"other": self.name}
        if self.reason == "partial":
            return gettext("Not enough data for %(other)s: your history starts inside it.") % {"other": self.name}
        if self.reason == "nothing":
            return gettext("Nothing was used in %(other)s, so there is no percentage.") % {"other": self.name}
        return gettext("%(change)s vs %(other)s") % {"change": self.text, "other": self.name}


@dataclass
class Comparison:
    view: ChartView
    current: Stretch
    others: list[Stretch]
    changes: list[Change]
    per_day: bool  # the stretches differ in clock length: values are averages per day
    cut: datetime | None  # the current period is not over: every stretch counts up to this point of its clock
    hint: ShiftHint | None
    tz_name: str

    @property
    def unit(self) -> str:
        return self.view.unit

    @property
    def too_early(self) -> bool:
        """The first hour of the period in view is not over: nothing to compare yet."""
        return self.cut is not None and self.current.clock == timedelta(0)

    @property
    def stretches(self) -> list[Stretch]:
        return [self.current, *self.others]

    def rows(self) -> list[dict]:
        """One table row per stretch, with a bar as a share of the largest value (0-100)."""
        values = [stretch.value(self.unit, self.per_day) for stretch in self.stretches]
        top = max(values, default=ZERO)
        changes = {id(change.other): change for change in self.changes}
        rows = []
        for stretch, value in zip(self.stretches, values, strict=True):
            change = changes.get(id(stretch))
            share = int((value / top * 100).to_integral_value(ROUND_HALF_UP)) if top > 0 else 0
            rows.append(
                {
                    "stretch": stretch,
                    "title": stretch.period.title(),
                    "value": value,
                    "bar": share,
                    "change": change,
                    "has_data": stretch.coverage != "none",
                }
            )
        return rows

    @property
    def point(self) -> str:
        """Where a period not over is cut, in words of its range: "14:00", "Sunday 14:00", "6 December, 14:00"."""
        if self.cut is None:
            return ""
        local = self.cut.astimezone(zone(self.tz_name))
        if self.view.range == DAY:
            return dateformat.format(local, "H:i")
        if self.view.range == WEEK:
            return dateformat.format(local, "l H:i")
        return dateformat.format(local, "j F, H:i")


def compare(household: Household, view: ChartView, now: datetime, *, with_hint: bool = True) -> Comparison:
    """The comparison of ``view``'s period for ``household`` at ``now``."""
    tz_name = household.timezone
    period = Period.containing(view.range, view.day, tz_name)
    cut = floor_hour(now)
    elapsed = None
    if period.start <= cut < period.end:  # not over; at its very start (elapsed 0) there is nothing yet
        elapsed = cut.astimezone(zone(tz_name)).replace(tzinfo=None) - datetime.combine(period.first, time())
    current = _stretch(CURRENT, period, elapsed, tz_name)
    previous = _stretch(PREVIOUS, Period.containing(view.range, period.previous_day, tz_name), elapsed, tz_name)
    others = [previous]
    names = [str(PREVIOUS_NAMES[view.range])]
    if view.range != YEAR:  # a year's previous period is last year
        year_before = Period.containing(view.range, _year_before(view.range, period), tz_name)
        others.append(_stretch(LAST_YEAR, year_before, elapsed, tz_name))
        names.append(str(LAST_YEAR_NAMES[view.range]))
    first_line = _fill_totals(household, [current, *others])
    for stretch in [current, *others]:
        if first_line is None or first_line >= stretch.end:
            stretch.coverage = "none"
        elif local_date(first_line, tz_name) > stretch.period.first:  # history starts on a later day
            stretch.coverage = "partial"
    per_day = any(other.clock != current.clock for other in others)
    changes = [_change(name, current, other, view.unit, per_day) for name, other in zip(names, others, strict=True)]
    hint = shift_saving(household, current.start, current.end) if with_hint else None
    return Comparison(view, current, others, changes, per_day, cut if elapsed is not None else None, hint, tz_name)


def cache_key(household: Household, view: ChartView, now: datetime) -> str | None:
    """The key the rendered panel is cached under: everything its answer depends on (as the chart's key).

    ``household`` needs its tariff loaded (meters.access.household_of joins it). The hour is part of
    the key while the period in view is not over (its stretches end at the last whole hour).
    """
    if view.error:
        return None
    tariff = household.tariff
    period = Period.containing(view.range, view.day, household.timezone)
    hour = floor_hour(now).strftime("%Y%m%d%H") if period.start < now < period.end else ""
    parts = (
        household.pk,
        household.usage_version,
        tariff.pk,
        tariff.revision.hex,
        household.tariff_since.isoformat() if household.tariff_since else "",  # the hint's tariff changes
        household.tariff_until.isoformat() if household.tariff_until else "",
        household.timezone,
        get_language() or "",
        view.range,
        view.unit,
        view.day.isoformat(),
        view.today.isoformat(),
        hour,
    )
    return "comparison:" + ":".join(str(part) for part in parts)


def _year_before(range_: str, period: Period) -> date:
    """A day in the same period a year before: 52 weeks for a week (same weekdays), else the same date."""
    if range_ == WEEK:
        return period.first - timedelta(weeks=52)
    first = period.first
    try:
        return first.replace(year=first.year - 1)
    except ValueError:  # 29 February
        return first.replace(year=first.year - 1, day=28)


def _stretch(kind: str, period: Period, elapsed: timedelta | None, tz_name: str) -> Stretch:
    """``period`` whole, or its first ``elapsed`` of local clock time (never past its end)."""
    whole = datetime.combine(period.stop, time()) - datetime.combine(period.first, time())
    if elapsed is None or elapsed >= whole:
        return Stretch(kind, period, period.start, period.end, whole)
    local_cut = datetime.combine(period.first, time()) + elapsed
    end = local_cut.replace(tzinfo=zone(tz_name)).astimezone(UTC)
    return Stretch(kind, period, period.start, min(end, period.end), elapsed)


def _fill_totals(household: Household, stretches: list[Stretch]) -> datetime | None:
    """Sum each stretch's lines in one query; return the household's first line's hour (None: no lines)."""
    energy, unpriced = Q(kind=HourlyUsage.Kind.ENERGY), Q(cost_eur__isnull=True)
    spans = {stretch.kind: Q(hour_start__gte=stretch.start, hour_start__lt=stretch.end) for stretch in stretches}
    any_span = Q()
    for span in spans.values():
        any_span |= span
    amount = line_amount()
    aggregates = {}
    for kind, span in spans.items():
        aggregates[f"{kind}_eur"] = Sum(amount, filter=span)
        aggregates[f"{kind}_kwh"] = Sum("kwh", filter=span & energy)
        aggregates[f"{kind}_pending"] = Sum("kwh", filter=span & unpriced)
    lines = HourlyUsage.objects.filter(household=household)
    sums = lines.filter(any_span).aggregate(**aggregates)
    for stretch in stretches:
        stretch.totals = Totals(
            sums[f"{stretch.kind}_eur"] or ZERO,
            sums[f"{stretch.kind}_kwh"] or ZERO,
            sums[f"{stretch.kind}_pending"] or ZERO,
        )
    return lines.aggregate(first=Min("hour_start"))["first"]


def _change(name: str, current: Stretch, other: Stretch, unit: str, per_day: bool) -> Change:
    if other.coverage == "none":
        return Change(name, other, None, "no_data")
    if other.coverage == "partial":
        return Change(name, other, None, "partial")
    base = other.value(unit, per_day)
    if base <= 0:
        return Change(name, other, None, "nothing")
    ratio = (current.value(unit, per_day) - base) / base * 100
    return Change(name, other, int(ratio.to_integral_value(ROUND_HALF_UP)))
