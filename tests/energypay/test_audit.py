"""The audit trail (django-auditlog): every staff change to households, meters, tariffs, wallets, users and
webhook endpoints, with who, when and what; explicit entries for the actions that move money or decide about
readings; never a secret; machines' writes (ingest) are not staff changes."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from auditlog.models import LogEntry
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from energypay.middleware import StaffAuditMiddleware
from meters.ingest import ingest_readings
from meters.models import ContractedPower, HeldReading, Household, TariffVersion
from meters.schema import ReadingIn
from payments.models import PriceQuote
from payments.networks.local import LocalLedger
from payments.wallets import open_wallet
from tests.logins import login_with_second_factor

NOW = datetime(2026, 11, 22, 14, 7, tzinfo=UTC)
pytestmark = [pytest.mark.django_db, pytest.mark.time_machine(NOW, tick=False)]


def entries(instance) -> list[LogEntry]:
    return list(LogEntry.objects.get_for_object(instance).order_by("timestamp", "pk"))


def household_form(household: Household, **changes) -> dict:
    """The household's change form as the admin shows it (no meters, no tariff assignment yet), with ``changes``."""
    data = {
        "user": household.user_id,
        "name": household.name,
        "address": household.address,
        "timezone": household.timezone,
        "region": household.region,
        "language": household.language,
        "tariff": household.tariff_id,
    }
    for inline in ("meters", "tariff_assignments"):
        data |= {f"{inline}-TOTAL_FORMS": "0", f"{inline}-INITIAL_FORMS": "0", f"{inline}-MIN_NUM_FORMS": "0"}
        data[f"{inline}-MAX_NUM_FORMS"] = "1000"
    return data | changes


def test_a_staff_change_to_a_household_names_the_staff_member_the_fields_and_their_values(staff_client, household):
    url = reverse("admin:meters_household_change", args=[household.pk])
    response = staff_client.post(url, household_form(household, name="Casa Nueva"), REMOTE_ADDR="203.0.113.9")

    assert response.status_code == 302, response.content.decode()[:2000]
    [entry] = [e for e in entries(household) if e.action == LogEntry.Action.UPDATE]
    assert entry.actor.email == "staff@example.com"
    assert entry.changes_dict == {"name": [household.name, "Casa Nueva"]}
    assert entry.remote_addr == "203.0.113.9"
    assert entry.timestamp == NOW


def test_the_address_of_a_change_is_never_taken_from_a_header_the_client_wrote(staff_client, household):
    url = reverse("admin:meters_household_change", args=[household.pk])
    staff_client.post(
        url, household_form(household, name="X"), REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="1.2.3.4"
    )

    [entry] = [e for e in entries(household) if e.action == LogEntry.Action.UPDATE]
    assert entry.remote_addr == "203.0.113.9"


def test_the_history_is_shown_per_object_and_in_one_searchable_list(staff_client, household):
    staff_client.post(
        reverse("admin:meters_household_change", args=[household.pk]), household_form(household, name="Casa Nueva")
    )

    change = staff_client.get(reverse("admin:meters_household_change", args=[household.pk]))
    history = staff_client.get(reverse("admin:meters_household_auditlog", args=[household.pk]))
    listing = staff_client.get(reverse("admin:auditlog_logentry_changelist") + "?q=staff%40example.com")

    audit_url = reverse("admin:meters_household_auditlog", args=[household.pk])
    assert f'href="{audit_url}"' in change.content.decode()
    assert history.status_code == 200 and "Casa Nueva" in history.content.decode()
    assert "staff@example.com" in history.content.decode()
    assert listing.status_code == 200 and "Casa Nueva" in listing.content.decode()
    assert "<style" not in history.content.decode()  # the CSP refuses inline styles: they live in admin.css


