"""Taxes on the hourly ledger: every line carries its rules' combined factor and its tax, and the
breakdown a statement prints adds up exactly to it (docs/billing.md). Figures are worked by hand."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.utils import timezone

from lib.money import round_cent
from lib.periods import local_date, local_month_bounds
from meters.contracts import assign_tariff, first_hour_of, start_contract
from meters.ingest import ingest_readings
from meters.models import HourlyUsage, Region, TaxRule
from meters.pricing import HouseholdSchedule, combined_rate
from meters.schema import ReadingIn
from meters.taxes import TaxMismatch, breakdown, exact_tax, rounding_line
from tests.meters.taxkit import IEE, IEE_AND_VAT, VAT, flat, hourly_readings, mark, rule, spanish_taxes

MADRID = "Europe/Madrid"
ENERGY, STANDING = HourlyUsage.Kind.ENERGY, HourlyUsage.Kind.STANDING


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def home(make_meter, make_household):
    """A Madrid household on a flat 0.15 EUR/kWh tariff without standing charge, and its meter."""
    household = make_household(tariff=flat("Flat 0.15", "0.15"))
    meter, _ = make_meter(household)
    return household, meter


# --- Every line carries its taxes ----------------------------------------------------------------


def test_ten_kwh_at_fifteen_cents_pay_the_electricity_tax_and_vat_on_both(home):
    _, meter = home
    spanish_taxes()
    # 10 kWh at 0.15 = 1.50; IEE 5.11269632% of 1.50 = 0.0766904448; VAT 21% of 1.5766904448 =
    # 0.331104993408; together 0.4077954382080, stored to the micro-euro as 0.407795.
    hourly_readings(meter, utc(2026, 11, 20, 10), 1, kwh_per_hour="10")

    line = HourlyUsage.objects.get(meter=meter)
    assert (line.kwh, line.cost_eur) == (Decimal("10"), Decimal("1.500000"))
    assert line.tax_rate == IEE_AND_VAT == IEE + VAT * (1 + IEE)
    assert line.tax_eur == Decimal("0.407795")

    parts = breakdown([line])
    assert [(p.name, p.rate, p.base, p.amount) for p in parts] == [
        ("Impuesto especial sobre la electricidad", IEE, Decimal("1.5"), Decimal("0.0766904448")),
        ("IVA 21%", VAT, Decimal("1.5766904448"), Decimal("0.331104993408")),
    ]
    assert sum(p.amount for p in parts) == exact_tax([line]) == Decimal("0.407795438208")
    assert parts[0].kwh == Decimal("10")


def test_the_standing_charge_is_taxed_like_energy_when_its_rules_say_so(make_household, make_meter):
    household = make_household(tariff=flat("Flat with standing", "0.15", standing="0.48"))
    meter, _ = make_meter(household)
    spanish_taxes()
    hourly_readings(meter, utc(2026, 11, 20, 10), 1)

    standing = HourlyUsage.objects.get(household=household, kind=STANDING)
    # 0.48 a day is 0.02 an hour on a 24-hour day; taxes 0.02 x 0.271863625472 = 0.00543727250944.
    assert (standing.cost_eur, standing.tax_rate, standing.tax_eur) == (
        Decimal("0.020000"),
        IEE_AND_VAT,
        Decimal("0.005437"),
    )


def test_a_rule_taxes_only_the_kinds_of_line_it_names(home, make_household, make_meter):
    household = make_household(tariff=flat("Standing only", "0.10", standing="0.24"))
    meter, _ = make_meter(household)
    rule("iva", VAT, kinds=["standing"])
    hourly_readings(meter, utc(2026, 11, 20, 10), 1)

    energy = HourlyUsage.objects.get(meter=meter)
    standing = HourlyUsage.objects.get(household=household, kind=STANDING)
    assert (energy.tax_rate, energy.tax_eur) == (Decimal("0"), Decimal("0"))
    assert (standing.cost_eur, standing.tax_eur) == (Decimal("0.010000"), Decimal("0.002100"))


def test_canary_households_pay_igic_not_vat(make_household, make_meter):
    tariff = flat("Flat 0.20", "0.20")
    peninsula = make_household(tariff=tariff)
    canarias = make_household(tariff=tariff, timezone="Atlantic/Canary")
    canarias.region = Region.CANARIAS
    canarias.save()
    rule("iva", VAT, region=Region.PENINSULA)
    rule("igic", "0.03", region=Region.CANARIAS, name="IGIC 3%")
    for household in (peninsula, canarias):
        meter, _ = make_meter(household)
        hourly_readings(meter, utc(2026, 11, 20, 10), 1, kwh_per_hour="5")  # 5 kWh at 0.20 = 1.00

    assert HourlyUsage.objects.get(household=peninsula).tax_eur == Decimal("0.210000")
    assert HourlyUsage.objects.get(household=canarias).tax_eur == Decimal("0.030000")
    assert [p.name for p in breakdown(HourlyUsage.objects.filter(household=canarias))] == ["IGIC 3%"]


def test_a_rule_for_some_tariffs_leaves_the_others_alone(make_household, make_meter):
    social, market = flat("Social", "0.10"), flat("Market", "0.10")
    reduced = rule("iva", "0.05", name="IVA 5%")
    reduced.tariffs.set([social])
    on_social, on_market = make_household(tariff=social), make_household(tariff=market)
    for household in (on_social, on_market):
        meter, _ = make_meter(household)
        hourly_readings(meter, utc(2026, 11, 20, 10), 1, kwh_per_hour="10")  # 1.00 EUR

    assert HourlyUsage.objects.get(household=on_social).tax_eur == Decimal("0.050000")
    assert HourlyUsage.objects.get(household=on_market).tax_eur == Decimal("0")


def test_a_new_rule_is_priced_by_the_next_reading_without_a_restart(home):
    """Rules are cached per process under the tariff's revision; a rule change gives every tariff a new one."""
    _, meter = home
    hourly_readings(meter, utc(2026, 11, 20, 10), 1)
    assert HourlyUsage.objects.get(meter=meter).tax_rate == 0

    rule("iva", VAT, valid_from=date(2026, 11, 21))
    send(meter, (utc(2026, 11, 21, 10), "1001"), (utc(2026, 11, 21, 11), "1002"))

    assert HourlyUsage.objects.get(meter=meter, hour_start=utc(2026, 11, 21, 10)).tax_rate == VAT


