"""Evaluating alarm rules: measure each household once per kind, compare, record what flipped."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import cached_property
from typing import Any

from django.db.models import Q
from django.utils import timezone

from alarms import figures as alarm_figures
from alarms import rules
from alarms.models import AlarmRule
from alarms.rules import ABOVE, PERIODIC_KINDS, SETTLEMENT_KINDS, SPECS, USAGE_KINDS, Kind
from meters.models import Household
from payments import figures

log = logging.getLogger(__name__)

# Which rules each trigger looks at. "periodic" also takes every firing rule, whatever its kind, so
# a rule whose data stopped changing (no more readings) still clears.
SCOPES: dict[str, Q] = {
    "usage": Q(kind__in=USAGE_KINDS),
    "settlement": Q(kind__in=SETTLEMENT_KINDS),
    "periodic": Q(kind__in=PERIODIC_KINDS) | Q(firing=True),
    "all": Q(),
}


@dataclass(frozen=True)
class Figure:
    value: Decimal | None = None  # None (and known): nothing to measure, e.g. no meters; never fires
    known: bool = True  # False: cannot be told now (no price quote yet): the rule keeps its state
    flag: bool | None = None  # kinds without a threshold say directly whether their condition holds
    facts: tuple[dict[str, Any], ...] = ()  # rules.refused_fact(...), rules.overdue_fact(...)


UNKNOWN = Figure(known=False)


class _Inputs:
    """The figures of one evaluation, each computed on first use for all its households at once."""

    def __init__(self, households: list[Household], now: datetime) -> None:
        self.households, self.now = households, now
        self.ids = [household.pk for household in households]

    @cached_property
    def peaks(self) -> dict:
        return alarm_figures.hour_peaks(self.ids, self.now)

    @cached_property
    def days(self) -> dict:
        return alarm_figures.day_costs(self.households, self.now)

    @cached_property
    def months(self) -> dict:
        return alarm_figures.month_costs(self.households, self.now)

    @cached_property
    def recent(self) -> dict:
        return figures.recent_daily_costs(self.ids, self.now)

    @cached_property
    def owed(self) -> dict:
        return figures.owed_costs(self.ids)

    @cached_property
    def balances(self) -> dict | None:
        return figures.balances_eur(self.ids, self.now)

    @cached_property
    def silent(self) -> dict:
        return alarm_figures.silent_hours(self.ids, self.now)

    @cached_property
    def trouble(self) -> dict:
        return alarm_figures.payment_trouble(self.ids, self.now)


def _hourly_cost(inputs: _Inputs, household: Household) -> Figure:
    return Figure(inputs.peaks.get(household.pk, (figures.ZERO, figures.ZERO))[0])


def _hourly_energy(inputs: _Inputs, household: Household) -> Figure:
    return Figure(inputs.peaks.get(household.pk, (figures.ZERO, figures.ZERO))[1])


def _daily_cost(inputs: _Inputs, household: Household) -> Figure:
    return Figure(inputs.days.get(household.pk, figures.ZERO))


def _month_projected(inputs: _Inputs, household: Household) -> Figure:
    _, month_end = alarm_figures.local_month_bounds(inputs.now, household.timezone)
    so_far = inputs.months.get(household.pk)
    return Figure(figures.projection(so_far, inputs.recent.get(household.pk), inputs.now, month_end))


def _balance_below(inputs: _Inputs, household: Household) -> Figure:
    if inputs.balances is None:
        return UNKNOWN
    return Figure(inputs.balances[household.pk])


def _balance_days(inputs: _Inputs, household: Household) -> Figure:
    if inputs.balances is None:
        return UNKNOWN
    # Whole days, the number the dashboard's card shows (payments/figures.py says why not the exact quotient).
    owed, daily = inputs.owed.get(household.pk), inputs.recent.get(household.pk)
    return Figure(figures.days_left(inputs.balances[household.pk], owed, daily))


def _meter_silent(inputs: _Inputs, household: Household) -> Figure:
    return Figure(inputs.silent.get(household.pk))


def _settlement_failed(inputs: _Inputs, household: Household) -> Figure:
    refused, overdue, cutoff = inputs.trouble.get(household.pk, (0, figures.ZERO, None))
    facts = []
    if refused:
        facts.append(rules.refused_fact(refused))
    if overdue:
        facts.append(rules.overdue_fact(overdue, cutoff))
    return Figure(overdue, flag=bool(refused or overdue), facts=tuple(facts))


MEASURES: dict[str, Callable[[_Inputs, Household], Figure]] = {
    Kind.HOURLY_COST: _hourly_cost,
    Kind.DAILY_COST: _daily_cost,
    Kind.HOURLY_ENERGY: _hourly_energy,
    Kind.MONTH_PROJECTED: _month_projected,
    Kind.BALANCE_BELOW: _balance_below,
    Kind.BALANCE_DAYS: _balance_days,
    Kind.METER_SILENT: _meter_silent,
    Kind.SETTLEMENT_FAILED: _settlement_failed,
}


def condition(kind: str, threshold: Decimal | None, figure: Figure) -> bool | None:
    """Whether the rule's condition holds; None when it cannot be told. Thresholds are inclusive (rules.py)."""
    if not figure.known:
        return None
    spec = SPECS[kind]
    if spec.direction is None:
        return bool(figure.flag)
    if figure.value is None or threshold is None:
        return False
    return figure.value >= threshold if spec.direction == ABOVE else figure.value <= threshold


def evaluate_households(
    household_ids: Iterable[int], scope: str = "all", now: datetime | None = None, rule_ids: Iterable[int] = ()
) -> Counter:
    """Evaluate the households' active rules in ``scope`` and record every state change.

    1. load the rules (one query, with their households); ``rule_ids`` narrows them further;
    2. measure what those rules need, set-based over all the households (a query or two per figure);
    3. a rule whose state must change goes through AlarmRule.record (conditional UPDATE and its event
       in one transaction: one event per transition, however often or concurrently this runs);
       the others get their latest value in one bulk UPDATE.
    Returns how many rules fired, cleared, stayed, or could not be told.
    """
    now = now or timezone.now()
    rules = AlarmRule.objects.filter(household_id__in=list(household_ids), paused=False).filter(SCOPES[scope])
    if rule_ids:
        rules = rules.filter(pk__in=list(rule_ids))
    rules = list(rules.select_related("household").order_by("pk"))
    tally: Counter = Counter()
    if not rules:
        return tally
    inputs = _Inputs(list({rule.household_id: rule.household for rule in rules}.values()), now)
    unchanged = []
    for rule in rules:
        figure = MEASURES[rule.kind](inputs, rule.household)
        holds = condition(rule.kind, rule.threshold, figure)
        if holds is None:
            tally["unknown"] += 1
        elif holds == rule.firing:
            rule.last_value, rule.last_evaluated_at = figure.value, now
            unchanged.append(rule)
            tally["unchanged"] += 1
        else:
            event = rule.record(holds, figure.value, now, figure.facts)
            # No event: another evaluation flipped it first (or it was paused meanwhile).
            tally[event.kind if event else "raced"] += 1
    if unchanged:
        # As in AlarmRule.record: a rule paused since it was loaded keeps the state pause() reset.
        AlarmRule.objects.filter(paused=False).bulk_update(unchanged, ["last_value", "last_evaluated_at"])
    return tally


def households_for_periodic() -> list[int]:
    """Households with an active rule of a time-based kind, or a firing rule (the partial indexes serve this)."""
    rules = AlarmRule.objects.filter(paused=False).filter(SCOPES["periodic"])
    return list(rules.order_by("household_id").values_list("household_id", flat=True).distinct())
