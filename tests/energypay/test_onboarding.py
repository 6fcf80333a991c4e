"""Bulk onboarding in the admin: a preview of every row's errors, an all-or-nothing import, tokens downloaded once."""

from __future__ import annotations

import csv
import html
import io
import logging
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import openpyxl
import pytest
import time_machine
from auditlog.models import LogEntry
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from energypay.accounts.models import User
from energypay.onboarding.models import ImportBatch
from meters.models import HourlyUsage, Household, Meter, StandingMark, Tariff, TariffAssignment, TariffVersion
from payments import keys
from payments.models import Wallet
from tests.logins import login_with_second_factor

IMPORT_URL = "/admin/meters/household/import/"
CONFIRM_URL = "/admin/meters/household/process_import/"
EXPORT_URL = "/admin/meters/household/export/"
HEADER = "email,name,address,timezone,region,tariff,contract_starts,serial,max_power_kw,installed_at"
NOW = datetime(2026, 3, 10, 9, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _frozen(db):
    with time_machine.travel(NOW, tick=False):
        StandingMark.objects.filter(pk=1).update(accrued_until=NOW.replace(minute=0))
        yield


@pytest.fixture
def tariff(flat_tariff) -> Tariff:
    return flat_tariff  # "Flat 0.25"


def csv_file(*lines: str, header: str = HEADER) -> bytes:
    return ("\n".join([header, *lines]) + "\n").encode()


def upload(client: Client, content: bytes, *, name: str = "pilot.csv", fmt: str = "0"):
    handle = io.BytesIO(content)
    handle.name = name
    return client.post(IMPORT_URL, {"resource": "0", "format": fmt, "import_file": handle})


def confirm(client: Client, preview) -> object:
    html = preview.content.decode()
    fields = dict(re.findall(r'name="(import_file_name|original_file_name|format|resource)" value="([^"]*)"', html))
    assert "import_file_name" in fields, "the preview offers no confirmation"
    return client.post(CONFIRM_URL, fields)


def written() -> tuple[int, int, int, int, int]:
    return (
        User.objects.count(),
        Household.objects.count(),
        Meter.objects.count(),
        Wallet.objects.count(),
        TariffAssignment.objects.count(),
    )


def page_text(response) -> str:
    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode())))


GOOD = [
    "ana@example.com,Casa Ana,Calle 1,Europe/Madrid,peninsula,Flat 0.25,,SN-A1,25,2026-03-01",
    "ana@example.com,Casa Ana,Calle 1,Europe/Madrid,peninsula,Flat 0.25,,SN-A2,,",
    "Bea@Example.com,Piso Bea,,Atlantic/Canary,canarias,Flat 0.25,2026-03-09,SN-B1,,2026-03-02T10:00:00+00:00",
    "carl@example.com,Casa Carl,,Europe/Madrid,,Flat 0.25,,,,",
]


# --- The preview: every row's errors, nothing written -----------------------------------------


def test_the_preview_lists_every_rows_errors_and_writes_nothing(staff_client, tariff, make_meter):
    make_meter()  # SN-...: serials of the fixture
    taken = Meter.objects.get()
    User.objects.create_user("taken@example.com", "pw-unused-123")
    before = written()
    content = csv_file(
        "not-an-email,Casa 1,,Europe/Madrid,,Flat 0.25,,SN-1,,",
        "two@example.com,Casa 2,,Europe/Madrod,,Flat 0.25,,SN-2,,",
        "three@example.com,Casa 3,,Europe/Madrid,,No such tariff,,SN-3,,",
        f"four@example.com,Casa 4,,Europe/Madrid,,Flat 0.25,,{taken.serial},,",
        "five@example.com,Casa 5,,Europe/Madrid,,Flat 0.25,,SN-DUP,,",
        "six@example.com,Casa 6,,Europe/Madrid,,Flat 0.25,,SN-DUP,,",
        "seven@example.com,Casa 7,,Europe/Madrid,atlantis,Flat 0.25,,SN-7,,",
        "taken@example.com,Casa 8,,Europe/Madrid,,Flat 0.25,,SN-8,,",
        "nine@example.com,Casa 9,,Europe/Madrid,,Flat 0.25,,SN-9,lots,yesterday",
        "ana@example.com,Casa Ana,,Europe/Madrid,,Flat 0.25,,SN-10,,",
        "ana@example.com,Casa Other,,Europe/Madrid,,Flat 0.25,,SN-11,,",
        "fine@example.com,Fine,,Europe/Madrid,,Flat 0.25,,SN-12,,",
    )
    response = upload(staff_client, content)
    assert response.status_code == 200
    text = page_text(response)
    assert "9 rows with errors: nothing was written" in text
    for expected in [
        "email: 'not-an-email' is not an email address",
        "timezone: 'Europe/Madrod' is not an IANA time zone",
        "tariff: no tariff is named 'No such tariff'",
        f"serial: a meter with serial {taken.serial} already exists",
        "serial: serial SN-DUP is also on line 6",
        "region: 'atlantis' is not a tax region",
        "email: taken@example.com already has an account",
        "max_power_kw: a number of kW",
        "installed_at: a date",
        "name: differs from line 11, the same household",
    ]:
        assert expected in text, expected
    assert 'name="import_file_name"' not in response.content.decode()  # no confirmation offered
    assert written() == before


