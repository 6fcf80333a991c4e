"""The electricity tax's minimum on a statement: the true-up line (meters/minimum_tax.py) a period needs,
and the usage group it adds to the period's ledger, so the statement reads it like any line.

The line is computed from the ledger read before the issuing transaction and inserted inside it
(``meters.minimum_tax.write``), with the statement or corrective note that shows it.
"""

from __future__ import annotations

from datetime import datetime

from meters import minimum_tax
from meters.models import HourlyUsage, Household, TariffVersion
from payments.statements import lines as ledger


def with_true_up(
    household: Household,
    groups: list[ledger.UsageGroup],
    versions: dict[int, TariffVersion],
    start: datetime,
    end: datetime,
) -> tuple[list[ledger.UsageGroup], HourlyUsage | None]:
    """``groups`` (the household's priced ledger of [start, end)) plus the true-up the period needs now,
    and that true-up's line (None: none needed). ``versions`` gains the line's tariff version."""
    parts, _ = ledger.tax_parts(groups, versions)
    line = minimum_tax.true_up_line(household, start, end, parts.values())
    if line is None:
        return groups, None
    if line.tariff_version_id is not None and line.tariff_version_id not in versions:
        versions[line.tariff_version_id] = TariffVersion.objects.select_related("tariff").get(pk=line.tariff_version_id)
    group = ledger.UsageGroup(
        household_id=household.pk,
        kind=minimum_tax.KIND,
        tariff_version_id=line.tariff_version_id,
        rate=None,
        tax_rate=line.tax_rate,
        settled=False,
        kwh=ledger.ZERO,
        cost_eur=line.cost_eur,
        tax_eur=line.tax_eur,
        some_hour=line.hour_start,
        region=household.region,
        timezone=household.timezone,
        max_kw=minimum_tax.contracted_kw(household, line.hour_start),
    )
    return [*groups, group], line
