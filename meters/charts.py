"""The usage chart: a household's usage and money per local hour, day or month, aggregated in SQL.

A chart shows one local period (a day, an ISO week, a month or a year, in the household's time
zone) as bars: a day has one bar per UTC hour that starts inside it (23 or 25 on DST days), a week
or a month one bar per local day, a year one bar per local month. The database groups the usage
lines by that local period (``Trunc*`` with the household's ``tzinfo``, on PostgreSQL and SQLite
alike); Python only fills in the bars that had no usage and formats them.

Unpriced lines (``cost_eur`` null: a dynamic tariff still waiting for its price) count in kWh but
never in money: their bar says "price pending" instead of guessing.

A bar's money is what the household pays for its hours, as every other figure of the household
(payments.figures.line_amount, the cards, the read API, statements): energy + standing charge +
taxes, each part shown. The table rounds them to the cent so that they add up (lib/apportion.py):
each row's parts to its total, the rows and each column to the total shown.

The rendered chart is cached (``cache_key``) under everything its answer depends on: the
household's ``usage_version``, which every write to its ledger raises in the same transaction
(meters/usage.py), its tariff and the tariff's revision (versions and hour prices: the day's price
curve), its time zone, the language, the view, today's local date and, for a day, the UTC hour (the
bars still to come). A request that loaded the household at version v sees at least the ledger of
v, so no key ever holds money older than its version.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal
from functools import cached_property
from html import escape
from urllib.parse import urlencode

from django.db import connections, router
from django.utils import dateformat
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import get_language, gettext
from django.utils.translation import gettext_lazy as _

from lib import prepared
from lib.apportion import RoundedTable, to_cents
from lib.dateranges import FIRST_DATE, LAST_DATE, DateParamError, parse_day
from lib.money import EUR_PLACES, format_kwh, format_money, format_rate
from lib.periods import add_months, ceil_hour, first_of_month, floor_hour, hours_between, local_midnight, zone
from meters.models import HourlyUsage, Household, Tariff, TariffVersion
from meters.pricing import TariffSchedule, versions_in_force

DAY, WEEK, MONTH, YEAR = "day", "week", "month", "year"
RANGES = {DAY: _("Day"), WEEK: _("Week"), MONTH: _("Month"), YEAR: _("Year")}
EUR, KWH = "eur", "kwh"
UNITS = {EUR: "EUR", KWH: "kWh"}
DEFAULT_RANGE, DEFAULT_UNIT = DAY, EUR
ZERO = Decimal("0")
SIX_PLACES = EUR_PLACES  # EUR, kWh and EUR/kWh: the six places lib.money keeps all three to
PRICED_KINDS = {TariffVersion.Kind.TIME_OF_USE, TariffVersion.Kind.DYNAMIC, TariffVersion.Kind.PERIODS}
# A cached chart is exact for as long as it is found (the key changes with every write, hour and
# day): the timeout only bounds how long versions nobody asks for any more keep their memory.
CACHE_SECONDS = 3600
# Raised when the partial's markup changes, so a deploy never serves a chart cached by the code before it.
FORMAT = 3  # 2: energy, standing charge and taxes in the table (issue 13); 3: a day's 2.0TD periods


# --- Local periods --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """One local period of a range: local days [first, stop), and the UTC instants [start, end)."""

    range: str
    first: date
    stop: date  # exclusive
    start: datetime
    end: datetime

    @classmethod
    def containing(cls, range_: str, day: date, tz_name: str) -> Period:
        if range_ == DAY:
            first, stop = day, day + timedelta(days=1)
        elif range_ == WEEK:
            first = day - timedelta(days=day.weekday())  # ISO weeks start on Monday
            stop = first + timedelta(days=7)
        elif range_ == MONTH:
            first, stop = first_of_month(day), add_months(day, 1)
        else:
            first, stop = date(day.year, 1, 1), date(day.year + 1, 1, 1)
        return cls(range_, first, stop, local_midnight(first, tz_name), local_midnight(stop, tz_name))

    @property
    def previous_day(self) -> date:
        """A day in the period before this one."""
        return self.first - timedelta(days=1)

    @property
    def last(self) -> date:
        return self.stop - timedelta(days=1)

    def title(self) -> str:
        if self.range == DAY:
            return dateformat.format(self.first, "l j F Y")
        if self.range == WEEK:
            return f"{dateformat.format(self.first, 'j M')} \N{EN DASH} {dateformat.format(self.last, 'j M Y')}"
        if self.range == MONTH:
            return dateformat.format(self.first, "F Y")
        return str(self.first.year)


# --- What the URL asks for ------------------------------------------------------------------------


@dataclass(frozen=True)
class ChartView:
    """Range, unit and a day of the period to show, from the query string; bad values give the defaults.

    A date that cannot be used (lib.dateranges: the CSV exports' rules) or that has not come yet shows
    today's period with ``error`` saying why, rather than a blank page for a mistyped link.
    """

    range: str
    unit: str
    day: date
    today: date
    error: str = ""

    @classmethod
    def from_params(cls, params: Mapping[str, str], today: date) -> ChartView:
        range_ = params.get("range") or DEFAULT_RANGE
        unit = params.get("unit") or DEFAULT_UNIT
        error = ""
        try:
            day = parse_day(params.get("date"), "date") or today
        except DateParamError as refused:
            day, error = today, gettext("%(reason)s Showing today instead.") % {"reason": refused}
        if day > today:
            # The nearest period with anything in it is the current one: say so rather than show empty bars.
            error = gettext("%(day)s has not come yet: showing today, the latest day there is.") % {
                "day": dateformat.format(day, "j F Y")
            }
            day = today
        return cls(
            range_ if range_ in RANGES else DEFAULT_RANGE, unit if unit in UNITS else DEFAULT_UNIT, day, today, error
        )

    def query(self, **changes: str | date) -> str:
        """The query string of this view with ``changes``; a view of today's period needs no date.

        Leaving the date out keeps a shared or bookmarked "this week" link on the current week.
        """
        values: dict[str, str | date] = {"range": self.range, "unit": self.unit, "date": self.day, **changes}
        if values["date"] == self.today:
            del values["date"]
        return urlencode({key: str(value) for key, value in values.items()})


# --- The chart ------------------------------------------------------------------------------------


@dataclass
class Bar:
    label: str
    kwh: Decimal = ZERO
    eur: Decimal = ZERO  # priced lines only: energy + standing charge + taxes
    energy_eur: Decimal = ZERO
    standing_eur: Decimal = ZERO
    tax_eur: Decimal = ZERO
    rate: Decimal | None = None  # energy EUR per priced kWh: what the bar's energy cost on average
    pending_kwh: Decimal = ZERO  # kWh waiting for a price
    price: Decimal | None = None  # the price curve's point, when there is one
    period: str | None = None  # a day's hour on a tariff priced by periods: its energy period (P1, P2, P3)
    future: bool = False  # has not begun yet: no bar rather than a zero
    has_lines: bool = False  # any ledger line at all (energy, standing charge, price pending)

    # Formatted once, for the tooltip and the table alike (formatting is most of a chart's rendering).
    @cached_property
    def kwh_text(self) -> str:
        return format_kwh(self.kwh, 3)

    @cached_property
    def eur_text(self) -> str:
        return format_money(self.eur, "EUR")

    @cached_property
    def rate_text(self) -> str:
        return format_rate(self.rate)

    @cached_property
    def price_text(self) -> str:
        return format_rate(self.price)

    # The table's figures, to the cent, rounded with the whole table so that they add up (Chart.rounded).
    shown: tuple[Decimal, Decimal, Decimal, Decimal] | None = None  # energy, standing, taxes, total

    @property
    def in_table(self) -> bool:
        """A row of the table: a bar that has begun and has ledger lines (not hours before the contract or
        the first reading, nor those still to come)."""
        return self.has_lines and not self.future

    def tooltip(self) -> list[str]:
        named = [gettext("period %(period)s") % {"period": self.period}] if self.period else []
        if self.future:
            return [*named, gettext("not yet")]
        lines = [*named, self.kwh_text]
        if self.rate is not None:
            lines.append(gettext("average %(rate)s") % {"rate": self.rate_text})
        else:
            lines.append(gettext("no priced energy"))
        if self.shown is not None:
            energy, standing, taxes, total = (format_money(value, "EUR") for value in self.shown)
            lines.append(total)
            lines.append(gettext("energy %(amount)s") % {"amount": energy})
            lines.append(gettext("standing charge %(amount)s") % {"amount": standing})
            lines.append(gettext("taxes %(amount)s") % {"amount": taxes})
        else:
            lines.append(self.eur_text)
        if self.pending_kwh:
            lines.append(gettext("price pending for %(kwh)s") % {"kwh": format_kwh(self.pending_kwh, 3)})
        return lines


@dataclass
class Link:
    value: str
    label: str
    query: str
    current: bool


@dataclass
class Chart:
    view: ChartView
    period: Period
    bars: list[Bar]
    price_label: str | None  # None: no price curve (a flat tariff)
    ranges: list[Link] = field(default_factory=list)
    units: list[Link] = field(default_factory=list)
    previous_query: str | None = None  # None before FIRST_DATE
    next_query: str | None = None  # None when the next period has not begun
    today_query: str | None = None  # None when the period shown contains today

    @cached_property  # three places in the partial; the day and month names are translated each time
    def title(self) -> str:
        return self.period.title()

    @property
    def bar_heading(self) -> str:
        return {DAY: gettext("Hour"), WEEK: gettext("Day"), MONTH: gettext("Day"), YEAR: gettext("Month")}[
            self.period.range
        ]

    @cached_property
    def total_kwh(self) -> Decimal:
        return sum((bar.kwh for bar in self.bars), ZERO)

    @cached_property
    def total_eur(self) -> Decimal:
        return sum((bar.eur for bar in self.bars), ZERO)

    @cached_property
    def pending_kwh(self) -> Decimal:
        return sum((bar.pending_kwh for bar in self.bars), ZERO)

    @cached_property
    def rounded(self) -> RoundedTable:
        """The table's bars as (energy, standing, taxes) to the cent, adding up (lib/apportion.py).

        Also gives each such bar its ``shown`` figures. Its total is ``total_eur`` rounded half up, as
        the cards round theirs.
        """
        begun = [bar for bar in self.bars if bar.in_table]
        table = to_cents([(bar.energy_eur, bar.standing_eur, bar.tax_eur) for bar in begun])
        for bar, cells, total in zip(begun, table.cells, table.rows, strict=True):
            bar.shown = (*cells, total)
        return table

    @cached_property
    def shows_periods(self) -> bool:
        """A day on a tariff priced by periods: the table has a Period column and each tooltip names it."""
        return any(bar.period for bar in self.bars)

    @property
    def rate_heading(self) -> str:
        """The one rate column: the tariff's price of each hour on a day with a price curve (unused hours
        too), otherwise what the energy of the row cost on average."""
        if self.period.range == DAY and self.price_label is not None:
            return gettext("Tariff price (EUR/kWh)")
        return gettext("Average rate (EUR/kWh)")

    def _rate_text(self, bar: Bar) -> str:
        return bar.price_text if self.period.range == DAY and self.price_label is not None else bar.rate_text

    def table_rows(self) -> SafeString:
        """The rows of the chart's table (templates/dashboard.html), one per bar ``in_table``, as HTML.

        The period (P1, P2, P3) of an hour on a tariff priced by periods (``shows_periods``), kWh, the
        one rate, then energy + standing charge + taxes = total, to the cent and adding up
        (``rounded``). Hours and days still to come, and those without a line, have no row. Written
        here rather than as a loop in the template: a month's 31 rows of seven cells cost the
        template engine about half a millisecond of lookups, a third of a cache miss (the chart
        right after a reading), and these f-strings a twentieth of that. Every text is escaped.
        """
        self.rounded  # noqa: B018 (gives each bar its shown figures)
        rows = []
        pending = escape(gettext("price pending"))
        for bar in self.bars:
            if not bar.in_table:
                continue
            badge = f' <span class="badge">{pending}</span>' if bar.pending_kwh else ""
            money = "".join(f'<td class="num">{escape(format_money(value, "EUR"))}</td>' for value in bar.shown[:3])
            period = f"<td>{escape(bar.period or '')}</td>" if self.shows_periods else ""
            rows.append(
                f'<tr><th scope="row">{escape(bar.label)}</th>{period}<td class="num">{escape(bar.kwh_text)}</td>'
                f'<td class="num">{escape(self._rate_text(bar))}</td>{money}'
                f'<td class="num row-total">{escape(format_money(bar.shown[3], "EUR"))}{badge}</td></tr>'
            )
        return mark_safe("\n".join(rows))  # noqa: S308 (built above, every text escaped)

    def data(self) -> dict:
        """What chart-init.js draws, for ``json_script``. Numbers are exact decimal strings."""
        self.rounded  # noqa: B018 (the tooltips show the table's figures)
        in_eur = self.view.unit == EUR
        return {
            "range": self.period.range,
            "unit": self.view.unit,
            "axis": "EUR" if in_eur else "kWh",
            "label": gettext("Cost (EUR)") if in_eur else gettext("Energy (kWh)"),
            "labels": [bar.label for bar in self.bars],
            "values": [None if bar.future else str(bar.eur if in_eur else bar.kwh) for bar in self.bars],
            "pending": [bool(bar.pending_kwh) for bar in self.bars],
            "tips": [bar.tooltip() for bar in self.bars],
            "price": None
            if self.price_label is None
            else {
                "label": self.price_label,
                "values": [None if bar.price is None else str(bar.price) for bar in self.bars],
                "text": [bar.price_text for bar in self.bars],
            },
        }


def usage_chart(household: Household, view: ChartView, now: datetime) -> Chart:
    """The chart of ``view`` for ``household``: one query (the sums), two for a dynamic tariff's day (its
    hour prices). The tariff's versions come from meters.pricing's cache, keyed on the tariff's revision:
    ``household`` needs its tariff loaded (meters.access.household_of has it), or that costs a query."""
    tz_name = household.timezone
    period = Period.containing(view.range, view.day, tz_name)
    bars = _bars(household, period)
    for key, bar in bars.items():
        bar.future = key > now if isinstance(key, datetime) else key > view.today
    price_label = None
    if any(version.kind in PRICED_KINDS for version in versions_in_force(household.tariff, period.start, period.end)):
        price_label = _add_price_curve(household, household.tariff, period, bars)
    chart = Chart(view, period, list(bars.values()), price_label)
    _add_links(chart)
    return chart


def cache_key(household: Household, view: ChartView, now: datetime) -> str | None:
    """The key the rendered chart of ``view`` is cached under; None for a view not cached (a refused date).

    ``household`` needs its tariff loaded (meters.access.household_of joins it), or this costs a query.
    """
    if view.error:  # rare, and its sentence quotes the request
        return None
    tariff = household.tariff
    # Today's day view marks the hours still to come: it changes on the hour; any other view does not.
    hour = floor_hour(now).strftime("%Y%m%d%H") if view.range == DAY and view.day == view.today else ""
    parts = (
        household.pk,
        household.usage_version,
        tariff.pk,
        tariff.revision.hex,
        household.timezone,
        get_language() or "",
        view.range,
        view.unit,
        view.day.isoformat(),
        view.today.isoformat(),
        hour,
    )
    return f"chart:{FORMAT}:" + ":".join(str(part) for part in parts)


def _bars(household: Household, period: Period) -> dict[date | datetime, Bar]:
    tz_name = household.timezone
    if period.range == DAY:
        # Hours of the day are the UTC hours starting inside it, as for the standing charge.
        hours = hours_between(ceil_hour(period.start), period.end)
        labels: dict[date | datetime, str] = dict(zip(hours, _hour_labels(hours, tz_name), strict=True))
    elif period.range == YEAR:
        labels = {date(period.first.year, month, 1): calendar.month_abbr[month] for month in range(1, 13)}
    else:
        days = [period.first + timedelta(days=n) for n in range((period.stop - period.first).days)]
        label = "D j" if period.range == WEEK else "j"
        labels = {day: dateformat.format(day, label) for day in days}
    bars = {key: Bar(label) for key, label in labels.items()}

    for bucket, energy_kwh, energy_eur, priced_kwh, standing_eur, pending_kwh, tax_eur in _sums(
        household.pk, period, tz_name
    ):
        bar = bars.get(bucket)
        if bar is None:  # an hour a half-hour zone's day shares with its neighbour: not this period's
            continue
        # Six places whatever the database returns (SQLite drops trailing zeros), as the lines carry.
        energy_eur, standing_eur, priced_kwh = _six(energy_eur), _six(standing_eur), _six(priced_kwh)
        bar.has_lines = True
        bar.kwh = _six(energy_kwh)
        bar.energy_eur, bar.standing_eur, bar.tax_eur = energy_eur, standing_eur, _six(tax_eur)
        bar.eur = energy_eur + standing_eur + bar.tax_eur
        bar.pending_kwh = _six(pending_kwh)
        if priced_kwh:
            bar.rate = (energy_eur / priced_kwh).quantize(SIX_PLACES, rounding=ROUND_HALF_UP)
    return bars


# The usage lines of a period summed by bar, in one statement written here rather than built by the
# ORM: building, compiling and reading back the same statement through the ORM costs ~1.4 ms of CPU,
# several times what the database spends on it, and every cache miss (the chart right after a
# reading) pays it. Unpriced lines (cost NULL) count in kWh, never in money.
_SUMS = """
SELECT {bucket},
    SUM(CASE WHEN kind = %s THEN kwh END),
    SUM(CASE WHEN kind = %s THEN cost_eur END),
    SUM(CASE WHEN kind = %s AND cost_eur IS NOT NULL THEN kwh END),
    SUM(CASE WHEN kind NOT IN (%s, %s) THEN cost_eur END),
    SUM(CASE WHEN cost_eur IS NULL THEN kwh END),
    SUM(CASE WHEN kind = %s THEN COALESCE(tax_eur, 0) + cost_eur ELSE tax_eur END)