def test_a_clean_file_previews_every_row_and_still_writes_nothing(staff_client, tariff):
    before = written()
    response = upload(staff_client, csv_file(*GOOD))
    text = page_text(response)
    assert "Preview" in text and "SN-A1" in text and "carl@example.com" in text
    assert written() == before
    assert not LogEntry.objects.filter(additional_data__action__startswith="onboarding.").exists()


# --- The import: all of it, in one go ----------------------------------------------------------


def test_confirming_imports_households_with_login_contract_wallet_and_meters(staff_client, staff_user, tariff):
    response = confirm(staff_client, upload(staff_client, csv_file(*GOOD)))
    batch = ImportBatch.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:onboarding_importbatch_change", args=[batch.pk])
    assert (batch.households, batch.meters, batch.created_by) == (3, 3, staff_user)

    bea = Household.objects.get(user__email="bea@example.com")  # the one spelling of a login
    assert not bea.user.has_usable_password() and not bea.user.is_staff
    assert (bea.timezone, bea.region, bea.tariff) == ("Atlantic/Canary", "canarias", tariff)
    # Its contract starts at the first hour of the local day given: midnight in the Canaries is 00:00 UTC (WET).
    assignment = TariffAssignment.objects.get(household=bea)
    assert assignment.valid_from == datetime(2026, 3, 9, 0, tzinfo=UTC) == bea.tariff_since
    assert assignment.created_by == staff_user
    # Its wallet is the one open_wallet would open: the household's index on the household account.
    assert (bea.wallet.derivation_index, bea.wallet.address) == (bea.pk, keys.household_public(bea.pk)[0])
    meter = Meter.objects.get(serial="SN-B1")
    assert meter.household == bea and meter.installed_at == datetime(2026, 3, 2, 10, tzinfo=UTC)
    assert meter.token_hash is None  # issued by the download, once

    ana = Household.objects.get(user__email="ana@example.com")
    assert sorted(ana.meters.values_list("serial", flat=True)) == ["SN-A1", "SN-A2"]
    assert Meter.objects.get(serial="SN-A1").max_power_kw == Decimal("25.000")
    assert Meter.objects.get(serial="SN-A2").max_power_kw == Decimal("30.000")  # the default
    # Madrid's today, from its first hour (CET: 23:00 UTC the day before).
    assert ana.tariff_since == datetime(2026, 3, 9, 23, tzinfo=UTC)
    carl = Household.objects.get(user__email="carl@example.com")
    assert not carl.meters.exists() and carl.region == "peninsula"


def test_the_import_is_one_audit_entry_with_counts(staff_client, staff_user, tariff):
    preview = upload(staff_client, csv_file(*GOOD))
    known = set(LogEntry.objects.values_list("pk", flat=True))
    confirm(staff_client, preview)
    entries = LogEntry.objects.exclude(pk__in=known)  # not one per user, household, assignment, wallet or meter
    assert entries.count() == 1
    entry = entries.get()
    assert entry.actor == staff_user
    assert entry.additional_data["action"] == "onboarding.import"
    assert (entry.additional_data["households"], entry.additional_data["meters"]) == (3, 3)


