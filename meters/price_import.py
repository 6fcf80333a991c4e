"""Staff import of a dynamic tariff's hourly prices from CSV: all rows or nothing."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from django.db import transaction

from lib.periods import floor_hour
from meters.bands import parse_rate
from meters.models import DynamicPrice, HourlyUsage, TariffVersion
from meters.usage import price_unpriced_lines

MAX_ROWS = 100_000
COLUMNS = ("hour_start", "rate_eur_per_kwh")


@dataclass
class ImportResult:
    created: int = 0
    unchanged: int = 0
    repriced_lines: int = 0
    errors: list[str] = field(default_factory=list)


def _parse(text: str, starts: datetime, ends: datetime | None) -> tuple[dict[datetime, Decimal], list[str]]:
    """Prices by UTC hour, for hours in [starts, ends), or the errors of every bad line."""
    reader = csv.DictReader(io.StringIO(text))
    prices: dict[datetime, Decimal] = {}
    errors = []
    try:
        if tuple(reader.fieldnames or ()) != COLUMNS:
            return {}, [f"the header must be exactly: {','.join(COLUMNS)}"]
        for count, row in enumerate(reader, start=1):
            if count > MAX_ROWS:
                return {}, [f"at most {MAX_ROWS} rows per file"]
            error = _check_row(row, prices, starts, ends)
            if error:
                errors.append(f"line {reader.line_num}: {error}")
    except csv.Error as error:
        # The line being read when it failed is not counted yet.
        return {}, [f"line {reader.line_num + 1}: not valid CSV ({error})"]
    if not prices and not errors:
        errors.append("the file has no rows")
    return prices, errors


def _check_row(row: dict, prices: dict[datetime, Decimal], starts: datetime, ends: datetime | None) -> str | None:
    """Add the row's price to ``prices`` or say what is wrong with it."""
    if None in row or None in row.values():
        # DictReader files surplus cells under None and fills missing ones with None.
        return "expected exactly two cells: hour_start,rate_eur_per_kwh"
    try:
        local = datetime.fromisoformat(row["hour_start"].strip())
    except ValueError:
        return "hour_start must be an ISO 8601 date-time with offset, e.g. 2026-11-22T10:00:00+01:00"
    if local.tzinfo is None:
        return "hour_start needs a UTC offset, e.g. 2026-11-22T10:00:00+01:00 or 2026-11-22T09:00:00Z"
    try:
        hour = local.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before the first instant a datetime holds
        return "hour_start is out of range"
    if floor_hour(hour) != hour:
        return "hour_start must be on the hour (in UTC)"
    try:
        rate = parse_rate(row["rate_eur_per_kwh"].strip())
    except ValueError as error:
        return f"rate_eur_per_kwh {error}"
    if hour < starts or (ends is not None and hour >= ends):
        # Such a price would never be used: almost certainly a file meant for another version.
        until = f" until {ends:%Y-%m-%d %H:%M} UTC" if ends else ""
        return f"{hour:%Y-%m-%d %H:%M} UTC is outside this version (from {starts:%Y-%m-%d %H:%M} UTC{until})"
    if hour in prices and prices[hour] != rate:
        return f"a different rate for {hour:%Y-%m-%d %H:%M} UTC appears earlier in the file"
    prices[hour] = rate
    return None


def import_prices(version: TariffVersion, text: str) -> ImportResult:
    """Add hourly prices to a dynamic version. A price already stored is never changed.

    1. parse every row, collecting every error (nothing is written if there is one);
    2. lock the version, so two imports of it run one after the other;
    3. refuse the file if it would change a stored price, else insert the new prices;
    4. price the usage lines of those hours that were waiting for a price.
    """
    result = ImportResult()
    if version.kind != TariffVersion.Kind.DYNAMIC:
        result.errors.append("prices can only be imported into a dynamic tariff version")
        return result
    following = TariffVersion.objects.filter(tariff_id=version.tariff_id, valid_from__gt=version.valid_from)
    ends = following.order_by("valid_from").values_list("valid_from", flat=True).first()
    prices, result.errors = _parse(text, version.valid_from, ends)
    if result.errors:
        return result
    with transaction.atomic():
        TariffVersion.objects.select_for_update().filter(pk=version.pk).first()
        span = {"hour_start__gte": min(prices), "hour_start__lte": max(prices)}
        stored = dict(DynamicPrice.objects.filter(version=version, **span).values_list("hour_start", "rate"))
        for hour, rate in sorted(prices.items()):
            if hour in stored and stored[hour] != rate:
                result.errors.append(
                    f"{hour:%Y-%m-%d %H:%M} UTC already costs {stored[hour]} EUR/kWh; a stored price is never changed"
                )
        if result.errors:
            return result
        new = [DynamicPrice(version=version, hour_start=h, rate=r) for h, r in prices.items() if h not in stored]
        DynamicPrice.objects.bulk_create(new)
        result.created, result.unchanged = len(new), len(prices) - len(new)
        result.repriced_lines = price_unpriced_lines(HourlyUsage.objects.filter(tariff_version=version, **span))
        if new:
            version.new_tariff_revision()  # the price curve of those hours changed, used or not
    return result
