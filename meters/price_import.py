"""Staff import of a dynamic tariff's hourly prices from CSV: all rows or nothing."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from django.db import transaction

from meters.models import DynamicPrice, HourlyUsage, TariffVersion
from meters.timeutil import floor_hour
from meters.usage import price_unpriced_lines

MAX_ROWS = 100_000
COLUMNS = ("hour_start", "rate_eur_per_kwh")


@dataclass
class ImportResult:
    created: int = 0
    unchanged: int = 0
    repriced_lines: int = 0
    errors: list[str] = field(default_factory=list)


def _parse(text: str) -> tuple[dict[datetime, Decimal], list[str]]:
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        return {}, [f"the header must be exactly: {','.join(COLUMNS)}"]
    prices: dict[datetime, Decimal] = {}
    errors = []
    for line, row in enumerate(reader, start=2):
        if line > MAX_ROWS + 1:
            return {}, [f"at most {MAX_ROWS} rows per file"]
        try:
            hour = datetime.fromisoformat(row["hour_start"] or "")
            rate = Decimal(row["rate_eur_per_kwh"] or "")
        except (ValueError, InvalidOperation):
            errors.append(f"line {line}: expected an ISO 8601 hour with offset and a decimal rate")
            continue
        if hour.tzinfo is None:
            errors.append(f"line {line}: hour_start needs a UTC offset, e.g. 2026-11-22T10:00:00+01:00")
        elif floor_hour(hour) != hour.astimezone(UTC):
            errors.append(f"line {line}: hour_start must be on the hour")
        elif not rate.is_finite() or rate < 0 or rate.as_tuple().exponent < -6 or rate >= 1000:
            errors.append(f"line {line}: rate must be between 0 and 999.999999 EUR/kWh, at most 6 decimals")
        elif hour.astimezone(UTC) in prices and prices[hour.astimezone(UTC)] != rate:
            errors.append(f"line {line}: a different rate for {hour.isoformat()} appears earlier in the file")
        else:
            prices[hour.astimezone(UTC)] = rate
    if not prices and not errors:
        errors.append("the file has no rows")
    return prices, errors


def import_prices(version: TariffVersion, text: str) -> ImportResult:
    """Add hourly prices to a dynamic version. A price already stored is never changed."""
    result = ImportResult()
    if version.kind != TariffVersion.Kind.DYNAMIC:
        result.errors.append("prices can only be imported into a dynamic tariff version")
        return result
    prices, result.errors = _parse(text)
    if result.errors:
        return result
    with transaction.atomic():
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
    return result
