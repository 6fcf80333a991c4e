"""The meters admin: staff only, ledger data read-only, tokens shown once, tariff history protected."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine
from django.apps import apps
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from energypay.accounts.models import Session, User
from meters import admin as meters_admin
from meters.ingest import ingest_readings
from meters.models import (
    DynamicPrice,
    HourlyUsage,
    Household,
    Meter,
    MeterEvent,
    Reading,
    Tariff,
    TariffVersion,
)
from meters.schema import ReadingIn
from tests.logins import SECOND_FACTOR_QUERIES, login_with_second_factor

NOW = datetime(2026, 1, 14, 12, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Every household has a user; PBKDF2's deliberate slowness would dominate these tests.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def ingest(meter: Meter, *readings: tuple[str, str]) -> None:
    items = [(i, ReadingIn(timestamp=moment, energy_kwh=kwh)) for i, (moment, kwh) in enumerate(readings)]
    outcome = ingest_readings(meter.pk, items, NOW)
    assert outcome.accepted == len(readings), outcome.rejected


@dataclass
class World:
    tariff: Tariff
    version: TariffVersion
    dynamic_version: TariffVersion
    price: DynamicPrice
    household: Household
    meter: Meter
    reading: Reading
    event: MeterEvent
    energy_line: HourlyUsage
    standing_line: HourlyUsage


@pytest.fixture
def world(flat_tariff, household, meter_and_token) -> World:
    """One of everything the meters admin shows."""
    version = flat_tariff.versions.get()
    version.standing_charge_per_day = Decimal("0.48")
    version.save()
    dynamic = Tariff.objects.create(name="Day-ahead")
    dynamic_version = TariffVersion.objects.create(
        tariff=dynamic, valid_from=datetime(2026, 1, 1, tzinfo=UTC), kind=TariffVersion.Kind.DYNAMIC
    )
    price = DynamicPrice.objects.create(version=dynamic_version, hour_start=NOW, rate=Decimal("0.1"))
    meter, _ = meter_and_token
    # The register goes down at 11:00: a reset, which staff see as an event.
    ingest(meter, ("2026-01-14T09:00:00Z", "100"), ("2026-01-14T10:00:00Z", "101"), ("2026-01-14T11:00:00Z", "3"))
    return World(
        tariff=flat_tariff,
        version=version,
        dynamic_version=dynamic_version,
        price=price,
        household=household,
        meter=meter,
        reading=Reading.objects.filter(meter=meter).first(),
        event=MeterEvent.objects.get(meter=meter),
        energy_line=HourlyUsage.objects.filter(kind=HourlyUsage.Kind.ENERGY).first(),
        standing_line=HourlyUsage.objects.filter(kind=HourlyUsage.Kind.STANDING).first(),
    )


# (url name, attribute of World for the object, or None for pages without one)
PAGES = [
    ("admin:app_list", "meters"),
    ("admin:meters_tariff_changelist", None),
    ("admin:meters_tariff_add", None),
    ("admin:meters_tariff_change", "tariff"),
    ("admin:meters_tariffversion_changelist", None),
    ("admin:meters_tariffversion_add", None),
    ("admin:meters_tariffversion_change", "version"),
    ("admin:meters_tariffversion_change", "dynamic_version"),
    ("admin:meters_tariffversion_import_prices", "dynamic_version"),
    ("admin:meters_dynamicprice_changelist", None),
    ("admin:meters_dynamicprice_change", "price"),
    ("admin:meters_household_changelist", None),
    ("admin:meters_household_add", None),
    ("admin:meters_household_change", "household"),
    ("admin:meters_meter_changelist", None),
    ("admin:meters_meter_add", None),
    ("admin:meters_meter_change", "meter"),
    ("admin:meters_reading_changelist", None),
    ("admin:meters_reading_change", "reading"),
    ("admin:meters_meterevent_changelist", None),
    ("admin:meters_meterevent_change", "event"),
    ("admin:meters_hourlyusage_changelist", None),
    ("admin:meters_hourlyusage_change", "energy_line"),
    ("admin:meters_hourlyusage_change", "standing_line"),
]


def page_url(world: World, name: str, attribute: str | None) -> str:
    if name == "admin:app_list":
        return reverse(name, kwargs={"app_label": attribute})
    return reverse(name, args=[getattr(world, attribute).pk] if attribute else [])


def page_id(page: tuple[str, str | None]) -> str:
    return f"{page[0].removeprefix('admin:')}({page[1] or ''})"


# --- Staff only ----------------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_meters_admin_page_answers_staff(staff_client, world, page):
    assert staff_client.get(page_url(world, *page)).status_code == 200


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_anonymous_visitors_are_sent_to_the_login(client, world, page):
    url = page_url(world, *page)

    response = client.get(url)

    assert response.status_code == 302
    assert response.url == f"{reverse('admin:login')}?next={url}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_a_logged_in_household_is_sent_to_the_login_too(client, world, page):
    client.force_login(world.household.user)
    url = page_url(world, *page)

    response = client.get(url)

    assert response.status_code == 302
    assert response.url == f"{reverse('admin:login')}?next={url}"


# --- Meter tokens --------------------------------------------------------------------------------

TOKEN_IN_PAGE = re.compile(r"<code>(mtr_[A-Za-z0-9_-]+)</code>")


def issue_tokens(client, *meters: Meter):
    return client.post(
        reverse("admin:meters_meter_changelist"),
        {"action": "issue_new_token", "_selected_action": [meter.pk for meter in meters]},
    )


def test_a_new_token_is_shown_once_and_replaces_the_old_one(staff_client, meter_and_token):
    meter, old_token = meter_and_token

    response = issue_tokens(staff_client, meter)

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    [new_token] = TOKEN_IN_PAGE.findall(response.content.decode())
    assert Meter.for_token(new_token) == meter
    assert Meter.for_token(old_token) is None
    # Shown once: no later page shows it again.
    for url in (reverse("admin:meters_meter_changelist"), reverse("admin:meters_meter_change", args=[meter.pk])):
        assert new_token not in staff_client.get(url).content.decode()


def test_each_selected_meter_gets_its_own_token(staff_client, make_meter):
    meters = [make_meter()[0] for _ in range(3)]

    tokens = TOKEN_IN_PAGE.findall(issue_tokens(staff_client, *meters).content.decode())

    assert len(set(tokens)) == 3
    assert [Meter.for_token(token) for token in tokens] == sorted(meters, key=lambda meter: meter.serial)


def test_a_new_token_is_never_stored_nor_put_in_messages(staff_client, meter_and_token):
    meter, _ = meter_and_token

    response = issue_tokens(staff_client, meter)

    [token] = TOKEN_IN_PAGE.findall(response.content.decode())
    for model in apps.get_models():
        for row in model.objects.values_list():
            assert token not in str(row), f"the token is stored in {model._meta.label}"
    for session in Session.objects.all():
        assert token not in str(session.get_decoded())
    assert all(token not in str(message) for message in get_messages(response.wsgi_request))
    assert all(token not in cookie.value for cookie in response.cookies.values())
    meter.refresh_from_db()
    assert meter.token_hash and meter.token_hash != token


def test_staff_who_may_only_view_meters_cannot_issue_tokens(client, meter_and_token):
    meter, old_token = meter_and_token
    viewer = User.objects.create_user("viewer@example.com", "unused-pw-123", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_meter"))
    login_with_second_factor(client, viewer)

    changelist = client.get(reverse("admin:meters_meter_changelist"))
    response = issue_tokens(client, meter)

    assert changelist.status_code == 200
    assert b"issue_new_token" not in changelist.content
    assert not TOKEN_IN_PAGE.findall(response.content.decode())
    assert Meter.for_token(old_token) == meter


def test_too_many_meters_at_once_get_no_new_token(staff_client, make_meter, monkeypatch):
    monkeypatch.setattr(meters_admin, "MAX_TOKENS_PER_ACTION", 2)
    meters_and_tokens = [make_meter() for _ in range(3)]

    response = issue_tokens(staff_client, *(meter for meter, _ in meters_and_tokens))

    assert response.status_code == 302
    assert [str(m) for m in get_messages(response.wsgi_request)] == ["Select at most 2 meters; no token was changed."]
    assert all(Meter.for_token(token) == meter for meter, token in meters_and_tokens)


# --- Ledger data is read-only --------------------------------------------------------------------

READ_ONLY = [
    pytest.param("reading", "reading", id="readings"),
    pytest.param("meterevent", "event", id="meter events"),
    pytest.param("hourlyusage", "energy_line", id="hourly usage"),
    pytest.param("dynamicprice", "price", id="dynamic prices"),
]


@pytest.mark.parametrize(("model", "attribute"), READ_ONLY)
def test_ledger_data_cannot_be_added_changed_or_deleted_in_the_admin(staff_client, world, model, attribute):
    obj = getattr(world, attribute)
    before = type(obj).objects.values().get(pk=obj.pk)

    view = staff_client.get(reverse(f"admin:meters_{model}_change", args=[obj.pk]))
    changelist = staff_client.get(reverse(f"admin:meters_{model}_changelist"))

    assert view.status_code == 200
    assert b'name="_save"' not in view.content
    assert b"delete_selected" not in changelist.content
    assert staff_client.get(reverse(f"admin:meters_{model}_add")).status_code == 403
    assert staff_client.post(reverse(f"admin:meters_{model}_change", args=[obj.pk]), {}).status_code == 403
    assert staff_client.post(reverse(f"admin:meters_{model}_delete", args=[obj.pk]), {"post": "yes"}).status_code == 403
    assert type(obj).objects.values().get(pk=obj.pk) == before


def test_a_meters_reset_events_are_shown_on_its_page_but_not_editable(staff_client, world):
    response = staff_client.get(reverse("admin:meters_meter_change", args=[world.meter.pk]))

    assert b"Register reset" in response.content
    assert b'name="events-0-kind"' not in response.content
    assert b'name="events-TOTAL_FORMS"' in response.content  # the inline is there, read-only


# --- List pages cost a fixed number of queries ---------------------------------------------------


def fill(make_household, make_meter, households: int) -> None:
    """Each household on its own dynamic tariff, with a meter, readings, usage and a reset."""
    for number in range(households):
        tariff = Tariff.objects.create(name=f"Day-ahead {number}")
        version = TariffVersion.objects.create(
            tariff=tariff, valid_from=datetime(2026, 1, 1, tzinfo=UTC), kind=TariffVersion.Kind.DYNAMIC
        )
        DynamicPrice.objects.create(version=version, hour_start=datetime(2026, 1, 14, 8, tzinfo=UTC), rate=1)
        meter, _ = make_meter(make_household(tariff=tariff))
        ingest(meter, ("2026-01-14T08:00:00Z", "1"), ("2026-01-14T10:00:00Z", "4"), ("2026-01-14T11:00:00Z", "0"))


LIST_PAGES = [
    pytest.param("admin:meters_meter_changelist", "", 4, id="meters"),
    pytest.param("admin:meters_meter_changelist", "?o=7", 4, id="meters by resets"),
    pytest.param("admin:meters_hourlyusage_changelist", "", 6, id="hourly usage"),
    pytest.param("admin:meters_hourlyusage_changelist", "?settled=unpriced", 6, id="usage waiting for a price"),
    pytest.param("admin:meters_reading_changelist", "", 6, id="readings"),
    pytest.param("admin:meters_household_changelist", "", 6, id="households"),
    pytest.param("admin:meters_meterevent_changelist", "", 5, id="meter events"),
    pytest.param("admin:meters_tariff_changelist", "", 5, id="tariffs"),
    pytest.param("admin:meters_tariffversion_changelist", "", 8, id="tariff versions"),
    pytest.param("admin:meters_dynamicprice_changelist", "", 8, id="dynamic prices"),
]


@pytest.mark.parametrize("households", [1, 12])
@pytest.mark.parametrize(("url_name", "query", "max_queries"), LIST_PAGES)
def test_list_pages_take_the_same_few_queries_however_many_rows(
    staff_client, make_household, make_meter, django_assert_max_num_queries, households, url_name, query, max_queries
):
    fill(make_household, make_meter, households)

    with django_assert_max_num_queries(max_queries + SECOND_FACTOR_QUERIES):
        response = staff_client.get(reverse(url_name) + query)

    assert response.status_code == 200
    assert len(response.context["cl"].result_list) >= households


# --- Tariff versions: the version in force at an hour prices it forever --------------------------


def version_form(tariff: Tariff, valid_from: datetime, **fields) -> dict:
    return {
        "tariff": tariff.pk,
        "valid_from_0": f"{valid_from:%Y-%m-%d}",
        "valid_from_1": f"{valid_from:%H:%M:%S}",
        "kind": TariffVersion.Kind.FLAT,
        "flat_rate": "0.3",
        "standing_charge_per_day": "0",
        "bands": "[]",
        **fields,
    }


@time_machine.travel(NOW, tick=False)
def test_a_version_that_priced_usage_is_read_only(staff_client, world):
    url = reverse("admin:meters_tariffversion_change", args=[world.version.pk])

    page = staff_client.get(url)
    staff_client.post(url, version_form(world.tariff, world.version.valid_from, flat_rate="9.99"))

    assert b'name="flat_rate"' not in page.content
    assert b"prices those hours forever" in page.content
    world.version.refresh_from_db()
    assert world.version.flat_rate == Decimal("0.250000")


@time_machine.travel(NOW, tick=False)
def test_a_new_version_cannot_start_before_usage_already_priced(staff_client, world):
    response = staff_client.post(
        reverse("admin:meters_tariffversion_add"), version_form(world.tariff, datetime(2026, 1, 14, 10, tzinfo=UTC))
    )

    assert response.status_code == 200
    assert (
        b"This tariff has already priced usage up to the hour starting 2026-01-14 10:00 UTC; "
        b"a new version must start at 2026-01-14 11:00 UTC or later."
    ) in response.content
    assert world.tariff.versions.count() == 1


@time_machine.travel(NOW, tick=False)
def test_a_new_version_after_the_priced_usage_is_added(staff_client, world):
    response = staff_client.post(
        reverse("admin:meters_tariffversion_add"), version_form(world.tariff, datetime(2026, 1, 14, 13, tzinfo=UTC))
    )

    assert response.status_code == 302
    assert world.tariff.versions.filter(valid_from=datetime(2026, 1, 14, 13, tzinfo=UTC)).exists()


def test_a_new_version_must_start_on_the_hour_in_the_admin_too(staff_client, world):
    response = staff_client.post(
        reverse("admin:meters_tariffversion_add"),
        version_form(world.tariff, datetime(2026, 3, 1, 10, 30, tzinfo=UTC), kind=TariffVersion.Kind.DYNAMIC),
    )

    assert response.status_code == 200
    assert b"A tariff version must start on the hour." in response.content


@time_machine.travel(NOW, tick=False)
def test_a_first_version_prices_the_usage_recorded_while_there_was_none(staff_client, make_household, make_meter):
    tariff = Tariff.objects.create(name="Not yet priced")
    meter, _ = make_meter(make_household(tariff=tariff))
    ingest(meter, ("2026-01-14T09:00:00Z", "100"), ("2026-01-14T11:00:00Z", "102"))
    assert list(HourlyUsage.objects.values_list("tariff_version", "cost_eur")) == [(None, None), (None, None)]

    response = staff_client.post(
        reverse("admin:meters_tariffversion_add"), version_form(tariff, datetime(2026, 1, 1, tzinfo=UTC))
    )

    assert response.status_code == 302
    version = tariff.versions.get()
    assert list(HourlyUsage.objects.values_list("tariff_version", "rate", "cost_eur")) == [
        (version.pk, Decimal("0.300000"), Decimal("0.300000")),
        (version.pk, Decimal("0.300000"), Decimal("0.300000")),
    ]


def tariff_form(tariff: Tariff, new_version: dict | None = None) -> dict:
    """The tariff change form with its versions inline (existing ones are view-only)."""
    existing = list(tariff.versions.order_by("-valid_from"))
    data = {
        "name": tariff.name,
        "description": "",
        "versions-TOTAL_FORMS": len(existing) + (1 if new_version else 0),
        "versions-INITIAL_FORMS": len(existing),
        "versions-MIN_NUM_FORMS": 0,
        "versions-MAX_NUM_FORMS": 1000,
    }
    for index, version in enumerate(existing):
        data[f"versions-{index}-id"] = version.pk
        data[f"versions-{index}-tariff"] = tariff.pk
    if new_version:
        index = len(existing)
        data[f"versions-{index}-tariff"] = tariff.pk
        data.update({f"versions-{index}-{key}": value for key, value in new_version.items() if key != "tariff"})
    return data


@time_machine.travel(NOW, tick=False)
def test_the_tariff_page_refuses_an_inline_version_before_priced_usage(staff_client, world):
    new = version_form(world.tariff, datetime(2026, 1, 14, 10, tzinfo=UTC))

    response = staff_client.post(
        reverse("admin:meters_tariff_change", args=[world.tariff.pk]), tariff_form(world.tariff, new)
    )

    assert response.status_code == 200
    assert b"This tariff has already priced usage up to the hour starting 2026-01-14 10:00 UTC" in response.content
    assert world.tariff.versions.count() == 1


@time_machine.travel(NOW, tick=False)
def test_the_tariff_page_adds_a_future_version_but_cannot_change_existing_ones(staff_client, world):
    data = tariff_form(world.tariff, version_form(world.tariff, datetime(2026, 2, 1, tzinfo=UTC)))
    data["versions-0-flat_rate"] = "9.99"  # an edit of the existing version, which the page does not offer

    response = staff_client.post(reverse("admin:meters_tariff_change", args=[world.tariff.pk]), data)

    assert response.status_code == 302
    assert list(world.tariff.versions.order_by("valid_from").values_list("flat_rate", flat=True)) == [
        Decimal("0.250000"),
        Decimal("0.300000"),
    ]


@time_machine.travel(NOW, tick=False)
def test_a_version_page_asks_once_whether_the_version_priced_usage(staff_client, world):
    url = reverse("admin:meters_tariffversion_change", args=[world.version.pk])
    with CaptureQueriesContext(connection) as queries:
        page = staff_client.get(url)
    asked = [q["sql"] for q in queries.captured_queries if "meters_hourlyusage" in q["sql"]]
    assert b"prices those hours forever" in page.content
    assert len(asked) == 1, asked