def test_the_standing_charge_accrues_from_the_contract_start_as_for_a_household_made_by_hand(staff_client, tariff):
    TariffVersion.objects.filter(tariff=tariff).update(standing_charge_per_day=Decimal("0.48"))
    confirm(staff_client, upload(staff_client, csv_file("d@example.com,D,,UTC,,Flat 0.25,2026-03-09,,,")))
    household = Household.objects.get()
    lines = HourlyUsage.objects.filter(household=household, kind=HourlyUsage.Kind.STANDING)
    # From 2026-03-09 00:00 UTC up to the job's mark, 09:00 on the 10th: 33 hours of 0.02 EUR.
    assert lines.count() == 33
    assert {line.cost_eur for line in lines} == {Decimal("0.020000")}
    assert household.usage_version > 0  # the chart's cache sees the new lines


def test_a_conflict_at_confirmation_writes_nothing(staff_client, tariff):
    preview = upload(staff_client, csv_file(*GOOD))
    User.objects.create_user("carl@example.com", "pw-unused-123")  # registered by someone else meanwhile
    before = written()
    response = confirm(staff_client, preview)
    assert response.status_code == 409
    assert "carl@example.com already has an account" in page_text(response)
    assert written() == before
    assert not ImportBatch.objects.exists()
    assert not LogEntry.objects.filter(additional_data__action__startswith="onboarding.").exists()


def test_an_xlsx_file_imports_like_a_csv(staff_client, tariff):
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(HEADER.split(","))
    sheet.append(["x@example.com", "Casa X", None, "Europe/Madrid", None, "Flat 0.25", None, "SN-X", 12.5, None])
    out = io.BytesIO()
    book.save(out)
    response = confirm(staff_client, upload(staff_client, out.getvalue(), name="pilot.xlsx", fmt="1"))
    assert response.status_code == 302
    assert Meter.objects.get(serial="SN-X").max_power_kw == Decimal("12.500")


# --- Files that cannot be imported --------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (csv_file("é@example.com,Casa é,,Europe/Madrid,,Flat 0.25,,,,").decode().encode("latin-1"), "not UTF-8 text"),
        (csv_file("a@example.com,A", header="email,name"), "missing required column(s): timezone, tariff"),
        (csv_file("a@example.com,A,UTC,Flat 0.25,x", header="email,name,timezone,tariff,serail"), "unknown column"),
        (csv_file(header=HEADER), "No valid data to import"),
        (b"email,name,timezone,tariff\na@example.com,A,UTC,Flat 0.25,extra,cells\n", "could not be read"),
    ],
)
def test_malformed_files_get_a_clear_error_and_write_nothing(staff_client, tariff, content, message):
    before = written()
    response = upload(staff_client, content)
    assert response.status_code == 200
    assert message in page_text(response)
    assert 'name="import_file_name"' not in response.content.decode()
    assert written() == before


def test_a_file_over_the_row_limit_is_refused_whole(staff_client, tariff):
    rows = [f"h{n}@example.com,H{n},,UTC,,Flat 0.25,,S{n},," for n in range(100_000)]
    response = upload(staff_client, csv_file(*rows))
    assert "The file has 100,000 rows; at most 10,000 are imported at once" in page_text(response)
    assert not Household.objects.exists()


def test_a_file_over_the_byte_limit_is_refused_unread(staff_client, tariff, settings):
    settings.ONBOARDING_MAX_BYTES = 2048
    response = upload(staff_client, csv_file(*GOOD * 20))
    assert "The file is larger than" in page_text(response)
    assert not Household.objects.exists()


# --- The tokens: issued once, into one download ------------------------------------------------


def download(client: Client, batch: ImportBatch):
    return client.post(reverse("admin:onboarding_importbatch_tokens", args=[batch.pk]))


