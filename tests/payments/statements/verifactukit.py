"""What the VERI*FACTU tests share: households with a few priced hours in October (bulk rows, no ingest), issued
at a frozen clock, and a corrective note made by adding an hour to a closed month."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import time_machine

from meters.models import HourlyUsage, Household, Meter
from payments.statements import corrections
from payments.statements.issuing import issue_households
from payments.statements.models import Statement
from tests.payments.statements import kit
from tests.payments.statements.kit import OCTOBER, OCTOBER_START

ISSUED_AT = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # 10:00 in Madrid (CET)
CORRECTED_AT = datetime(2026, 11, 3, 8, 30, tzinfo=UTC)


def town(make_household, make_meter, count: int) -> list[Household]:
    """``count`` households contracted long ago, each with three priced hours in October (EUR 0.10 an hour)."""
    tariff = kit.tou_tariff()
    version = tariff.versions.get()
    households = [make_household(tariff=tariff) for _ in range(count)]
    kit.contracted_long_ago(*households)
    for household in households:
        meter, _ = make_meter(household)
        for hour in range(3):
            add_hour(household, meter, OCTOBER_START + timedelta(hours=hour * 5), version)
    return households


def add_hour(household: Household, meter: Meter, hour_start: datetime, version=None, seq: int = 0) -> None:
    HourlyUsage.objects.create(
        household=household,
        meter=meter,
        hour_start=hour_start,
        seq=seq,
        kwh=Decimal("0.5"),
        tariff_version=version or household.tariff.versions.get(),
        rate=Decimal("0.2"),
        cost_eur=Decimal("0.1"),
        tax_eur=Decimal("0"),
    )


def issue(households: list[Household], at: datetime = ISSUED_AT) -> list[Statement]:
    with time_machine.travel(at, tick=False):
        issue_households([h.pk for h in households], OCTOBER, now=at)
    return list(Statement.objects.filter(household__in=households, revision=0).order_by("number"))


def correct(household: Household, at: datetime = CORRECTED_AT) -> Statement:
    """A late hour for October (EUR 0.10 more): the corrections job issues a debit note."""
    meter = household.meters.get()
    add_hour(household, meter, OCTOBER_START + timedelta(hours=40))
    with time_machine.travel(at, tick=False):
        note = corrections.correct(household.pk, OCTOBER, now=at)
    assert note is not None
    return note


def identify(monkeypatch, households: list[Household], tax_id: str, cups: str = "") -> None:
    """Give ``households`` the account holder's tax ID (and a supply point), stored where the model keeps them.

    Household.tax_id and .cups come with the spain branch; until they exist, the class answers for every
    household (so call this just before issuing the households it is meant for).
    """
    fields = {field.name for field in Household._meta.get_fields()}
    values = {"tax_id": tax_id, **({"cups": cups} if cups else {})}
    if set(values) <= fields:
        Household.objects.filter(pk__in=[h.pk for h in households]).update(**values)
        return
    for name, value in values.items():
        monkeypatch.setattr(Household, name, value, raising=False)