def send(meter, *readings: tuple[datetime, str]) -> None:
    items = [(i, ReadingIn(timestamp=at, energy_kwh=kwh)) for i, (at, kwh) in enumerate(readings)]
    assert ingest_readings(meter.pk, items, timezone.now()).rejected == []


def test_an_adjustment_keeps_the_taxes_its_hour_was_settled_with(home):
    _, meter = home
    spanish_taxes()
    send(meter, (utc(2026, 11, 20, 10), "1000"), (utc(2026, 11, 20, 11, 30), "1015"))  # 10 kWh in hour 10
    HourlyUsage.objects.filter(meter=meter, hour_start=utc(2026, 11, 20, 10)).update(settled_at=timezone.now())
    # Whatever the rules say now (here changed in code: the admin refuses it), a late reading's
    # difference is taxed as its hour was.
    TaxRule.objects.filter(tax="iva").update(rate=Decimal("0.10"))
    TaxRule.objects.first().save()  # a new revision: pricing sees the change

    send(meter, (utc(2026, 11, 20, 11), "1011"))  # hour 10 used 11 kWh after all
    settled, adjustment = HourlyUsage.objects.filter(meter=meter, hour_start=utc(2026, 11, 20, 10)).order_by("seq")
    # 11 kWh cost 1.65 EUR, taxed 1.65 x 0.271863625472 = 0.4485749820288 -> 0.448575; 0.407795 was settled.
    assert adjustment.tax_rate == IEE_AND_VAT
    assert (adjustment.cost_eur, adjustment.tax_eur) == (Decimal("0.150000"), Decimal("0.040780"))
    assert settled.tax_eur + adjustment.tax_eur == Decimal("0.448575")


def test_a_line_taxed_otherwise_than_its_rules_say_is_refused_by_the_breakdown(home):
    household, meter = home
    hourly_readings(meter, utc(2026, 11, 20, 10), 1)
    spanish_taxes()  # in code, after the hour was priced: the admin refuses this (test_tax_rules_admin)

    with pytest.raises(TaxMismatch, match="was taxed at 0"):
        breakdown(HourlyUsage.objects.filter(household=household))