FROM {table}
WHERE household_id = %s AND hour_start >= %s AND hour_start < %s
GROUP BY 1
"""
# The fourth: every line but energy is a fixed charge (standing charge, power term, meter rental), except the
# electricity tax's minimum (meters/minimum_tax.py), whose cost is a tax: the last column counts it with the taxes.
_KINDS = (*(HourlyUsage.Kind.ENERGY.value,) * 4, HourlyUsage.Kind.MINIMUM.value, HourlyUsage.Kind.MINIMUM.value)
_from_float = Context(prec=15).create_decimal_from_float  # SQLite sums through floats: 15 digits, as Django reads


def _sums(household_id: int, period: Period, tz_name: str) -> list[tuple]:
    """(bar key, energy kWh, energy EUR, priced kWh, standing EUR, pending kWh, taxes EUR) per bar with usage.

    The bar of a line is its UTC hour (a day), or its local day or month: the SQL of Django's own
    ``TruncDate``/``TruncMonth`` in the household's zone (``connection.ops``), so both databases
    place each line exactly where the ORM would.
    """
    connection = connections[router.db_for_read(HourlyUsage)]
    ops = connection.ops
    if period.range == DAY:
        bucket, bucket_params = "hour_start", ()
    elif period.range == YEAR:
        bucket, bucket_params = ops.datetime_trunc_sql("month", "hour_start", (), tz_name)
    else:
        bucket, bucket_params = ops.datetime_cast_date_sql("hour_start", (), tz_name)
    sql = _SUMS.format(bucket=bucket, table=ops.quote_name(HourlyUsage._meta.db_table))
    bounds = (ops.adapt_datetimefield_value(period.start), ops.adapt_datetimefield_value(period.end))
    params = (*bucket_params, *_KINDS, household_id, *bounds)
    # Planned once per connection on PostgreSQL (lib/prepared.py): planning it costs more than running it.
    rows = prepared.fetch(connection, "energypay_chart", sql, params)
    return [(_bucket(row[0], period.range), *row[1:]) for row in rows]


def _bucket(value: str | datetime | date, range_: str) -> date | datetime:
    """A bar's key from the database's value: PostgreSQL answers in dates and datetimes, SQLite in naive
    UTC datetimes for the column and text for its functions."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value) if range_ == DAY else date.fromisoformat(value[:10])
    if range_ == DAY:
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, datetime):  # PostgreSQL's DATE_TRUNC: the local month's first midnight
        return value.date()
    return value