@pytest.mark.parametrize(
    "name",
    [
        "admin:meters_meter_auditlog",
        "admin:meters_tariff_auditlog",
        "admin:meters_tariffversion_auditlog",
        "admin:payments_wallet_auditlog",
        "admin:accounts_user_auditlog",
        "admin:webhooks_webhookendpoint_auditlog",
        "admin:meters_taxrule_auditlog",
        "admin:meters_tariffassignment_auditlog",
        "admin:meters_contractedpower_auditlog",
    ],
)
def test_every_audited_model_has_its_history_page(staff_client, meter_and_token, name):
    meter, _ = meter_and_token
    from energypay.webhooks.models import WebhookEndpoint
    from meters.contracts import start_contract
    from tests.meters.taxkit import rule

    endpoint = WebhookEndpoint(url="https://crm.example/hooks", events=["meter.silent"])
    endpoint.issue_secret()
    endpoint.save()
    objects = {
        "meter": meter,
        "tariff": meter.household.tariff,
        "tariffversion": TariffVersion.objects.filter(tariff=meter.household.tariff).first(),
        "wallet": open_wallet(meter.household),
        "user": meter.household.user,
        "webhookendpoint": endpoint,
        "taxrule": rule("iva", "0.21"),
        "tariffassignment": start_contract(meter.household_id, NOW.replace(minute=0)),
        "contractedpower": ContractedPower.objects.create(
            household=meter.household, valid_from=NOW.replace(minute=0), kw={"P1": "4.6", "P2": "4.6"}
        ),
    }
    target = objects[name.split("_")[-2]]

    assert staff_client.get(reverse(name, args=[target.pk])).status_code == 200


def test_a_new_tariff_version_in_the_admin_is_recorded(staff_client, flat_tariff):
    response = staff_client.post(
        reverse("admin:meters_tariffversion_add"),
        {
            "tariff": flat_tariff.pk,
            "valid_from_0": "2027-01-01",
            "valid_from_1": "00:00:00",
            "kind": "flat",
            "flat_rate": "0.31",
            "standing_charge_per_day": "0",
            "bands": "[]",
        },
    )

    assert response.status_code == 302, response.content.decode()[:3000]
    version = TariffVersion.objects.get(flat_rate=Decimal("0.31"))
    [entry] = entries(version)
    assert entry.action == LogEntry.Action.CREATE and entry.actor.email == "staff@example.com"
    assert entry.changes_dict["flat_rate"] == [None, "0.310000"] or entry.changes_dict["flat_rate"][1].startswith(
        "0.31"
    )


def test_a_new_meter_token_is_an_entry_without_the_token_or_its_hash(staff_client, meter_and_token):
    meter, old_token = meter_and_token
    page = staff_client.post(
        reverse("admin:meters_meter_changelist"), {"action": "issue_new_token", "_selected_action": [meter.pk]}
    )
    [token] = set(re.findall(r"mtr_[A-Za-z0-9_\-]{20,}", page.content.decode()))
    meter.refresh_from_db()

    [entry] = [e for e in entries(meter) if e.additional_data]
    assert entry.additional_data == {"action": "meter.issue_token"}
    assert entry.actor.email == "staff@example.com"
    everything = str(list(LogEntry.objects.values_list("changes", "additional_data", "serialized_data")))
    for secret in (token, old_token, meter.token_hash):
        assert secret not in everything


def test_ingest_and_its_meter_bookkeeping_write_no_audit_entry(meter_and_token):
    meter, _ = meter_and_token
    before = LogEntry.objects.count()

    reading = ReadingIn(timestamp="2026-11-22T13:00:00Z", energy_kwh="100")
    assert ingest_readings(meter.pk, [(0, reading)], timezone.now()).accepted == 1
    meter.refresh_from_db()
    meter.save()  # a save of the machine-written fields only (last reading, register, budget): no change to audit

    assert meter.last_reading_at is not None
    assert LogEntry.objects.count() == before


def test_accepting_a_held_reading_is_an_entry_with_what_it_did(staff_client, meter_and_token):
    meter, token = meter_and_token
    meters = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    for when, kwh in ((NOW - timedelta(hours=1), 200), (NOW - timedelta(days=10), 100)):  # the second is too old
        reading = {"timestamp": when.isoformat(), "energy_kwh": kwh}
        assert meters.post("/api/v1/readings", reading, "application/json").status_code == 200
    held = HeldReading.objects.get()

    staff_client.post(
        reverse("admin:meters_heldreading_changelist"), {"action": "accept", "_selected_action": [held.pk]}
    )

    held.refresh_from_db()
    [entry] = entries(held)
    assert entry.additional_data == {"action": "reading.accepted", "meter_id": meter.pk}
    assert entry.changes_dict["staff action"] == ["", held.outcome] and entry.actor.email == "staff@example.com"