def test_lines_waiting_for_a_price_are_left_out_of_the_breakdown(home):
    household, meter = home
    spanish_taxes()
    hourly_readings(meter, utc(2026, 11, 20, 10), 2, kwh_per_hour="10")
    HourlyUsage.objects.filter(hour_start=utc(2026, 11, 20, 11)).update(cost_eur=None, tax_eur=None, rate=None)

    parts = breakdown(HourlyUsage.objects.filter(household=household))
    assert [p.base for p in parts] == [Decimal("1.5"), Decimal("1.5766904448")]


# --- Dates are the household's local days, DST included ---------------------------------------------


def test_a_rate_change_takes_effect_at_local_midnight_on_a_23_hour_day(make_household, make_meter):
    """29 March 2026: Madrid's clocks go from 02:00 to 03:00; the day has 23 hours, all at the new rate."""
    household = make_household(tariff=flat("Flat 0.10", "0.10"))
    rule("iva", VAT, valid_to=date(2026, 3, 28), name="IVA 21%")
    rule("iva", "0.10", valid_from=date(2026, 3, 29), name="IVA 10%")
    day_start = first_hour_of(date(2026, 3, 29), MADRID)
    assert day_start == utc(2026, 3, 28, 23)
    schedule = HouseholdSchedule(household, day_start - timedelta(hours=1), day_start + timedelta(hours=24))

    rates = [schedule.tax_rate(ENERGY, day_start + timedelta(hours=h)) for h in range(-1, 24)]
    assert rates[0] == VAT  # 23:00-24:00 local on the 28th
    assert rates[1:24] == [Decimal("0.10")] * 23  # the 23 hours of the 29th
    assert rates[24] == Decimal("0.10") and local_date(day_start + timedelta(hours=23), MADRID) == date(2026, 3, 30)


# --- A month: a tariff switch and a VAT change inside it, and the 25-hour day -----------------------

OCTOBER = date(2026, 10, 1)


@pytest.fixture
def october(make_household, make_meter):
    """October 2026 in Madrid, 1 kWh every hour (745 hours: the 25th has 25).

    Tariff A (0.15 EUR/kWh, 0.30 EUR/day) until the 14th, tariff B (0.20 EUR/kWh, 0.40 EUR/day) from
    the 15th; the electricity tax all month; VAT 21% until the 19th, 10% from the 20th.
    """
    tariff_a, tariff_b = flat("A", "0.15", standing="0.30"), flat("B", "0.20", standing="0.40")
    rule("iee", IEE, name="Impuesto especial sobre la electricidad")
    rule("iva", VAT, compound=True, valid_to=date(2026, 10, 19), name="IVA 21%")
    rule("iva", "0.10", compound=True, valid_from=date(2026, 10, 20), name="IVA 10%")
    household = make_household(tariff=tariff_a)
    meter, _ = make_meter(household)
    month_start, month_end = local_month_bounds(OCTOBER, MADRID)
    mark(month_start)  # the hourly job stands here: the contract's past is not backfilled
    start_contract(household.pk, month_start)
    assign_tariff(household.pk, tariff_b, first_hour_of(date(2026, 10, 15), MADRID), now=month_start)
    hours = (month_end - month_start) // timedelta(hours=1)
    assert hours == 745
    with time_machine.travel(month_end, tick=False):
        hourly_readings(meter, month_start, hours)
    household.refresh_from_db()
    lines = list(HourlyUsage.objects.filter(household=household, hour_start__lt=month_end).order_by("hour_start"))
    return household, lines


def test_each_hour_of_the_month_is_priced_by_the_tariff_assigned_then(october):
    _, lines = october
    energy = defaultdict(Decimal)
    standing = defaultdict(Decimal)
    for line in lines:
        day = local_date(line.hour_start, MADRID)
        (energy if line.kind == ENERGY else standing)[day] += line.cost_eur
    # A: 14 days x 24 h x 0.15 = 50.40 and 14 x 0.30 = 4.20; B: 409 h x 0.20 = 81.80 and 17 x 0.40 = 6.80.
    assert sum(v for d, v in energy.items() if d.day < 15) == Decimal("50.40")
    assert sum(v for d, v in energy.items() if d.day >= 15) == Decimal("81.80")
    assert {standing[day] for day in standing if day.day < 15} == {Decimal("0.30")}
    assert {standing[day] for day in standing if day.day >= 15} == {Decimal("0.40")}
    # The 25-hour day: 25 standing shares that add up to exactly one day's charge.
    assert sum(1 for line in lines if line.kind == STANDING and local_date(line.hour_start, MADRID).day == 25) == 25