def _six(value: Decimal | float | int | None) -> Decimal:
    if value is None:
        return ZERO.quantize(SIX_PLACES)
    if isinstance(value, float):
        value = _from_float(value)
    return Decimal(value).quantize(SIX_PLACES)


def _hour_labels(hours: list[datetime], tz_name: str) -> list[str]:
    """Local "HH:MM" per hour; an hour whose clock time repeats (the night DST ends) names its offset."""
    local = [hour.astimezone(zone(tz_name)) for hour in hours]
    plain = [moment.strftime("%H:%M") for moment in local]
    return [
        f"{text} {moment.tzname()}" if plain.count(text) > 1 else text
        for text, moment in zip(plain, local, strict=True)
    ]


def _add_price_curve(household: Household, tariff: Tariff, period: Period, bars: dict[date | datetime, Bar]) -> str:
    """Give each bar a point of the price curve and return the curve's label.

    A day shows the tariff's price of each hour, used or not: when energy is cheap; on a tariff priced
    by periods, each hour's period too (its local time on the tariff's calendar). Longer ranges
    show what the energy of each bar cost on average (its usage-weighted rate), since an unweighted
    mean of a time-of-use tariff's hours would say the same for every weekday.
    """
    if period.range != DAY:
        for bar in bars.values():
            bar.price = bar.rate
        return gettext("Average price paid (EUR/kWh)")
    schedule = TariffSchedule(tariff, household.timezone, period.start, period.end)
    for hour, bar in bars.items():
        _, price = schedule.energy_rate(hour)
        bar.price = None if price is None else price.quantize(SIX_PLACES)
        bar.period = schedule.energy_period(hour)  # from the calendar: no query
    return gettext("Tariff price (EUR/kWh)")


def _add_links(chart: Chart) -> None:
    view, period = chart.view, chart.period
    chart.ranges = [Link(key, str(label), view.query(range=key), key == view.range) for key, label in RANGES.items()]
    chart.units = [Link(key, label, view.query(unit=key), key == view.unit) for key, label in UNITS.items()]
    if period.first > FIRST_DATE:
        chart.previous_query = view.query(date=period.previous_day)
    if period.stop <= view.today and period.stop <= LAST_DATE:
        chart.next_query = view.query(date=period.stop)
    if not period.first <= view.today < period.stop:
        chart.today_query = view.query(date=view.today)
