"""Every form and query parameter that takes a number or a date, fuzzed: bad input is a form error, never a 500.

The values are what breaks number and date parsing in practice: exponents (1e999999, 0E-1000000, 9E+99),
NaN and infinities, signs, thousands of digits, other scripts' digits, dates out of datetime's range or
in other spellings. Each test posts them the way a browser would (the admin's forms are read from
the page, then one field is replaced; alarm rules are read-only in the admin) and asserts the answer
is not a server error; where the answer is a success, it asserts that what was stored is what the
form allowed.

On PostgreSQL these find what SQLite forgives: a numeric literal out of PostgreSQL's range is a
DataError there (e.g. an alarm threshold 0E-1000000 used in a query).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from html.parser import HTMLParser

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from alarms.models import AlarmRule
from alarms.rules import SPECS
from meters.models import Meter, TariffVersion
from payments.models import Wallet

FUZZ = hypothesis_settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)

# --- Values ------------------------------------------------------------------------------------------

awkward_numbers = st.sampled_from(
    [
        "1e999999",
        "-1e999999",
        "9E+99",
        "1E+6",
        "0E-1000000",
        "0e+999999",
        "1e-999999",
        "-0",
        "-0.00",
        "NaN",
        "-sNaN",
        "Infinity",
        "-inf",
        "1_000",
        "1,5",
        "0x10",
        "\uff11\uff10",  # fullwidth digits: Decimal reads them
        "\u0661\u0662",  # Arabic-Indic digits
        "12345678901234567890",
        "0.0000000000001",
        "5.000000000000000000000000000000000000000000000000",
        "1" * 5000,
        "",
        " ",
        "1 000",
        "\x00",
    ]
)
numbers = st.one_of(
    awkward_numbers,
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.builds(lambda mantissa, exponent: f"{mantissa}e{exponent}", st.integers(-99, 99), st.integers(-(10**7), 10**7)),
    st.floats().map(repr),
    st.text(max_size=30),
)
awkward_dates = st.sampled_from(
    [
        "0001-01-01",
        "9999-12-31",
        "1969-12-31",
        "2201-01-01",
        "2026-02-30",
        "2026-13-01",
        "20261122",
        "2026-W47-1",
        "22/11/2026",
        "2026-11-22T25:00",
        "+002026-11-22",
        "\uff12\uff10\uff12\uff16-11-22",
        "2026-11-22\x00",
        "x" * 5000,
        "",
    ]
)
dates = st.one_of(awkward_dates, st.dates().map(str), st.text(max_size=20))
times = st.one_of(
    st.sampled_from(["00:00", "23:59:59", "24:00", "25:61", "12:00:00.9999999", "", "noon"]), st.text(max_size=10)
)
datetimes = st.one_of(
    st.sampled_from(
        [
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:00:00-01:00",
            "2026-11-22T10:00:00",
            "2026-11-22T10:00:00+24:00",
            "2026-11-22T10:30:00Z",
            "2026-11-22T10:00:00Z",
            "nan",
        ]
    ),
    st.datetimes(timezones=st.just(UTC)).map(lambda moment: moment.isoformat()),
    st.text(max_size=30),
)


def assert_no_server_error(response) -> None:
    assert response.status_code < 500, response.content[:300]


# --- Household pages -------------------------------------------------------------------------------------


@FUZZ
@given(kind=st.sampled_from([*SPECS, "junk", ""]), threshold=numbers)
def test_alarm_create_refuses_bad_thresholds_with_a_form_error(household_client, household, kind, threshold):
    AlarmRule.objects.filter(household=household).delete()
    response = household_client.post(reverse("alarm-create"), {"kind": kind, "threshold": threshold})
    assert_no_server_error(response)
    for rule in AlarmRule.objects.filter(household=household):
        rule.refresh_from_db()
        spec = SPECS[rule.kind]
        if rule.threshold is not None:
            assert Decimal(0) <= rule.threshold <= spec.maximum
            assert rule.threshold == rule.threshold.quantize(Decimal(1).scaleb(-spec.places))
    assert_no_server_error(household_client.get(reverse("alarm-create"), {"kind": kind, "threshold": threshold}))


@FUZZ
@given(kind=st.sampled_from([*SPECS]), threshold=numbers)
def test_alarm_edit_refuses_bad_thresholds_with_a_form_error(household_client, household, kind, threshold):
    rule, _ = AlarmRule.objects.get_or_create(household=household, kind="daily_cost", defaults={"threshold": 5})
    response = household_client.post(reverse("alarm-edit", args=[rule.pk]), {"kind": kind, "threshold": threshold})
    assert_no_server_error(response)
    assert_no_server_error(household_client.get(reverse("alarm-edit", args=[rule.pk]), {"threshold": threshold}))
    rule.refresh_from_db()
    if rule.threshold is not None:
        assert Decimal(0) <= rule.threshold <= SPECS[rule.kind].maximum


def test_a_zero_with_a_huge_exponent_is_a_form_error_not_a_query(household_client, household):
    # Decimal("0E-1000000") passed every check, then reached a query as a literal PostgreSQL cannot hold.
    response = household_client.post(reverse("alarm-create"), {"kind": "balance_below", "threshold": "0E-1000000"})
    assert response.status_code == 200
    assert response.context["form"].errors["threshold"] == ["Enter a number of at most 12 digits."]
    assert not AlarmRule.objects.filter(household=household).exists()


@pytest.mark.parametrize("spelling", ["0E-5", "-0", "0.000", "0e+3"])
def test_every_spelling_of_zero_is_cleaned_to_the_kinds_own_places(household, spelling):
    from alarms.forms import AlarmRuleForm

    form = AlarmRuleForm({"kind": "balance_below", "threshold": spelling}, household=household)
    assert form.is_valid(), form.errors
    assert form.cleaned_data["threshold"].as_tuple() == Decimal("0.00").as_tuple()  # no sign, no exponent


@pytest.mark.parametrize(
    ("threshold", "message"),
    [
        ("1e999999", "That is more than 1,000,000: please check the number."),
        ("9E+99", "That is more than 1,000,000: please check the number."),
        ("-1e999999", "The threshold cannot be negative."),
        ("0.0000000000001", "Enter a number of at most 12 digits."),
        ("NaN", "Enter a number."),
    ],
)
def test_an_absurd_threshold_gets_one_clear_form_error(household_client, household, threshold, message):
    response = household_client.post(reverse("alarm-create"), {"kind": "daily_cost", "threshold": threshold})
    assert response.status_code == 200
    assert response.context["form"].errors["threshold"] == [message]
    assert not AlarmRule.objects.filter(household=household).exists()


@FUZZ
@given(start=dates, end=dates, which=st.sampled_from(["usage-csv", "settlements-csv"]))
def test_csv_exports_answer_a_file_or_the_form_again_with_a_400(household_client, start, end, which):
    response = household_client.get(reverse(which), {"start": start, "end": end})
    assert response.status_code in (200, 400), response.status_code
    if response.status_code == 200:
        b"".join(response.streaming_content)  # the rows are made while streaming: read them all
    else:
        assert 'role="alert"' in response.text and 'type="date"' in response.text


@FUZZ
@given(range_=st.one_of(st.sampled_from(["day", "week", "month", "year"]), st.text(max_size=10)), day=dates)
def test_the_chart_answers_any_range_and_date(household_client, range_, day):
    for htmx in ({}, {"HX-Request": "true"}):
        response = household_client.get(
            reverse("dashboard"), {"range": range_, "unit": "kwh", "date": day}, headers=htmx
        )
        assert response.status_code == 200


@FUZZ
@given(page=numbers)
def test_the_payments_list_answers_any_page_number(household_client, page):
    assert household_client.get(reverse("settlement-list"), {"page": page}).status_code == 200


@FUZZ
@given(extra=st.dictionaries(st.sampled_from(["satoshis", "days", "amount", "confirm"]), numbers, max_size=3))
def test_the_community_unlock_takes_no_number_from_the_browser(household_client, household, extra):
    response = household_client.post(reverse("community-unlock"), extra)
    assert_no_server_error(response)


# --- The admin (staff) -------------------------------------------------------------------------------------


class FormFields(HTMLParser):
    """The fields a browser would send from a page's form: inputs, checked boxes, selected options, textareas."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id, self.inside, self.data = form_id, False, {}
        self._select: str | None = None
        self._textarea: str | None = None

    def handle_starttag(self, tag, attrs):
        named = {key: value or "" for key, value in attrs}
        if tag == "form":
            self.inside = named.get("id") == self.form_id
        if not self.inside:
            return
        name = named.get("name")
        if tag == "input" and name and named.get("type") not in ("submit", "button", "file"):
            if named.get("type") not in ("checkbox", "radio") or "checked" in named:
                self.data[name] = named.get("value", "")
        elif tag == "select" and name:
            self._select = name
            self.data.setdefault(name, "")
        elif tag == "option" and self._select and ("selected" in named or not self.data[self._select]):
            self.data[self._select] = named.get("value", "")
        elif tag == "textarea" and name:
            self._textarea = name
            self.data[name] = ""

    def handle_data(self, data):
        if self._textarea:
            self.data[self._textarea] += data

    def handle_endtag(self, tag):
        if tag == "form":
            self.inside = False
        elif tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None


