"""Staff import a dynamic tariff's hourly prices from CSV: every row or none, stored prices never change."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from energypay.accounts.models import User
from meters import admin as meters_admin
from meters import price_import
from meters.ingest import ingest_readings
from meters.models import DynamicPrice, HourlyUsage, Tariff, TariffVersion
from meters.price_import import import_prices
from meters.schema import ReadingIn
from tests.logins import login_with_second_factor

HEADER = "hour_start,rate_eur_per_kwh\n"
GOOD_CSV = (
    HEADER
    + "2026-01-14T00:00:00+01:00,0.1432\n"  # local midnight in Madrid: 23:00 UTC the day before
    + "2026-01-14T00:00:00Z,0.1\n"
    + "2026-01-14T01:00:00Z,0.123456\n"
)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Every household has a user; PBKDF2's deliberate slowness would dominate these tests.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


@pytest.fixture
def dynamic_tariff(db) -> Tariff:
    tariff = Tariff.objects.create(name="Day-ahead")
    TariffVersion.objects.create(tariff=tariff, valid_from=utc(2026, 1, 1, 0), kind=TariffVersion.Kind.DYNAMIC)
    return tariff


@pytest.fixture
def version(dynamic_tariff) -> TariffVersion:
    return dynamic_tariff.versions.get()


def stored_prices(version: TariffVersion) -> dict[datetime, Decimal]:
    return dict(version.prices.values_list("hour_start", "rate"))


# --- The import itself ---------------------------------------------------------------------------


def test_a_valid_file_stores_one_price_per_utc_hour(version):
    result = import_prices(version, GOOD_CSV)

    assert (result.errors, result.created, result.unchanged) == ([], 3, 0)
    assert stored_prices(version) == {
        utc(2026, 1, 13, 23): Decimal("0.143200"),
        utc(2026, 1, 14, 0): Decimal("0.100000"),
        utc(2026, 1, 14, 1): Decimal("0.123456"),
    }


def test_a_file_with_windows_line_ends_and_a_repeated_identical_row_is_accepted(version):
    text = "hour_start,rate_eur_per_kwh\r\n2026-01-14T05:00:00Z,0.2\r\n2026-01-14T06:00:00+01:00,0.20\r\n"

    result = import_prices(version, text)

    assert (result.errors, result.created) == ([], 1)
    assert stored_prices(version) == {utc(2026, 1, 14, 5): Decimal("0.200000")}


@pytest.mark.parametrize(
    ("header", "message"),
    [
        pytest.param("hour,rate\n", "the header must be exactly: hour_start,rate_eur_per_kwh", id="other names"),
        pytest.param(
            "rate_eur_per_kwh,hour_start\n", "the header must be exactly: hour_start,rate_eur_per_kwh", id="order"
        ),
        pytest.param("", "the header must be exactly: hour_start,rate_eur_per_kwh", id="empty file"),
        pytest.param(HEADER, "the file has no rows", id="header only"),
    ],
)
def test_a_bad_header_or_no_rows_imports_nothing(version, header, message):
    result = import_prices(version, header + ("2026-01-14T00:00:00Z,0.1\n" if header != HEADER else ""))

    assert result.errors == [message]
    assert result.created == 0
    assert not DynamicPrice.objects.exists()


@pytest.mark.parametrize(
    ("row", "message"),
    [
        pytest.param(
            "2026-01-14T02:00:00,0.1",
            "line 3: hour_start needs a UTC offset, e.g. 2026-11-22T10:00:00+01:00 or 2026-11-22T09:00:00Z",
            id="naive time",
        ),
        pytest.param(
            "2026-01-14T02:30:00Z,0.1", "line 3: hour_start must be on the hour (in UTC)", id="not on the hour"
        ),
        pytest.param(
            "2026-01-14T02:00:00+05:30,0.1", "line 3: hour_start must be on the hour (in UTC)", id="half-hour offset"
        ),
        pytest.param(
            "2026-01-14T02:00:00Z,-0.01",
            "line 3: rate_eur_per_kwh must be between 0 and 999.999999 EUR/kWh",
            id="negative rate",
        ),
        pytest.param(
            "2026-01-14T02:00:00Z,0.1234567",
            "line 3: rate_eur_per_kwh must have at most 6 decimal places",
            id="too many decimals",
        ),
        pytest.param(
            "2026-01-14T02:00:00Z,1000",
            "line 3: rate_eur_per_kwh must be between 0 and 999.999999 EUR/kWh",
            id="rate too large",
        ),
        pytest.param(
            "2026-01-14T02:00:00Z,NaN",
            "line 3: rate_eur_per_kwh must be between 0 and 999.999999 EUR/kWh",
            id="not a number",
        ),
        pytest.param(
            "2026-01-14T02:00:00Z,",
            "line 3: rate_eur_per_kwh must be a decimal number of EUR/kWh",
            id="missing rate",
        ),
        pytest.param(
            "yesterday,0.1",
            "line 3: hour_start must be an ISO 8601 date-time with offset, e.g. 2026-11-22T10:00:00+01:00",
            id="not a date",
        ),
        pytest.param(
            "2026-01-14T02:00:00Z", "line 3: expected exactly two cells: hour_start,rate_eur_per_kwh", id="one cell"
        ),
        pytest.param(
            "2026-01-14T02:00:00Z,0.1,0.2",
            "line 3: expected exactly two cells: hour_start,rate_eur_per_kwh",
            id="three cells",
        ),
        pytest.param(
            "2025-12-31T23:00:00Z,0.1",
            "line 3: 2025-12-31 23:00 UTC is outside this version (from 2026-01-01 00:00 UTC)",
            id="before the version starts",
        ),
        pytest.param(
            "2026-01-14T00:00:00Z,0.2",
            "line 3: a different rate for 2026-01-14 00:00 UTC appears earlier in the file",
            id="hour twice with different rates",
        ),
    ],
)
def test_a_bad_row_is_reported_with_its_line_and_nothing_is_imported(version, row, message):
    # Line 2 is good: all or nothing means it is not stored either.
    result = import_prices(version, f"{HEADER}2026-01-14T00:00:00Z,0.1\n{row}\n")

    assert result.errors == [message]
    assert result.created == 0
    assert not DynamicPrice.objects.exists()


def test_every_bad_row_is_reported_at_once(version):
    text = HEADER + "2026-01-14T02:00:00,0.1\n2026-01-14T03:00:00Z,0.1\n2026-01-14T04:00:00Z,-1\n"

    assert [error.split(":")[0] for error in import_prices(version, text).errors] == ["line 2", "line 4"]


def test_a_file_with_too_many_rows_is_refused_whole(version, monkeypatch):
    monkeypatch.setattr(price_import, "MAX_ROWS", 2)

    result = import_prices(version, GOOD_CSV)

    assert result.errors == ["at most 2 rows per file"]
    assert not DynamicPrice.objects.exists()


def test_a_file_that_is_not_csv_is_refused_not_a_crash(version):
    result = import_prices(version, HEADER + "2026-01-14T00:00:00Z," + "9" * 200_000 + "\n")

    assert result.errors == ["line 2: not valid CSV (field larger than field limit (131072))"]
    assert not DynamicPrice.objects.exists()


def test_a_price_after_the_next_version_starts_is_refused(version, dynamic_tariff):
    TariffVersion.objects.create(
        tariff=dynamic_tariff, valid_from=utc(2026, 2, 1, 0), kind=TariffVersion.Kind.FLAT, flat_rate=Decimal("0.2")
    )

    result = import_prices(version, HEADER + "2026-01-31T23:00:00Z,0.1\n2026-02-01T00:00:00Z,0.1\n")

    assert result.errors == [
        "line 3: 2026-02-01 00:00 UTC is outside this version (from 2026-01-01 00:00 UTC until 2026-02-01 00:00 UTC)"
    ]
    assert not DynamicPrice.objects.exists()


def test_changing_a_stored_price_is_refused_and_nothing_of_the_file_is_imported(version):
    import_prices(version, GOOD_CSV)

    result = import_prices(version, HEADER + "2026-01-14T01:00:00Z,0.5\n2026-01-14T02:00:00Z,0.1\n")

    assert result.errors == ["2026-01-14 01:00 UTC already costs 0.123456 EUR/kWh; a stored price is never changed"]
    assert result.created == 0
    assert stored_prices(version)[utc(2026, 1, 14, 1)] == Decimal("0.123456")
    assert utc(2026, 1, 14, 2) not in stored_prices(version)


def test_reimporting_the_same_file_is_harmless(version):
    import_prices(version, GOOD_CSV)
    before = list(version.prices.values_list("pk", "hour_start", "rate"))

    result = import_prices(version, GOOD_CSV)

    assert (result.errors, result.created, result.unchanged) == ([], 0, 3)
    assert list(version.prices.values_list("pk", "hour_start", "rate")) == before


def test_a_file_overlapping_stored_prices_with_the_same_rates_adds_only_the_new_hours(version):
    import_prices(version, GOOD_CSV)

    result = import_prices(version, HEADER + "2026-01-14T01:00:00Z,0.123456\n2026-01-14T02:00:00Z,0.11\n")

    assert (result.errors, result.created, result.unchanged) == ([], 1, 1)
    assert len(stored_prices(version)) == 4


@pytest.mark.parametrize("kind", [TariffVersion.Kind.FLAT, TariffVersion.Kind.TIME_OF_USE])
def test_prices_cannot_be_imported_into_a_version_that_is_not_dynamic(flat_tariff, kind):
    version = flat_tariff.versions.get()
    version.kind = kind
    version.save()

    result = import_prices(version, GOOD_CSV)

    assert result.errors == ["prices can only be imported into a dynamic tariff version"]
    assert not DynamicPrice.objects.exists()


@time_machine.travel(utc(2026, 1, 14, 3), tick=False)
def test_importing_prices_prices_the_usage_waiting_for_them_but_never_a_settled_line(
    version, dynamic_tariff, make_household, make_meter
):
    meter, _ = make_meter(make_household(tariff=dynamic_tariff))
    readings = [
        (0, ReadingIn(timestamp="2026-01-14T00:00:00Z", energy_kwh="5")),
        (1, ReadingIn(timestamp="2026-01-14T02:00:00Z", energy_kwh="7")),
    ]
    ingest_readings(meter.pk, readings, datetime.now(UTC))
    lines = HourlyUsage.objects.filter(meter=meter).order_by("hour_start")
    assert [(line.kwh, line.cost_eur) for line in lines] == [(Decimal("1.000000"), None), (Decimal("1.000000"), None)]
    lines.filter(hour_start=utc(2026, 1, 14, 0)).update(settled_at=datetime.now(UTC))  # as settlement would

    result = import_prices(version, GOOD_CSV)

    assert result.repriced_lines == 1
    assert [(line.rate, line.cost_eur) for line in lines.all()] == [
        (None, None),
        (Decimal("0.123456"), Decimal("0.123456")),
    ]


# --- Through the admin ---------------------------------------------------------------------------


@pytest.fixture
def staff_client(client, db):
    return login_with_second_factor(client, User.objects.create_superuser("staff@example.com", "unused-pw-123"))


def import_url(version: TariffVersion) -> str:
    return reverse("admin:meters_tariffversion_import_prices", args=[version.pk])


def upload(text: str | bytes) -> SimpleUploadedFile:
    content = text.encode() if isinstance(text, str) else text
    return SimpleUploadedFile("prices.csv", content, content_type="text/csv")


def test_staff_find_the_import_on_the_version_page_and_see_its_form(staff_client, version):
    version_page = staff_client.get(reverse("admin:meters_tariffversion_change", args=[version.pk]))
    response = staff_client.get(import_url(version))

    assert f'href="{import_url(version)}"' in version_page.content.decode()
    assert response.status_code == 200
    assert b'type="file"' in response.content
    assert b"hour_start,rate_eur_per_kwh" in response.content
    assert b"which starts 2026-01-01 00:00 UTC" in response.content


def test_staff_upload_a_price_file_and_return_to_the_version(staff_client, version):
    response = staff_client.post(import_url(version), {"file": upload(GOOD_CSV)})

    assert response.status_code == 302
    assert response.url == reverse("admin:meters_tariffversion_change", args=[version.pk])
    assert [str(m) for m in get_messages(response.wsgi_request)] == [
        "Imported 3 prices (0 already stored); priced 0 usage lines that were waiting for a price."
    ]
    assert len(stored_prices(version)) == 3


def test_a_spreadsheet_export_with_a_byte_order_mark_is_accepted(staff_client, version):
    response = staff_client.post(import_url(version), {"file": upload("\ufeff" + GOOD_CSV)})

    assert response.status_code == 302
    assert len(stored_prices(version)) == 3


def test_a_bad_upload_shows_its_errors_and_imports_nothing(staff_client, version):
    response = staff_client.post(
        import_url(version), {"file": upload(HEADER + "2026-01-14T00:00:00Z,0.1\n2026-01-14T01:00:00,0.1\n")}
    )

    assert response.status_code == 200
    assert b"line 3: hour_start needs a UTC offset" in response.content
    assert not DynamicPrice.objects.exists()


def test_an_upload_that_would_change_a_stored_price_is_refused(staff_client, version):
    import_prices(version, GOOD_CSV)

    response = staff_client.post(import_url(version), {"file": upload(HEADER + "2026-01-14T00:00:00Z,0.9\n")})

    assert response.status_code == 200
    assert b"a stored price is never changed" in response.content
    assert stored_prices(version)[utc(2026, 1, 14, 0)] == Decimal("0.100000")


def test_a_file_that_is_not_utf8_is_refused(staff_client, version):
    response = staff_client.post(import_url(version), {"file": upload("hour_start,rate\n\xff".encode("latin-1"))})

    assert response.status_code == 200
    assert b"the file is not UTF-8 text" in response.content
    assert not DynamicPrice.objects.exists()


def test_a_file_over_the_size_limit_is_refused_rather_than_cut(staff_client, version, monkeypatch):
    monkeypatch.setattr(meters_admin, "MAX_UPLOAD_BYTES", len(GOOD_CSV) - 1)

    response = staff_client.post(import_url(version), {"file": upload(GOOD_CSV)})

    assert response.status_code == 200
    assert b"the file is larger than" in response.content
    assert not DynamicPrice.objects.exists()


def test_the_admin_refuses_an_import_into_a_flat_version(staff_client, flat_tariff):
    response = staff_client.post(import_url(flat_tariff.versions.get()), {"file": upload(GOOD_CSV)})

    assert response.status_code == 200
    assert b"prices can only be imported into a dynamic tariff version" in response.content
    assert not DynamicPrice.objects.exists()


def test_an_unknown_version_is_not_found(staff_client, version):
    assert (
        staff_client.get(reverse("admin:meters_tariffversion_import_prices", args=[version.pk + 100])).status_code
        == 404
    )


def test_households_and_anonymous_visitors_cannot_import(client, household, version):
    anonymous = client.post(import_url(version), {"file": upload(GOOD_CSV)})
    client.force_login(household.user)
    as_household = client.post(import_url(version), {"file": upload(GOOD_CSV)})

    for response in (anonymous, as_household):
        assert response.status_code == 302
        assert response.url.startswith(reverse("admin:login"))
    assert not DynamicPrice.objects.exists()


def test_staff_who_may_only_view_tariff_versions_cannot_import(client, version):
    viewer = User.objects.create_user("viewer@example.com", "unused-pw-123", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_tariffversion"))
    login_with_second_factor(client, viewer)

    assert client.post(import_url(version), {"file": upload(GOOD_CSV)}).status_code == 403
    assert not DynamicPrice.objects.exists()
