"""Time-of-use bands and EUR/kWh rates as staff type them: parsed and checked, no database.

Its own module so that ``TariffVersion.clean`` (meters.models) and pricing (meters.pricing, which
reads the models) both use it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from lib.money import EUR_PLACES


@dataclass(frozen=True)
class Band:
    days: frozenset[int]
    start: int
    end: int
    rate: Decimal


WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
# What the rate columns (max_digits=9, decimal_places=6) can hold: a rate outside them would be
# rounded by the database (the stored rate then disagrees with the cost) or make the insert fail.
MAX_RATE = Decimal("999.999999")


def parse_rate(value: object, unit: str = "EUR/kWh") -> Decimal:
    """A rate (EUR/kWh, or another ``unit``: EUR/kW/day) as the database stores it, or ValueError."""
    if isinstance(value, bool) or not isinstance(value, str | int | float | Decimal):
        raise ValueError(f"must be a decimal number of {unit}")
    try:
        # str() of a JSON number gives back the digits staff typed (0.3 stays 0.3, not its binary value).
        rate = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"must be a decimal number of {unit}") from None
    if not rate.is_finite() or rate < 0 or rate > MAX_RATE:
        raise ValueError(f"must be between 0 and {MAX_RATE} {unit}")
    if rate != rate.quantize(EUR_PLACES):
        raise ValueError("must have at most 6 decimal places")
    return rate


def parse_bands(raw: object) -> list[Band]:
    """Validate time-of-use bands: local hours, Monday=0, every (weekday, hour) covered once."""
    if not isinstance(raw, list) or not raw:
        raise ValueError("Time-of-use bands must be a non-empty list.")
    bands = []
    covered: dict[tuple[int, int], int] = {}
    for number, item in enumerate(raw, start=1):
        if not isinstance(item, dict) or set(item) != {"days", "start", "end", "rate"}:
            raise ValueError(f"Band {number} must have exactly days, start, end and rate.")
        days, start, end = item["days"], item["start"], item["end"]
        if not isinstance(days, list) or not days or not all(type(d) is int and 0 <= d <= 6 for d in days):
            raise ValueError(f"Band {number}: days must be weekday numbers 0 (Monday) to 6 (Sunday).")
        if len(set(days)) != len(days):
            raise ValueError(f"Band {number}: days lists a weekday twice.")
        if not (type(start) is int and type(end) is int and 0 <= start < end <= 24):
            raise ValueError(f"Band {number}: start and end must be whole hours with 0 <= start < end <= 24.")
        try:
            rate = parse_rate(item["rate"])
        except ValueError as error:
            raise ValueError(f"Band {number}: rate {error}.") from None
        for day in days:
            for hour in range(start, end):
                if (day, hour) in covered:
                    raise ValueError(
                        f"Bands {covered[day, hour]} and {number} both cover {WEEKDAYS[day]} ({day}) "
                        f"{hour:02d}:00-{hour + 1:02d}:00."
                    )
                covered[day, hour] = number
        bands.append(Band(frozenset(days), start, end, rate))
    if len(covered) != 7 * 24:
        day, hour = next((d, h) for d in range(7) for h in range(24) if (d, h) not in covered)
        raise ValueError(f"No band covers {WEEKDAYS[day]} ({day}) {hour:02d}:00-{hour + 1:02d}:00.")
    return bands