def form_data(client, url: str, form_id: str) -> dict[str, str]:
    page = FormFields(form_id)
    response = client.get(url)
    assert response.status_code == 200, url
    page.feed(response.content.decode())
    assert page.data, f"{url}: no form {form_id}"
    return page.data


@pytest.fixture
def version(flat_tariff) -> TariffVersion:
    return flat_tariff.versions.get()


@pytest.fixture
def dynamic_version(flat_tariff) -> TariffVersion:
    return TariffVersion.objects.create(
        tariff=flat_tariff, valid_from=datetime(2030, 1, 1, tzinfo=UTC), kind=TariffVersion.Kind.DYNAMIC
    )


@FUZZ
@given(field=st.sampled_from(["flat_rate", "standing_charge_per_day"]), value=numbers, day=dates, time=times)
def test_admin_tariff_versions_refuse_bad_rates_and_dates(staff_client, flat_tariff, field, value, day, time):
    url = reverse("admin:meters_tariffversion_add")
    data = form_data(staff_client, url, "tariffversion_form") | {
        "tariff": str(flat_tariff.pk),
        "kind": "flat",
        "flat_rate": "0.2",
        "valid_from_0": day,
        "valid_from_1": time,
        field: value,
    }
    assert_no_server_error(staff_client.post(url, data))
    for stored in TariffVersion.objects.all():
        assert stored.flat_rate is None or Decimal(0) <= stored.flat_rate < Decimal(1000)