def test_the_tokens_download_once_and_work_and_only_their_hashes_are_kept(staff_client, tariff, caplog):
    caplog.set_level(logging.DEBUG)
    confirm(staff_client, upload(staff_client, csv_file(*GOOD)))
    batch = ImportBatch.objects.get()
    page = staff_client.get(reverse("admin:onboarding_importbatch_change", args=[batch.pk]))
    assert "Download the meter tokens (once)" in page.content.decode()

    response = download(staff_client, batch)
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert response["Content-Disposition"].startswith("attachment")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["serial", "token"]
    tokens = dict(rows[1:])
    assert sorted(tokens) == ["SN-A1", "SN-A2", "SN-B1"]
    for serial, token in tokens.items():
        assert Meter.for_token(token).serial == serial  # the token works at ingest
        assert token not in Meter.objects.get(serial=serial).token_hash

    again = download(staff_client, batch)
    assert again.status_code == 410
    assert "were downloaded at" in again.content.decode()
    page = staff_client.get(reverse("admin:onboarding_importbatch_change", args=[batch.pk]))
    assert "Download the meter tokens" not in page.content.decode()

    # Never in the audit trail, never in a log line.
    trail = " ".join(str(entry.changes) + str(entry.additional_data) for entry in LogEntry.objects.all())
    everything_logged = caplog.text
    for token in tokens.values():
        assert token not in trail and token not in everything_logged
    issued = LogEntry.objects.get(additional_data__action="onboarding.issue_tokens")
    assert issued.additional_data["meters"] == 3


def test_only_the_importer_may_download_and_only_for_a_while(staff_client, tariff):
    confirm(staff_client, upload(staff_client, csv_file(*GOOD)))
    batch = ImportBatch.objects.get()
    colleague = User.objects.create_user("colleague@example.com", "pw-unused-123", is_staff=True, is_superuser=True)
    response = download(login_with_second_factor(Client(), colleague), batch)
    assert response.status_code == 410 and "Only the staff member who ran the import" in response.content.decode()
    with time_machine.travel(NOW + timedelta(minutes=61), tick=False):
        late = download(staff_client, batch)
    assert late.status_code == 410 and "available for 60 minutes" in late.content.decode()
    assert not Meter.objects.filter(token_hash__isnull=False).exists()
    assert staff_client.get(reverse("admin:onboarding_importbatch_tokens", args=[batch.pk])).status_code == 405


# --- Export and permissions ---------------------------------------------------------------------


def test_export_writes_the_import_columns_and_no_secret(staff_client, tariff, make_meter):
    meter, token = make_meter()
    response = staff_client.post(EXPORT_URL, {"format": "0", "resource": "0"})
    assert response.status_code == 200
    body = response.content.decode()
    rows = list(csv.DictReader(io.StringIO(body.lstrip("\ufeff"))))
    assert list(rows[0]) == HEADER.split(",")
    household = meter.household
    assert rows[0]["email"] == household.user.email and rows[0]["serial"] == meter.serial
    assert rows[0]["tariff"] == "Flat 0.25" and rows[0]["max_power_kw"] == "30.000"
    for secret in (token, meter.token_hash, household.user.password):
        assert secret not in body


def test_the_export_imports_back(staff_client, tariff):
    confirm(staff_client, upload(staff_client, csv_file(*GOOD)))
    exported = staff_client.post(EXPORT_URL, {"format": "0", "resource": "0"}).content
    Meter.objects.all().delete()
    for household in Household.objects.all():
        TariffAssignment.objects.filter(household=household).delete()
    Wallet.objects.all().delete()
    Household.objects.all().delete()
    User.objects.filter(is_staff=False).delete()
    response = confirm(staff_client, upload(staff_client, exported))
    assert response.status_code == 302
    assert Household.objects.count() == 3 and Meter.objects.count() == 3


def test_households_and_staff_without_the_permissions_cannot_import(household_client, tariff, db):
    assert household_client.get(IMPORT_URL).status_code == 302  # to the admin's login
    clerk = User.objects.create_user("clerk@example.com", "pw-unused-123", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_household"))
    browser = login_with_second_factor(Client(), clerk)
    before = written()
    assert browser.get(IMPORT_URL).status_code == 403
    assert upload(browser, csv_file(*GOOD)).status_code == 403
    assert written() == before