def test_retrying_a_settlement_by_hand_is_an_entry_on_the_household(staff_client, meter_and_token):
    meter, _ = meter_and_token
    household = meter.household
    PriceQuote.objects.create(source="fixed", bsv_eur=Decimal("30"), fetched_at=NOW - timedelta(minutes=1))
    readings = [
        (i, ReadingIn(timestamp=f"2026-11-22T{h}:00:00Z", energy_kwh=str(100 + i))) for i, h in enumerate((10, 11, 12))
    ]
    ingest_readings(meter.pk, readings, timezone.now())
    wallet = open_wallet(household)
    ledger = LocalLedger()
    ledger.fund(wallet.address, 10_000_000)
    ledger.mine()
    wallet.sync_coins(ledger)

    staff_client.post(
        reverse("admin:payments_wallet_changelist"), {"action": "retry_now", "_selected_action": [wallet.pk]}
    )

    [entry] = [e for e in entries(household) if e.additional_data]
    assert entry.additional_data["action"] == "settlement.retry"
    assert entry.additional_data["settlement_id"] is not None
    assert entry.changes_dict["staff action"] == ["", "Retried payment now: seen"]
    assert entry.actor.email == "staff@example.com"


def test_syncing_and_funding_wallets_are_entries_on_the_wallet(staff_client, household):
    wallet = open_wallet(household)

    staff_client.post(
        reverse("admin:payments_wallet_changelist"), {"action": "sync_coins_action", "_selected_action": [wallet.pk]}
    )
    staff_client.post(
        reverse("admin:payments_wallet_changelist"),
        {"action": "fund_from_faucet", "_selected_action": [wallet.pk], "apply": "1", "bsv": "0.01"},
    )

    actions = [e.additional_data["action"] for e in entries(wallet) if e.additional_data]
    assert actions == ["wallet.sync_coins", "wallet.faucet"]


def test_giving_someone_staff_rights_is_recorded_and_a_password_never_is(staff_client, household):
    user = household.user
    user.is_staff = True
    user.save()
    user.set_password("a-new-password-123")
    user.save()

    [change] = [e for e in entries(user) if e.action == LogEntry.Action.UPDATE]
    assert change.changes_dict == {"is_staff": ["False", "True"]}
    assert not LogEntry.objects.filter(changes__has_key="password").exists()


def test_changes_outside_the_admin_have_no_actor(household):
    """The middleware names the actor on /admin/ only; code (a command, a job) is "system"."""
    household.name = "Renamed by a job"
    household.save()

    [entry] = [e for e in entries(household) if e.action == LogEntry.Action.UPDATE]
    assert entry.actor is None


def test_the_household_pages_and_the_meter_api_cost_no_audit_work(household, meter_and_token, monkeypatch):
    """Not on /admin/: the middleware does nothing (no user lookup, no signal connected and disconnected)."""

    def refuse(*args, **kwargs):
        raise AssertionError("the audit middleware ran outside the admin")

    monkeypatch.setattr(StaffAuditMiddleware, "get_extra_data", refuse)
    browser = Client()
    browser.force_login(household.user)
    _, token = meter_and_token
    reading = {"timestamp": "2026-11-22T14:00:00Z", "energy_kwh": 1}

    assert browser.get(reverse("dashboard")).status_code == 200
    meter = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert meter.post("/api/v1/readings", reading, "application/json").status_code == 200


def test_audit_entries_cannot_be_changed_or_deleted_in_the_admin(staff_client, household):
    household.name = "Renamed"
    household.save()
    entry = LogEntry.objects.latest("timestamp")

    delete = staff_client.post(reverse("admin:auditlog_logentry_delete", args=[entry.pk]), {"post": "yes"})

    assert delete.status_code == 403
    assert LogEntry.objects.filter(pk=entry.pk).exists()


def test_a_staff_member_who_only_views_sees_the_list_but_changes_nothing(household, db):
    from django.contrib.auth.models import Permission

    from energypay.accounts.models import User

    viewer = User.objects.create_user("viewer@example.com", "pw-unused-123", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_logentry", content_type__app_label="auditlog"))
    browser = login_with_second_factor(Client(), viewer)

    assert browser.get(reverse("admin:auditlog_logentry_changelist")).status_code == 200


def test_the_history_of_an_object_that_does_not_exist_sends_staff_back_to_the_list(staff_client, db):
    response = staff_client.get(reverse("admin:meters_household_auditlog", args=[999999]))

    assert response.status_code == 302 and response["Location"] == reverse("admin:index")


def test_tax_rules_and_tariff_changes_are_in_the_trail_with_who_made_them(staff_client, household):
    from meters.contracts import start_contract
    from tests.meters.taxkit import rule

    tax = rule("iva", "0.21")
    assignment = start_contract(household.pk, NOW.replace(minute=0), acting_user=None)

    assert [e.action for e in entries(tax)] == [LogEntry.Action.CREATE]
    assert entries(tax)[0].changes_dict["rate"][1].startswith("0.21")
    assert [e.action for e in entries(assignment)] == [LogEntry.Action.CREATE]
