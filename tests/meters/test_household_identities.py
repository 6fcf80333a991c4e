"""The account holder's tax ID (NIF/NIE/DNI) and the supply point (CUPS) on a household: checked with
python-stdnum, stored compact, and a wrong control character is a clear admin error with nothing saved."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from meters.models import Household

GOOD_CUPS = "ES0021000000000001RK"  # the control letters of ES0021000000000001 are RK


def household_form(household: Household, **changes) -> dict:
    data = {
        "user": household.user_id,
        "name": household.name,
        "address": household.address,
        "tax_id": household.tax_id,
        "cups": household.cups,
        "timezone": household.timezone,
        "region": household.region,
        "language": household.language,
        "tariff": household.tariff_id,
    }
    for inline in ("meters", "tariff_assignments"):
        data |= {f"{inline}-TOTAL_FORMS": "0", f"{inline}-INITIAL_FORMS": "0", f"{inline}-MIN_NUM_FORMS": "0"}
        data[f"{inline}-MAX_NUM_FORMS"] = "1000"
    return data | changes


@pytest.mark.parametrize(
    ("tax_id", "stored"),
    [
        ("12345678Z", "12345678Z"),  # DNI: 12345678 mod 23 = 14, letter Z
        ("12345678-z", "12345678Z"),  # typed with a dash, lower case
        ("X1234567L", "X1234567L"),  # NIE: X counts as 0, 01234567 mod 23 = 19, letter L
        ("B12345674", "B12345674"),  # a company NIF, its control digit 4
    ],
)
def test_a_valid_tax_id_is_stored_compact(household, tax_id, stored):
    household.tax_id = tax_id
    household.full_clean()
    assert household.tax_id == stored


@pytest.mark.parametrize(
    ("tax_id", "message"),
    [
        ("12345678A", "the control character is wrong"),
        ("X1234567A", "the control character is wrong"),
        ("1234", "is not a Spanish tax ID"),
        ("ABCDEFGHI", "is not a Spanish tax ID"),
    ],
)
def test_a_wrong_tax_id_is_refused(household, tax_id, message):
    household.tax_id = tax_id
    with pytest.raises(ValidationError) as refused:
        household.full_clean()
    assert message in refused.value.message_dict["tax_id"][0]


@pytest.mark.parametrize(
    ("cups", "message"),
    [
        ("ES0021000000000001JN", "the two control letters do not match"),
        ("ES0021000000000001", "is not a CUPS"),
        ("FR0021000000000001RK", "is not a CUPS"),
        ("ES00210000000000010000", "is not a CUPS"),
    ],
)
def test_a_wrong_cups_is_refused(household, cups, message):
    household.cups = cups
    with pytest.raises(ValidationError) as refused:
        household.full_clean()
    assert message in refused.value.message_dict["cups"][0]


def test_a_valid_cups_with_border_point_and_type_is_stored_compact(household):
    household.cups = "es 0021 0000 0000 0001 rk 0f"
    household.full_clean()
    assert household.cups == "ES0021000000000001RK0F"


def test_staff_see_a_clear_error_for_a_wrong_control_letter_and_nothing_is_saved(staff_client, household):
    url = reverse("admin:meters_household_change", args=[household.pk])
    response = staff_client.post(
        url, household_form(household, name="Casa Nueva", tax_id="12345678A", cups="ES0021000000000001JN")
    )
    assert response.status_code == 200
    page = response.content.decode()
    assert "the control character is wrong" in page
    assert "the two control letters do not match" in page
    before = household.name
    household.refresh_from_db()
    assert (household.name, household.tax_id, household.cups) == (before, "", "")


def test_staff_save_a_valid_tax_id_and_cups(staff_client, household):
    url = reverse("admin:meters_household_change", args=[household.pk])
    response = staff_client.post(url, household_form(household, tax_id="x1234567l", cups=GOOD_CUPS))
    assert response.status_code == 302, response.content.decode()[:2000]
    household.refresh_from_db()
    assert (household.tax_id, household.cups) == ("X1234567L", GOOD_CUPS)


def test_the_add_form_asks_for_both(staff_client):
    page = staff_client.get(reverse("admin:meters_household_add")).content.decode()
    assert 'name="tax_id"' in page and 'name="cups"' in page
