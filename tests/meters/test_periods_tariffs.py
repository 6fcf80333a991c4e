"""Tariff versions priced by periods on a calendar (2.0TD): prices per period, the admin's template and
its refusals, and the same prices on the fast ingest path as on the Python path (PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import connection

from lib.periods import HOUR, floor_hour
from meters.contracts import first_hour_of
from meters.models import HourlyUsage, Tariff, TariffVersion
from meters.pricing import TariffSchedule
from tests.meters.test_fastpath import fast_answers, make_twins, state  # noqa: F401 (fixtures)

MADRID = "Europe/Madrid"
P1, P2, P3 = Decimal("0.254321"), Decimal("0.176543"), Decimal("0.101234")
PRICES = {"P1": str(P1), "P2": str(P2), "P3": str(P3)}
POWER = {"P1": "0.073777", "P2": "0.001911"}


def two_td(name: str = "2.0TD", **fields) -> Tariff:
    tariff = Tariff.objects.create(name=name)
    version = TariffVersion(
        tariff=tariff,
        valid_from=datetime(2020, 1, 1, tzinfo=UTC),
        kind=TariffVersion.Kind.PERIODS,
        calendar=fields.pop("calendar", "2.0TD"),
        period_rates=fields.pop("period_rates", PRICES),
        power_rates=fields.pop("power_rates", POWER),
        **fields,
    )
    version.full_clean()
    version.save()
    return tariff


def rate_at(tariff: Tariff, hour: datetime, tz_name: str = MADRID) -> Decimal | None:
    return TariffSchedule(tariff, tz_name, hour, hour + HOUR).energy_rate(hour)[1]


def rates_of_day(tariff: Tariff, day: date, tz_name: str = MADRID) -> list[Decimal]:
    start, end = first_hour_of(day, tz_name), first_hour_of(day + timedelta(days=1), tz_name)
    return [rate_at(tariff, start + n * HOUR, tz_name) for n in range((end - start) // HOUR)]


@pytest.mark.django_db
def test_each_utc_hour_takes_the_price_of_its_local_period():
    tariff = two_td()
    # Wednesday 18 November 2026 (CET, UTC+1): local 10:00 is 09:00 UTC.
    assert rate_at(tariff, datetime(2026, 11, 18, 6, tzinfo=UTC)) == P3  # local 07:00
    assert rate_at(tariff, datetime(2026, 11, 18, 7, tzinfo=UTC)) == P2  # local 08:00
    assert rate_at(tariff, datetime(2026, 11, 18, 9, tzinfo=UTC)) == P1  # local 10:00
    assert rate_at(tariff, datetime(2026, 11, 18, 13, tzinfo=UTC)) == P2  # local 14:00
    assert rate_at(tariff, datetime(2026, 11, 18, 21, tzinfo=UTC)) == P2  # local 22:00
    # In summer (CEST, UTC+2) local 10:00 is 08:00 UTC.
    assert rate_at(tariff, datetime(2026, 7, 15, 8, tzinfo=UTC)) == P1
    assert rate_at(tariff, datetime(2026, 7, 15, 7, tzinfo=UTC)) == P2


@pytest.mark.django_db
def test_holidays_weekends_and_dst_days_are_priced_p3_in_every_hour():
    tariff = two_td()
    assert rates_of_day(tariff, date(2026, 12, 8)) == [P3] * 24  # Immaculate Conception, a Tuesday
    assert rates_of_day(tariff, date(2027, 1, 6)) == [P3] * 24  # Epiphany, a Wednesday
    assert rates_of_day(tariff, date(2026, 3, 29)) == [P3] * 23  # the 23-hour Sunday
    assert rates_of_day(tariff, date(2026, 10, 25)) == [P3] * 25  # the 25-hour Sunday
    # Good Friday is a working day for 2.0TD: its 10:00-14:00 are P1.
    assert rates_of_day(tariff, date(2026, 4, 3))[10:14] == [P1] * 4


@pytest.mark.django_db
def test_ceuta_and_melilla_price_local_11_to_15_as_p1():
    tariff = two_td(calendar="2.0TD-CM")
    day = rates_of_day(tariff, date(2026, 11, 18), "Africa/Ceuta")
    assert day[10] == P2 and day[11:15] == [P1] * 4 and day[15] == P2 and day[19:23] == [P1] * 4 and day[23] == P2


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        pytest.param({"period_rates": {"P1": "0.2", "P3": "0.1"}}, "period_rates", "No price for P2", id="P2 missing"),
        pytest.param({"period_rates": {}}, "period_rates", "No price for P1, P2, P3", id="no prices"),
        pytest.param({"power_rates": {"P1": "0.07"}}, "power_rates", "No price for P2", id="power P2 missing"),
        pytest.param({"calendar": ""}, "calendar", "needs a calendar", id="no calendar"),
        pytest.param({"calendar": "3.0TD"}, "calendar", "is not a valid choice", id="an unknown calendar"),
        pytest.param({"period_rates": ["0.2"]}, "period_rates", "Give a price", id="not a mapping"),
        pytest.param(
            {"standing_charge_per_day": Decimal("0.5")}, "standing_charge_per_day", "replaces", id="both charges"
        ),
    ],
)
def test_a_version_missing_a_price_is_refused_and_not_saved(fields, field, message):
    with pytest.raises(ValidationError) as refused:
        two_td(**fields)
    assert message in " ".join(refused.value.message_dict[field])


@pytest.mark.django_db
def test_the_admin_template_fills_the_2_0td_form_and_an_empty_price_is_refused_with_nothing_saved(staff_client):
    tariff = Tariff.objects.create(name="Retail 2.0TD")
    action = staff_client.post(
        "/admin/meters/tariff/", {"action": "add_2_0td_version", "_selected_action": [tariff.pk]}
    )
    assert action.status_code == 302
    form = staff_client.get(action.url)
    assert form.status_code == 200
    html = form.content.decode()
    assert 'value="periods" selected' in html and 'value="2.0TD" selected' in html
    assert "&quot;P3&quot;: &quot;&quot;" in html  # an empty price per period, for staff to fill

    post = {
        "tariff": tariff.pk,
        "valid_from_0": "2026-01-01",
        "valid_from_1": "00:00:00",
        "kind": "periods",
        "calendar": "2.0TD",
        "flat_rate": "",
        "standing_charge_per_day": "0",
        "bands": "[]",
        "period_rates": '{"P1": "0.25", "P2": "", "P3": "0.10"}',
        "power_rates": '{"P1": "0.073777", "P2": "0.001911"}',
    }
    refused = staff_client.post("/admin/meters/tariffversion/add/", post)
    assert refused.status_code == 200
    assert "No price for P2" in refused.content.decode()
    assert not TariffVersion.objects.filter(tariff=tariff).exists()

    post["period_rates"] = '{"P1": "0.25", "P2": "0.18", "P3": "0.10"}'
    saved = staff_client.post("/admin/meters/tariffversion/add/", post)
    assert saved.status_code == 302
    version = TariffVersion.objects.get(tariff=tariff)
    assert version.energy_prices() == {"P1": Decimal("0.25"), "P2": Decimal("0.18"), "P3": Decimal("0.10")}
    assert version.power_prices() == {"P1": Decimal("0.073777"), "P2": Decimal("0.001911")}


NOW = datetime(2026, 12, 9, 12, 0, tzinfo=UTC)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the fast path is PostgreSQL's")
@time_machine.travel(NOW, tick=False)
def test_the_fast_path_prices_periods_as_the_python_path_does(make_twins, fast_answers):  # noqa: F811
    """Readings every five minutes across a holiday (8 December, a Tuesday) into a working day."""
    twins = make_twins(two_td())
    start = datetime(2026, 12, 7, 22, 7, tzinfo=UTC)  # 23:07 on Monday 7 December in Madrid
    twins.last = (start, Decimal("1000.000"))
    twins.post(start, Decimal("1000.000"))
    for _ in range(12 * 36):
        twins.step("next", 300, 137)
    assert state(twins.fast) == state(twins.python)
    assert sum(fast_answers[0::2]) > 12 * 30  # most requests went the fast way
    lines = HourlyUsage.objects.filter(meter=twins.fast, kind=HourlyUsage.Kind.ENERGY)
    by_hour = {line.hour_start: line.rate for line in lines}
    assert by_hour[datetime(2026, 12, 8, 9, tzinfo=UTC)] == P3  # the holiday's local 10:00
    assert by_hour[datetime(2026, 12, 9, 9, tzinfo=UTC)] == P1  # Wednesday's local 10:00
    assert by_hour[datetime(2026, 12, 9, 7, tzinfo=UTC)] == P2  # Wednesday's local 08:00
    for line in lines:
        assert line.cost_eur == (line.kwh * line.rate).quantize(Decimal("0.000001"))
    assert floor_hour(twins.last[0]) > datetime(2026, 12, 9, 9, tzinfo=UTC)
