"""The electricity tax's minimum over a statement period, charged as a ledger line of its own (issue 18).

Ley 38/1992 art. 99.2 (docs/spain.md): the tax of a period is never less than 1 EUR per MWh consumed
(0.5 for industrial uses), and is not due for a period without consumption. The hours are taxed one
by one when they are prepaid, so the period's floor can only be met once the period is over: the
difference (``meters.taxes.minimum_true_ups``) becomes one ``HourlyUsage`` line of kind ``minimum``
for the period's last hour, written in the transaction that issues the statement
(payments/statements/issuing.py):

- its ``cost_eur`` is the tax difference, to the micro-euro (negative for a period without
  consumption: the tax its power term paid hour by hour is given back);
- its ``tax_rate`` is the factor of the taxes on that tax (VAT: the compound rules an energy line
  of that hour has), its ``tax_eur`` that factor on the cost, rounded like every line's;
- its ``kwh`` is 0: the period's energy is counted by its energy lines;
- its ``tariff_version`` is the version in force at that hour, so a statement finds its rules
  again as pricing found them (the rules of an energy line at that hour).

The statement then reads it from the ledger like any line (statement = ledger, to the cent), and the
next settlement collects it like a late hour (a negative one is netted with the hours it pays). A
late reading that changes the period's kWh after issue gives a new line (``seq`` 1, 2, ...) with the
change of the true-up, on the corrective note (payments/statements/corrections.py): the parts of
the period's lines count the true-ups already written as tax charged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal

from django.db.models import Max

from lib.money import round_eur, tax_of
from lib.periods import HOUR
from meters.models import HourlyUsage, Household
from meters.pricing import HouseholdSchedule, max_kilowatts
from meters.taxes import TaxPart, line_factor, minimum_true_ups, taxed_rule
from meters.usage import bump_usage_version

log = logging.getLogger(__name__)

KIND = HourlyUsage.Kind.MINIMUM
ZERO = Decimal("0")


def true_up_line(household: Household, start: datetime, end: datetime, parts: Iterable[TaxPart]) -> HourlyUsage | None:
    """The line the period [start, end) of ``household`` needs for the minimum, not saved; None: none.
    It is for the period's last hour (an account closing inside the period: its last hour before closing).

    ``parts``: the tax parts of every priced line of the period, true-up lines included (a line
    already written counts as charged, so a second call gives only what changed since). Costs no
    query when no tax of the parts has a minimum.
    """
    true_ups = minimum_true_ups(parts)
    if not true_ups:
        return None
    if household.closed_at is not None and start < household.closed_at < end:
        end = household.closed_at  # the closing month's last billed hour: nothing is billed after it
    last = end - HOUR
    schedule = HouseholdSchedule(household, last, end)
    rules = schedule.tax_rules(HourlyUsage.Kind.ENERGY, last)
    rule = taxed_rule(rules)
    due = next((true_up for true_up in true_ups if rule is not None and true_up.rule.tax == rule.tax), None)
    if due is None:
        log.warning(
            "tax_minimum_not_charged household=%s period_end=%s reason=no_rule_at_last_hour taxes=%s",
            household.pk,
            end.isoformat(),
            ",".join(sorted(true_up.rule.tax for true_up in true_ups)),
        )
        return None
    cost = round_eur(due.amount)
    if not cost:
        return None
    factor = line_factor(rules)
    version, _ = schedule.energy_rate(last)
    return HourlyUsage(
        household=household,
        meter=None,
        kind=KIND,
        hour_start=last,
        seq=next_seq(household.pk, last),
        kwh=ZERO,
        tariff_version=version,
        cost_eur=cost,
        tax_rate=factor,
        tax_eur=tax_of(cost, factor),
    )


def contracted_kw(household: Household, hour: datetime) -> Decimal | None:
    """The household's contracted power at ``hour`` (kW, the highest period) as tax conditions compare it."""
    return max_kilowatts(HouseholdSchedule(household, hour, hour + HOUR).contracted_power(hour))


def next_seq(household_id: int, hour: datetime) -> int:
    latest = HourlyUsage.objects.filter(household_id=household_id, kind=KIND, hour_start=hour).aggregate(s=Max("seq"))
    return 0 if latest["s"] is None else latest["s"] + 1


def write(lines: list[HourlyUsage]) -> None:
    """Insert true-up lines, in the caller's (issuing) transaction. Not ``ignore_conflicts``: a second line
    for one household, hour and ``seq`` means a second issuer got there, and must roll the issue back."""
    if not lines:
        return
    bump_usage_version(line.household_id for line in lines)
    HourlyUsage.objects.bulk_create(lines)