def test_the_months_taxes_split_by_rule_and_add_up_to_the_ledger(october):
    _, lines = october
    parts = breakdown(lines)

    # IEE on all 143.20 of costs; VAT 21% on the 80.60 of days 1-19 plus their IEE (4.1208332339 2);
    # VAT 10% on the 62.60 of days 20-31 plus their IEE (3.20054789632).
    assert [(p.name, p.base, p.amount) for p in parts] == [
        ("Impuesto especial sobre la electricidad", Decimal("143.20"), Decimal("7.321381130240")),
        ("IVA 21%", Decimal("84.720833233920"), Decimal("17.79137497912320")),
        ("IVA 10%", Decimal("65.800547896320"), Decimal("6.58005478963200")),
    ]
    exact = sum(p.amount for p in parts)
    assert exact == exact_tax(lines) == Decimal("31.69281089899520")
    # The ledger rounds each hour's tax to the micro-euro: at most half a micro-euro per line away.
    stored = sum(line.tax_eur for line in lines)
    assert abs(stored - exact) <= Decimal("0.0000005") * len(lines)


def test_the_statement_rounds_each_line_to_the_cent_and_meets_the_ledger_to_the_cent(october):
    """docs/billing.md: each statement line is rounded once; a rounding line makes up any difference."""
    _, lines = october
    costs = defaultdict(Decimal)
    for line in lines:
        costs[line.kind, line.tariff_version.tariff.name] += line.cost_eur
    assert costs == {
        (ENERGY, "A"): Decimal("50.40"),
        (STANDING, "A"): Decimal("4.20"),
        (ENERGY, "B"): Decimal("81.80"),
        (STANDING, "B"): Decimal("6.80"),
    }
    taxes = [round_cent(p.amount) for p in breakdown(lines)]
    assert taxes == [Decimal("7.32"), Decimal("17.79"), Decimal("6.58")]
    statement = [round_cent(amount) for amount in costs.values()] + taxes

    ledger_total = sum(line.cost_eur + line.tax_eur for line in lines)
    assert round_cent(ledger_total) == Decimal("174.89")
    assert rounding_line(statement, lines) == Decimal("0.00")
    assert sum(statement) + rounding_line(statement, lines) == round_cent(ledger_total)


def test_a_rounding_line_makes_up_what_rounding_each_statement_line_loses(home):
    """Three taxes of 0.004 each: every statement line shows 0.00, the ledger owes 0.012, so 0.01."""
    household, meter = home
    for tax in ("a", "b", "c"):
        rule(tax, "0.004", kinds=["energy"])
    line = HourlyUsage(
        household=household,
        meter=meter,
        hour_start=utc(2026, 11, 20, 10),
        kwh=Decimal("10"),
        cost_eur=Decimal("1.000000"),
        tax_rate=Decimal("0.012"),
        tax_eur=Decimal("0.012000"),
    )
    parts = breakdown([line])
    assert [round_cent(p.amount) for p in parts] == [Decimal("0.00")] * 3

    statement = [round_cent(line.cost_eur)] + [round_cent(p.amount) for p in parts]
    assert rounding_line(statement, [line]) == Decimal("0.01")


def test_the_combined_factor_is_exact_whatever_the_rates(home):
    """Rates have 10 decimals, so a compound factor has up to 20: stored and multiplied without rounding."""
    igic, iee = rule("igic", "0.095", compound=True, region=Region.CANARIAS), rule("x", IEE, region=Region.CANARIAS)
    factor = combined_rate([iee, igic])
    assert factor == Decimal("0.0511269632") + Decimal("0.095") * Decimal("1.0511269632") == Decimal("0.1509840247040")
    field = HourlyUsage._meta.get_field("tax_rate")
    assert -factor.as_tuple().exponent <= field.decimal_places
