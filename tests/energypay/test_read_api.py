"""The household read API (/api/v1/me/...): personal access tokens, DST-correct buckets, money with standing
charge and taxes, pagination, the per-token budget, and no token ever seeing another household's data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from energypay.accounts import tokens
from energypay.accounts.models import PersonalAccessToken
from meters.models import HourlyUsage, Meter
from payments.models import PriceQuote, Settlement
from tests.energypay.test_openapi import assert_conforms

NOW = datetime(2026, 11, 22, 14, 7, tzinfo=UTC)
USAGE, BALANCE, SETTLEMENTS = "/api/v1/me/usage", "/api/v1/me/balance", "/api/v1/me/settlements"
ENDPOINTS = [USAGE, BALANCE, SETTLEMENTS]

pytestmark = pytest.mark.time_machine(NOW, tick=False)


def token_for(household) -> str:
    return tokens.issue(household.user, "test", NOW)[1]


def get(client, url, token, **params):
    return client.get(url, params, headers={"Authorization": f"Bearer {token}"} if token else {})


def line(household, hour: datetime, kwh: str, cost: str | None, tax: str | None = None, *, standing=False, seq=0):
    meter = None
    if not standing:
        meter = household.meters.first() or Meter.objects.create(serial=f"API-{household.pk}", household=household)
    return HourlyUsage.objects.create(
        household=household,
        meter=meter,
        kind=HourlyUsage.Kind.STANDING if standing else HourlyUsage.Kind.ENERGY,
        hour_start=hour,
        seq=seq,
        kwh=Decimal(kwh if not standing else "0"),
        rate=None if cost is None or standing else Decimal(cost) / Decimal(kwh),
        cost_eur=None if cost is None else Decimal(cost),
        tax_eur=None if tax is None else Decimal(tax),
    )


def settlement(household, n: int) -> Settlement:
    quote = PriceQuote.objects.first() or PriceQuote.objects.create(
        source="fixed", bsv_eur=Decimal("30"), fetched_at=NOW
    )
    return Settlement.objects.create(
        household=household,
        period_start=NOW - timedelta(hours=n + 1),
        period_end=NOW - timedelta(hours=n),
        kwh=Decimal("1"),
        eur=Decimal("0.25"),
        quote=quote,
        satoshis=833_333,
        fee_satoshis=30,
        txid=f"{household.pk:032x}{n:032x}",
        raw_tx="00",
        state="confirmed",
    )


# --- tokens --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ENDPOINTS)
@pytest.mark.parametrize("sent", [None, "pat_nope", "mtr_a-meter-token", "Basic x"])
def test_no_or_a_wrong_token_is_a_json_401(client, household, url, sent):
    response = client.get(
        url, headers={"Authorization": sent if sent == "Basic x" else f"Bearer {sent}"} if sent else {}
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_token"
    assert response["WWW-Authenticate"] == 'Bearer realm="household"'
    assert_conforms(response, url, "get")


def test_a_revoked_token_and_a_disabled_login_stop_working_at_once(client, household):
    token = token_for(household)
    assert get(client, BALANCE, token).status_code == 200
    household.user.is_active = False
    household.user.save()
    assert get(client, BALANCE, token).status_code == 401
    household.user.is_active = True
    household.user.save()
    row = PersonalAccessToken.objects.get()
    assert tokens.revoke(household.user, row.pk, NOW)
    assert get(client, BALANCE, token).status_code == 401


def test_only_the_hash_of_a_token_is_stored(household):
    token = token_for(household)
    row = PersonalAccessToken.objects.get()
    assert token.startswith("pat_") and len(token) == 47
    assert token not in str(PersonalAccessToken.objects.values().get())
    assert row.token_hash == tokens.hash_token(token) and row.hint == token[-4:]


@pytest.mark.parametrize("url", ENDPOINTS)
def test_a_token_reads_its_own_household_only(client, household, other_household, url):
    day = datetime(2026, 11, 21, 12, tzinfo=UTC)
    line(household, day, "1.000000", "0.250000")
    line(other_household, day, "9.000000", "2.250000")
    mine, theirs = settlement(household, 1), settlement(other_household, 2)
    mine_body = get(client, url, token_for(household), **{"from": "2026-11-21"}).json()
    theirs_body = get(client, url, token_for(other_household), **{"from": "2026-11-21"}).json()
    if url == USAGE:
        assert mine_body["totals"]["kwh"] == "1.000000" and theirs_body["totals"]["kwh"] == "9.000000"
    elif url == SETTLEMENTS:
        assert [s["id"] for s in mine_body["settlements"]] == [mine.pk]
        assert [s["id"] for s in theirs_body["settlements"]] == [theirs.pk]
    else:
        assert mine_body["owed_eur"] == "0.250000" and theirs_body["owed_eur"] == "2.250000"
    assert mine_body != theirs_body


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_the_api_is_read_only(client, household, method):
    response = getattr(client, method)(BALANCE, headers={"Authorization": f"Bearer {token_for(household)}"})
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_last_use_is_written_at_most_once_a_minute(client, household):
    token = token_for(household)
    row = PersonalAccessToken.objects.get()
    assert row.last_used_at is None
    with CaptureQueriesContext(connection) as first:
        get(client, BALANCE, token)
    row.refresh_from_db()
    assert row.last_used_at == NOW
    with time_machine.travel(NOW + timedelta(seconds=30), tick=False), CaptureQueriesContext(connection) as second:
        get(client, BALANCE, token)
    row.refresh_from_db()
    assert row.last_used_at == NOW
    assert sum("UPDATE" in q["sql"] for q in first.captured_queries) == 1
    assert not any("UPDATE" in q["sql"] for q in second.captured_queries)
    with time_machine.travel(NOW + timedelta(seconds=61), tick=False):
        get(client, BALANCE, token)
    row.refresh_from_db()
    assert row.last_used_at == NOW + timedelta(seconds=61)


def test_over_the_budget_is_429_with_retry_after_per_token(client, household, settings):
    settings.API_TOKEN_RATE_LIMIT_PER_MINUTE = 2
    token, other = token_for(household), token_for(household)
    assert [get(client, BALANCE, token).status_code for _ in range(2)] == [200, 200]
    refused = get(client, BALANCE, token)
    assert refused.status_code == 429
    assert refused["Retry-After"] == str(60 - NOW.second)
    assert_conforms(refused, BALANCE, "get")
    assert get(client, BALANCE, other).status_code == 200  # the budget is the token's
    with time_machine.travel(NOW + timedelta(minutes=1), tick=False):
        assert get(client, BALANCE, token).status_code == 200


# --- usage ---------------------------------------------------------------------------------------------


def test_a_day_sums_energy_standing_charge_and_taxes_in_the_households_day(client, household):
    # Madrid: 2026-11-21 is 23:00 UTC on the 20th to 23:00 UTC on the 21st.
    line(household, datetime(2026, 11, 20, 22, tzinfo=UTC), "5.000000", "1.000000", "0.210000")  # the 20th locally
    line(household, datetime(2026, 11, 20, 23, tzinfo=UTC), "1.000000", "0.250000", "0.052500")
    line(household, datetime(2026, 11, 21, 12, tzinfo=UTC), "2.000000", "0.500000", "0.105000")
    line(household, datetime(2026, 11, 21, 12, tzinfo=UTC), "0", "0.010000", "0.002100", standing=True)
    line(household, datetime(2026, 11, 21, 13, tzinfo=UTC), "0.500000", None)  # price pending
    response = get(client, USAGE, token_for(household), **{"from": "2026-11-21", "to": "2026-11-21"})
    body = assert_conforms(response, USAGE, "get")
    assert body["timezone"] == "Europe/Madrid" and len(body["buckets"]) == 1
    day = body["buckets"][0]
    assert (day["start"], day["end"]) == ("2026-11-21T00:00:00+01:00", "2026-11-22T00:00:00+01:00")
    assert day["kwh"] == "3.500000" and day["pending_kwh"] == "0.500000"
    assert (day["energy_eur"], day["standing_eur"], day["tax_eur"]) == ("0.750000", "0.010000", "0.159600")
    assert day["eur"] == "0.919600"
    assert day["bands"] == [
        {"tariff": "unknown", "rate_eur_per_kwh": "0.250000", "kwh": "3.000000", "energy_eur": "0.750000"}
    ]
    assert body["totals"] == {k: v for k, v in day.items() if k not in ("start", "end", "bands")}


def test_the_electricity_tax_minimum_is_a_tax_in_the_api(client, household):
    # The month's minimum line (meters/minimum_tax.py): 0.009775 of electricity tax and 0.002053 of VAT on it.
    line(household, datetime(2026, 11, 21, 12, tzinfo=UTC), "2.000000", "0.500000", "0.105000")
    HourlyUsage.objects.create(
        household=household,
        kind=HourlyUsage.Kind.MINIMUM,
        hour_start=datetime(2026, 11, 21, 22, tzinfo=UTC),
        cost_eur=Decimal("0.009775"),
        tax_rate=Decimal("0.21"),
        tax_eur=Decimal("0.002053"),
    )
    response = get(client, USAGE, token_for(household), **{"from": "2026-11-21", "to": "2026-11-21"})
    (day,) = assert_conforms(response, USAGE, "get")["buckets"]
    # Taxes 0.105 + 0.009775 + 0.002053 = 0.116828; no standing charge; total 0.616828.
    assert (day["energy_eur"], day["standing_eur"], day["tax_eur"]) == ("0.500000", "0.000000", "0.116828")
    assert day["eur"] == "0.616828" and day["kwh"] == "2.000000"


def test_the_day_clocks_go_back_has_25_hour_buckets_and_one_day_bucket(client, household):
    # Madrid leaves summer time on 2026-10-25: 22:00 UTC on the 24th to 23:00 UTC on the 25th.
    for hour in range(25):
        line(household, datetime(2026, 10, 24, 22, tzinfo=UTC) + timedelta(hours=hour), "1.000000", "0.250000")
    token = token_for(household)
    hours = get(client, USAGE, token, **{"from": "2026-10-25", "resolution": "hour"}).json()["buckets"]
    assert len(hours) == 25 and all(bucket["kwh"] == "1.000000" for bucket in hours)
    assert hours[0]["start"] == "2026-10-25T00:00:00+02:00" and hours[-1]["end"] == "2026-10-26T00:00:00+01:00"
    assert [b["start"][11:] for b in hours[2:4]] == ["02:00:00+02:00", "02:00:00+01:00"]
    days = get(client, USAGE, token, **{"from": "2026-10-24", "to": "2026-10-26"}).json()["buckets"]
    assert [b["kwh"] for b in days] == ["0.000000", "25.000000", "0.000000"]
    months = get(client, USAGE, token, **{"from": "2026-10-01", "to": "2026-11-30", "resolution": "month"}).json()
    assert [b["kwh"] for b in months["buckets"]] == ["25.000000", "0.000000"]
    assert months["buckets"][1]["start"] == "2026-11-01T00:00:00+01:00"


def test_the_spring_day_has_23_hours(client, make_household):
    household = make_household(timezone="Europe/Madrid")
    hours = get(client, USAGE, token_for(household), **{"from": "2026-03-29", "resolution": "hour"}).json()["buckets"]
    assert len(hours) == 23


def test_time_of_use_hours_split_into_bands_and_dynamic_is_one_band(client, household):
    from meters.models import Tariff, TariffVersion

    version = TariffVersion.objects.filter(tariff=household.tariff).get()
    day = datetime(2026, 11, 21, 10, tzinfo=UTC)
    for n, (kwh, cost) in enumerate([("1.000000", "0.100000"), ("1.000000", "0.300000"), ("2.000000", "0.200000")]):
        HourlyUsage.objects.create(
            household=household,
            meter=household.meters.first() or Meter.objects.create(serial="B-1", household=household),
            hour_start=day + timedelta(hours=n),
            kwh=Decimal(kwh),
            rate=Decimal(cost) / Decimal(kwh),
            cost_eur=Decimal(cost),
            tariff_version=version,
        )
    TariffVersion.objects.filter(pk=version.pk).update(kind=TariffVersion.Kind.TIME_OF_USE)
    body = get(client, USAGE, token_for(household), **{"from": "2026-11-21", "to": "2026-11-21"}).json()
    assert body["buckets"][0]["bands"] == [
        {"tariff": "time_of_use", "rate_eur_per_kwh": "0.100000", "kwh": "3.000000", "energy_eur": "0.300000"},
        {"tariff": "time_of_use", "rate_eur_per_kwh": "0.300000", "kwh": "1.000000", "energy_eur": "0.300000"},
    ]
    TariffVersion.objects.filter(pk=version.pk).update(kind=TariffVersion.Kind.DYNAMIC)
    body = get(client, USAGE, token_for(household), **{"from": "2026-11-21", "to": "2026-11-21"}).json()
    assert body["buckets"][0]["bands"] == [
        {"tariff": "dynamic", "rate_eur_per_kwh": "0.150000", "kwh": "4.000000", "energy_eur": "0.600000"}
    ]
    assert Tariff  # imported for the kinds


@pytest.mark.parametrize(
    ("params", "word"),
    [
        ({"resolution": "week"}, "resolution"),
        ({"from": "2026-13-01"}, "from"),
        ({"from": "21/11/2026"}, "from"),
        ({"from": "2026-11-22", "to": "2026-11-01"}, "before"),
        ({"from": "2026-01-01", "to": "2026-02-15", "resolution": "hour"}, "31 days"),
        ({"from": "2020-01-01", "to": "2026-01-01"}, "366 days"),
    ],
)
def test_a_bad_parameter_is_a_400_saying_why(client, household, params, word):
    response = get(client, USAGE, token_for(household), **params)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_parameter" and word in response.json()["error"]["message"]
    assert_conforms(response, USAGE, "get")


# --- balance and settlements ----------------------------------------------------------------------------


def test_the_balance_is_the_dashboards(client, household):
    from energypay.dashboard import dashboard_cards

    line(household, datetime(2026, 11, 22, 11, tzinfo=UTC), "1.000000", "0.250000", "0.052500")
    body = assert_conforms(get(client, BALANCE, token_for(household)), BALANCE, "get")
    cards = dashboard_cards(household, NOW)
    assert body["owed_eur"] == str(cards.owed_eur.quantize(Decimal("0.000001"))) == "0.302500"
    assert body["arrears_eur"] == "0.302500" and body["arrears_since"] == "2026-11-22T11:00:00Z"
    assert body["balance_satoshis"] == 0 and body["today"]["eur"] == "0.302500"


def test_settlements_come_newest_first_in_pages_that_follow_next(client, household):
    made = [settlement(household, n) for n in range(5)]
    token = token_for(household)
    first = assert_conforms(get(client, SETTLEMENTS, token, limit=2), SETTLEMENTS, "get")
    assert [s["id"] for s in first["settlements"]] == [made[4].pk, made[3].pk]
    second = get(client, first["next"], token).json()
    third = get(client, second["next"], token).json()
    assert [s["id"] for s in second["settlements"] + third["settlements"]] == [made[2].pk, made[1].pk, made[0].pk]
    assert third["next"] is None
    assert first["settlements"][0] | {"id": 0} == {
        "id": 0,
        "state": "confirmed",
        "period_start": "2026-11-22T09:07:00Z",
        "period_end": "2026-11-22T10:07:00Z",
        "kwh": "1.000000",
        "eur": "0.250000",
        "satoshis": 833_333,
        "bsv_eur": "30.00000000",
        "txid": made[4].txid,
        "created_at": "2026-11-22T14:07:00Z",
        "confirmed_at": None,
    }


@pytest.mark.parametrize("params", [{"limit": "0"}, {"limit": "201"}, {"limit": "x"}, {"before": "-1"}])
def test_bad_paging_is_a_400(client, household, params):
    response = get(client, SETTLEMENTS, token_for(household), **params)
    assert response.status_code == 400
    assert_conforms(response, SETTLEMENTS, "get")