@FUZZ
@given(
    bands=st.one_of(
        st.sampled_from(['[{"rate": 1e999999}]', "[1e999999]", "NaN", '{"a": -Infinity}', "[]", "{}"]),
        st.text(max_size=40),
    )
)
def test_admin_tariff_version_bands_refuse_bad_json(staff_client, flat_tariff, bands):
    url = reverse("admin:meters_tariffversion_add")
    data = form_data(staff_client, url, "tariffversion_form") | {
        "tariff": str(flat_tariff.pk),
        "kind": "time_of_use",
        "valid_from_0": "2031-01-01",
        "valid_from_1": "00:00:00",
        "bands": bands,
    }
    assert_no_server_error(staff_client.post(url, data))


@FUZZ
@given(rate=numbers, day=dates)
def test_admin_tariffs_refuse_a_bad_new_version_inline(staff_client, flat_tariff, rate, day):
    # An inline formset compares each form with its initial values first: sNaN made that comparison raise.
    url = reverse("admin:meters_tariff_change", args=[flat_tariff.pk])
    data = form_data(staff_client, url, "tariff_form")
    new = int(data["versions-TOTAL_FORMS"])
    data |= {
        "versions-TOTAL_FORMS": str(new + 1),
        f"versions-{new}-valid_from_0": day,
        f"versions-{new}-valid_from_1": "00:00:00",
        f"versions-{new}-kind": "flat",
        f"versions-{new}-flat_rate": rate,
        f"versions-{new}-standing_charge_per_day": rate,
    }
    assert_no_server_error(staff_client.post(url, data))
    for stored in TariffVersion.objects.all():
        assert stored.flat_rate is None or Decimal(0) <= stored.flat_rate < Decimal(1000)


@FUZZ
@given(value=numbers)
def test_admin_meters_refuse_bad_max_power(staff_client, household, value):
    meter, _ = Meter.objects.get_or_create(serial="SN-FUZZ", household=household, defaults={"max_power_kw": 30})
    url = reverse("admin:meters_meter_change", args=[meter.pk])
    data = form_data(staff_client, url, "meter_form") | {"max_power_kw": value}
    assert_no_server_error(staff_client.post(url, data))
    meter.refresh_from_db()
    assert Decimal(0) < meter.max_power_kw < Decimal(10**6)


