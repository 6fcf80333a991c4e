"""Contracted power and the power term, and meter rental: they accrue every day of the contract,
silent meters included, as ledger lines of their own kinds, with figures worked by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from meters.contracts import ContractError, first_hour_of, set_contracted_power, start_contract
from meters.models import ContractedPower, HourlyUsage, Meter, Region, TaxRule
from meters.standing import accrue_standing_charges
from tests.meters.taxkit import hourly_readings, mark
from tests.meters.test_periods_tariffs import two_td

MADRID = "Europe/Madrid"
NOVEMBER = first_hour_of(date(2026, 11, 1), MADRID)
DECEMBER = first_hour_of(date(2026, 12, 1), MADRID)
KW = {"P1": "4.6", "P2": "4.6"}


def lines(household, kind) -> list[HourlyUsage]:
    return list(HourlyUsage.objects.filter(household=household, kind=kind).order_by("hour_start", "meter"))


def total(household, kind, start=None, end=None) -> Decimal:
    found = HourlyUsage.objects.filter(household=household, kind=kind)
    if start:
        found = found.filter(hour_start__gte=start, hour_start__lt=end)
    # Summed here: SQLite sums decimals through floats.
    return sum(found.values_list("cost_eur", flat=True), Decimal(0))


@pytest.fixture
def contract(make_household):
    """A Madrid household on 2.0TD with 4.6 kW in P1 and P2 from 1 November 2026, no meter."""
    household = make_household(tariff=two_td())
    mark(NOVEMBER)
    start_contract(household.pk, NOVEMBER)
    set_contracted_power(household.pk, KW, NOVEMBER, now=NOVEMBER)
    return household


def test_thirty_silent_days_of_november_accrue_the_power_term_of_both_periods(contract):
    written = accrue_standing_charges(DECEMBER)

    power = lines(contract, HourlyUsage.Kind.POWER)
    assert written == len(power) == 30 * 24
    # One day: 4.6 kW x 0.073777 EUR/kW/day (P1) + 4.6 kW x 0.001911 EUR/kW/day (P2)
    #        = 0.3393742 + 0.0087906 = 0.3481648 EUR, to the micro-euro 0.348165.
    # Thirty days: 30 x 0.348165 = 10.44495 EUR (P1 alone, as the bill shows it: 4.6 x 30 x 0.073777 = 10.181226).
    assert total(contract, HourlyUsage.Kind.POWER) == Decimal("10.444950")
    # Each day's hourly shares add up to the day's power term exactly.
    first_day = total(contract, HourlyUsage.Kind.POWER, NOVEMBER, first_hour_of(date(2026, 11, 2), MADRID))
    assert first_day == Decimal("0.348165")
    # The power term replaces the standing charge: there is none.
    assert lines(contract, HourlyUsage.Kind.STANDING) == []
    assert all(line.meter_id is None and line.kwh == 0 for line in power)


def test_the_25_hour_day_accrues_one_days_power_term(make_household):
    household = make_household(tariff=two_td(power_rates={"P1": "0.073777", "P2": "0"}))
    day = first_hour_of(date(2026, 10, 25), MADRID)
    mark(day)
    start_contract(household.pk, day)
    set_contracted_power(household.pk, {"P1": "4.6", "P2": "4.6"}, day, now=day)
    accrue_standing_charges(first_hour_of(date(2026, 10, 26), MADRID))
    assert len(lines(household, HourlyUsage.Kind.POWER)) == 25
    assert total(household, HourlyUsage.Kind.POWER) == Decimal("0.339374")  # 4.6 x 0.073777 = 0.3393742


def test_a_contracted_power_change_prices_the_days_from_it(contract):
    # From 16 November, 5.75 kW in both periods: 5.75 x 0.073777 + 5.75 x 0.001911 = 0.435206 (0.43520600).
    set_contracted_power(
        contract.pk, {"P1": "5.75", "P2": "5.75"}, first_hour_of(date(2026, 11, 16), MADRID), now=NOVEMBER
    )
    accrue_standing_charges(DECEMBER)
    # 15 days x 0.348165 + 15 days x 0.435206 = 5.222475 + 6.528090 = 11.750565
    assert total(contract, HourlyUsage.Kind.POWER) == Decimal("11.750565")


def test_a_power_term_already_charged_is_never_re_priced(contract):
    accrue_standing_charges(NOVEMBER + timedelta(days=2))
    with pytest.raises(ContractError, match="cannot change before"):
        set_contracted_power(contract.pk, {"P1": "9.2", "P2": "9.2"}, NOVEMBER, now=NOVEMBER + timedelta(days=2))
    assert ContractedPower.objects.filter(household=contract).count() == 1


def test_contracted_power_recorded_after_a_past_contract_start_accrues_the_hours_before_the_job(make_household):
    household = make_household(tariff=two_td())
    mark(NOVEMBER + timedelta(days=3))
    start_contract(household.pk, NOVEMBER)
    assert lines(household, HourlyUsage.Kind.POWER) == []  # no power recorded yet: nothing to charge
    set_contracted_power(household.pk, KW, NOVEMBER, now=NOVEMBER + timedelta(days=3))
    assert len(lines(household, HourlyUsage.Kind.POWER)) == 3 * 24
    assert total(household, HourlyUsage.Kind.POWER) == 3 * Decimal("0.348165")


def test_meter_rental_accrues_per_active_meter_every_day_and_is_taxed_by_the_rules_that_name_it(contract, make_meter):
    # VAT only on rental (the electricity tax does not apply to it: issue 18 item 3 states the full rule).
    vat = TaxRule(
        tax="iva",
        name="IVA 21%",
        rate=Decimal("0.21"),
        kinds=["energy", "power", "rental"],
        compound=True,
        region=Region.PENINSULA,
        valid_from=date(2020, 1, 1),
    )
    vat.full_clean()
    vat.save()
    meter, _ = make_meter(contract)
    Meter.objects.filter(pk=meter.pk).update(rental_per_day=Decimal("0.026630"))  # 0.81 EUR a 30-day month
    switched_off, _ = make_meter(contract)
    Meter.objects.filter(pk=switched_off.pk).update(rental_per_day=Decimal("0.026630"), is_active=False)

    accrue_standing_charges(DECEMBER)

    rental = lines(contract, HourlyUsage.Kind.RENTAL)
    assert len(rental) == 30 * 24 and {line.meter_id for line in rental} == {meter.pk}
    assert total(contract, HourlyUsage.Kind.RENTAL) == Decimal("0.798900")  # 30 x 0.026630
    assert {line.tax_rate for line in rental} == {Decimal("0.21")}
    taxed = sum(HourlyUsage.objects.filter(household=contract, kind="rental").values_list("tax_eur", flat=True))
    # 24 hourly shares a day of 0.001109 or 0.001110, each taxed and rounded to the micro-euro:
    # within half a micro-euro per line of 21% of 0.7989 = 0.167769.
    assert abs(taxed - Decimal("0.167769")) <= Decimal("0.000360")


def test_running_the_job_twice_and_catching_up_writes_each_line_once(contract, make_meter):
    meter, _ = make_meter(contract)
    Meter.objects.filter(pk=meter.pk).update(rental_per_day=Decimal("0.03"))
    accrue_standing_charges(NOVEMBER + timedelta(days=1))
    mark(NOVEMBER)  # as if a second run started from the beginning again
    accrue_standing_charges(NOVEMBER + timedelta(days=2))
    assert len(lines(contract, HourlyUsage.Kind.POWER)) == 48
    assert len(lines(contract, HourlyUsage.Kind.RENTAL)) == 48


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({}, "Give the contracted kW"),
        ({"P7": "4.6"}, "not a power period"),
        ({"P1": "-1"}, "above 0"),
        ({"P1": "4.6001"}, "3 decimals"),
        ({"P1": "lots"}, "above 0"),
    ],
)
def test_bad_contracted_power_is_refused(contract, kw, message):
    with pytest.raises(ValidationError, match=message):
        ContractedPower(household=contract, valid_from=DECEMBER, kw=kw).full_clean()
    with pytest.raises(ContractError, match=message):
        set_contracted_power(contract.pk, kw, DECEMBER, now=NOVEMBER)


def test_staff_add_contracted_power_from_a_local_day_and_a_charged_day_is_refused(staff_client, contract):
    accrue_standing_charges(NOVEMBER + timedelta(days=2))
    url = "/admin/meters/contractedpower/add/"
    refused = staff_client.post(
        url, {"household": contract.pk, "kw": '{"P1": "5.75", "P2": "5.75"}', "starts_on": "2026-11-01"}
    )
    assert refused.status_code == 200 and "cannot change before" in refused.content.decode()
    missing = staff_client.post(url, {"household": contract.pk, "kw": '{"P1": "5.75"}', "starts_on": "2099-01-01"})
    assert missing.status_code == 200 and "give kW for each" in missing.content.decode()
    for bad in ('{"P1": "lots", "P2": "1"}', '["4.6"]', '{"P9": "4.6"}'):
        answer = staff_client.post(url, {"household": contract.pk, "kw": bad, "starts_on": "2099-01-01"})
        assert answer.status_code == 200 and "errorlist" in answer.content.decode(), bad
    assert ContractedPower.objects.filter(household=contract).count() == 1
    added = staff_client.post(
        url, {"household": contract.pk, "kw": '{"P1": "5.75", "P2": "5.75"}', "starts_on": "2099-01-01"}
    )
    assert added.status_code == 302
    latest = ContractedPower.objects.filter(household=contract).latest("valid_from")
    assert latest.valid_from == datetime(2098, 12, 31, 23, tzinfo=UTC) and latest.created_by is not None


def test_readings_for_hours_with_rental_lines_write_energy_lines_and_leave_the_rental_alone(contract, make_meter):
    meter, _ = make_meter(contract)
    Meter.objects.filter(pk=meter.pk).update(rental_per_day=Decimal("0.024"))  # 0.001 an hour on a 24-hour day
    accrue_standing_charges(NOVEMBER + timedelta(days=1))
    hourly_readings(meter, NOVEMBER, 24, kwh_per_hour="0.5")

    energy = lines(contract, HourlyUsage.Kind.ENERGY)
    rental = lines(contract, HourlyUsage.Kind.RENTAL)
    assert len(energy) == 24 and {line.kwh for line in energy} == {Decimal("0.5")}
    assert len(rental) == 24 and {(line.kwh, line.cost_eur) for line in rental} == {(0, Decimal("0.001000"))}
    # Sunday 1 November is a holiday and a Sunday: P3 all day.
    assert {line.rate for line in energy} == {Decimal("0.101234")}