@FUZZ
@given(
    value=numbers,
    timezone=st.one_of(st.sampled_from(["Europe/Madrid", "UTC", "Mars/Olympus", "", "../etc"]), st.text(max_size=20)),
)
def test_admin_households_refuse_bad_meters_and_time_zones(staff_client, household, value, timezone):
    Meter.objects.get_or_create(serial="SN-HOUSE", household=household, defaults={"max_power_kw": 30})
    url = reverse("admin:meters_household_change", args=[household.pk])
    data = form_data(staff_client, url, "household_form")
    power = next(name for name in data if name.endswith("-max_power_kw"))
    data |= {power: value, "timezone": timezone}
    assert_no_server_error(staff_client.post(url, data))


@FUZZ
@given(rows=st.lists(st.tuples(datetimes, numbers), min_size=1, max_size=4))
def test_admin_price_import_refuses_bad_rows_without_a_500(staff_client, dynamic_version, rows):
    text = "hour_start,rate_eur_per_kwh\n" + "".join(f"{hour},{rate}\n" for hour, rate in rows)
    upload = SimpleUploadedFile("prices.csv", text.encode("utf-8", "surrogatepass"), content_type="text/csv")
    url = reverse("admin:meters_tariffversion_import_prices", args=[dynamic_version.pk])
    response = staff_client.post(url, {"file": upload})
    assert_no_server_error(response)
    for price in dynamic_version.prices.all():
        assert Decimal(0) <= price.rate < Decimal(1000)


@FUZZ
@given(bsv=numbers)
def test_admin_faucet_action_refuses_bad_amounts(staff_client, household, bsv):
    wallet = Wallet.objects.filter(household=household).first()
    if wallet is None:
        from payments.wallets import open_wallet

        wallet = open_wallet(household)
    response = staff_client.post(
        reverse("admin:payments_wallet_changelist"),
        {"action": "fund_from_faucet", "_selected_action": [str(wallet.pk)], "apply": "1", "bsv": bsv},
    )
    assert_no_server_error(response)


@FUZZ
@given(year=st.one_of(st.integers(-10, 10**6).map(str), st.text(max_size=8)), month=numbers, day=numbers)
def test_admin_date_drilldowns_answer_any_date(staff_client, db, year, month, day):
    url = reverse("admin:meters_dynamicprice_changelist")
    params = {"hour_start__year": year, "hour_start__month": month, "hour_start__day": day}
    assert_no_server_error(staff_client.get(url, params))


def drill_down_pages() -> list[tuple[str, str]]:
    from django.contrib import admin

    return [
        (f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist", model_admin.date_hierarchy)
        for model, model_admin in admin.site._registry.items()
        if model_admin.date_hierarchy
    ]


@pytest.mark.parametrize(
    ("year", "month", "day"),
    [
        ("0", "10", "12345678901234567890"),  # past what datetime() takes: OverflowError, not ValueError
        ("9999", None, None),  # the end of the year 9999 is past datetime's range
        ("2026", "\uff11\uff10", "1"),  # fullwidth "10": int() takes other scripts' digits; a URL never needs them
        ("2026", "11", "22"),  # a real drill-down still works
    ],
)
def test_every_date_drilldown_refuses_dates_out_of_range(staff_client, year, month, day):
    pages = drill_down_pages()
    assert len(pages) >= 7  # tariff versions, prices, readings, usage, settlements, passes, alarm events
    for name, field in pages:
        params = {f"{field}__year": year} | ({f"{field}__month": month} if month else {})
        params |= {f"{field}__day": day} if day else {}
        response = staff_client.get(reverse(name), params)
        if (year, month, day) == ("2026", "11", "22"):
            assert response.status_code == 200, name
        else:  # Django's answer to a bad lookup: the list again, with ?e=1
            assert response.status_code == 302, name
            assert response["Location"].endswith("?e=1"), name


def test_the_admin_forms_under_test_exist(staff_client, household, dynamic_version):
    # The fuzz above reads these forms from their pages: a renamed form would make it test nothing.
    meter = Meter.objects.create(serial="SN-CHECK", household=household, max_power_kw=30)
    assert "valid_from_0" in form_data(staff_client, reverse("admin:meters_tariffversion_add"), "tariffversion_form")
    tariff_form = form_data(
        staff_client, reverse("admin:meters_tariff_change", args=[dynamic_version.tariff_id]), "tariff_form"
    )
    assert "versions-TOTAL_FORMS" in tariff_form
    assert "max_power_kw" in form_data(
        staff_client, reverse("admin:meters_meter_change", args=[meter.pk]), "meter_form"
    )
    household_form = form_data(
        staff_client, reverse("admin:meters_household_change", args=[household.pk]), "household_form"
    )
    assert any(name.endswith("-max_power_kw") for name in household_form)
