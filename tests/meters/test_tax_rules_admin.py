"""Tax rules in the admin: history keeps its rates, and two rules of one tax never tax the same line."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.urls import reverse

from meters.models import Tariff, TaxRule
from tests.meters.taxkit import IEE, rule

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)  # 10:30 in Madrid: 20 November has begun, the 21st has not
ADD = reverse("admin:meters_taxrule_add")

pytestmark = pytest.mark.time_machine(NOW, tick=False)


def change(pk: int) -> str:
    return reverse("admin:meters_taxrule_change", args=[pk])


def form(**fields) -> dict:
    data = {
        "tax": "iva",
        "name": "IVA 21%",
        "rate": "0.21",
        "kinds": ["energy", "standing"],
        "compound": "on",
        "region": "peninsula",
        "valid_from": "2026-11-21",
        "valid_to": "",
    }
    data.update(fields)
    return {name: value for name, value in data.items() if value is not None}


def errors(response) -> str:
    return str(response.context["adminform"].form.errors) if response.context else ""


@pytest.fixture(autouse=True)
def madrid(household):
    """A household in Madrid: its days decide which days have begun."""
    return household


@pytest.fixture
def vat(db) -> TaxRule:
    """VAT 21% in force since 2020 (it has priced days)."""
    return rule("iva", "0.21", compound=True, name="IVA 21%")


def test_staff_add_a_rule_from_a_day_that_has_not_begun(staff_client):
    revisions = set(Tariff.objects.values_list("revision", flat=True))

    response = staff_client.post(ADD, form())

    assert response.status_code == 302, errors(response)
    saved = TaxRule.objects.get()
    assert (saved.rate, saved.kinds, saved.compound, saved.valid_from) == (
        Decimal("0.21"),
        ["energy", "standing"],
        True,
        date(2026, 11, 21),
    )
    # Pricing caches rules per tariff revision: every tariff got a new one.
    assert revisions.isdisjoint(Tariff.objects.values_list("revision", flat=True))


@pytest.mark.parametrize("day", ["2026-11-20", "2026-01-01"])
def test_a_rule_for_a_day_that_has_begun_is_refused_and_nothing_is_saved(staff_client, day):
    response = staff_client.post(ADD, form(valid_from=day))

    assert response.status_code == 200
    assert "a change may only reach days from 2026-11-21 on" in errors(response)
    assert not TaxRule.objects.exists()


def test_a_rule_of_the_same_tax_over_the_same_days_is_refused(staff_client, vat):
    response = staff_client.post(ADD, form(name="IVA 10%", rate="0.10", valid_from="2027-01-01"))

    assert response.status_code == 200
    assert "already applies to some of these lines on some of these days" in errors(response)
    assert "IVA 21% from 2020-01-01" in errors(response)
    assert TaxRule.objects.count() == 1


def test_a_new_rate_from_a_date_is_the_old_rule_ended_the_day_before_and_a_new_rule(staff_client, vat):
    ended = staff_client.post(change(vat.pk), form(valid_from="2020-01-01", valid_to="2026-12-31"))
    added = staff_client.post(ADD, form(name="IVA 10%", rate="0.10", valid_from="2027-01-01"))

    assert (ended.status_code, added.status_code) == (302, 302), errors(ended) + errors(added)
    assert list(TaxRule.objects.order_by("valid_from").values_list("rate", "valid_from", "valid_to")) == [
        (Decimal("0.2100000000"), date(2020, 1, 1), date(2026, 12, 31)),
        (Decimal("0.1000000000"), date(2027, 1, 1), None),
    ]


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"region": ""}, id="every region overlaps the peninsula"),
        pytest.param({"kinds": ["standing"], "valid_from": "2027-01-01"}, id="a shared kind of line"),
    ],
)
def test_overlap_counts_every_line_both_could_tax(staff_client, vat, fields):
    response = staff_client.post(ADD, form(**{"valid_from": "2027-01-01", **fields}))
    assert "already applies" in errors(response)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"region": "canarias", "tax": "iva"}, id="another region"),
        pytest.param({"tax": "iee", "compound": None, "rate": str(IEE)}, id="another tax"),
    ],
)
def test_rules_that_cannot_tax_the_same_line_live_side_by_side(staff_client, vat, fields):
    response = staff_client.post(ADD, form(valid_from="2027-01-01", **fields))
    assert response.status_code == 302, errors(response)


def test_rules_for_different_tariffs_do_not_overlap_but_one_for_every_tariff_does(staff_client, vat, make_household):
    social, market = Tariff.objects.create(name="Social"), Tariff.objects.create(name="Market")
    vat.valid_to = date(2026, 12, 31)
    vat.save()
    one = staff_client.post(ADD, form(valid_from="2027-01-01", tariffs=[social.pk], rate="0.05", name="IVA 5%"))
    other = staff_client.post(ADD, form(valid_from="2027-01-01", tariffs=[market.pk]))
    every = staff_client.post(ADD, form(valid_from="2027-06-01", name="IVA 10%", rate="0.10"))

    assert (one.status_code, other.status_code) == (302, 302), errors(one) + errors(other)
    assert "already applies" in errors(every)


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"rate": "0.10"}, id="its rate"),
        pytest.param({"kinds": ["energy"]}, id="what it taxes"),
        pytest.param({"compound": None}, id="its base"),
        pytest.param({"valid_from": "2021-01-01"}, id="its first day"),
        pytest.param({"valid_to": "2026-11-19"}, id="an end in the past"),
    ],
)
def test_a_rule_that_priced_days_keeps_them(staff_client, vat, fields):
    response = staff_client.post(change(vat.pk), form(**{"valid_from": "2020-01-01", **fields}))

    assert response.status_code == 200
    assert "may already be priced or paid with this rule as it was" in errors(response)
    vat.refresh_from_db()
    assert (vat.rate, vat.kinds, vat.compound, vat.valid_from, vat.valid_to) == (
        Decimal("0.21"),
        ["energy", "standing"],
        True,
        date(2020, 1, 1),
        None,
    )


def test_a_rule_may_be_ended_today_renamed_and_a_future_rule_changed_at_will(staff_client, vat):
    """Ending a rule today changes tomorrow's taxes only: tomorrow has not begun anywhere."""
    renamed = staff_client.post(
        change(vat.pk), form(valid_from="2020-01-01", valid_to="2026-11-20", name="IVA general")
    )
    future = rule("igic", "0.03", region="canarias", valid_from=date(2027, 1, 1))
    changed = staff_client.post(
        change(future.pk), form(tax="igic", region="canarias", rate="0.07", valid_from="2027-02-01", compound=None)
    )

    assert (renamed.status_code, changed.status_code) == (302, 302), errors(renamed) + errors(changed)
    future.refresh_from_db()
    assert (future.rate, future.valid_from) == (Decimal("0.07"), date(2027, 2, 1))
    vat.refresh_from_db()
    assert (vat.name, vat.valid_to) == ("IVA general", date(2026, 11, 20))


def test_a_rule_that_priced_days_cannot_be_deleted_but_a_future_one_can(staff_client, vat):
    future = rule("igic", "0.03", region="canarias", valid_from=date(2027, 1, 1))

    refused = staff_client.post(reverse("admin:meters_taxrule_delete", args=[vat.pk]), {"post": "yes"})
    deleted = staff_client.post(reverse("admin:meters_taxrule_delete", args=[future.pk]), {"post": "yes"})

    assert (refused.status_code, deleted.status_code) == (403, 302)
    assert list(TaxRule.objects.all()) == [vat]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"rate": "21"}, "between 0 and 1", id="a percentage typed as the rate"),
        pytest.param({"rate": "NaN"}, "Enter a number", id="not a number"),
        pytest.param({"rate": "0.00000000001"}, "decimal places", id="more than 10 decimals"),
        pytest.param({"kinds": []}, "required", id="taxing nothing"),
        pytest.param({"kinds": ["excess_power"]}, "not one of the available choices", id="an unknown kind"),
        pytest.param({"valid_to": "2026-11-01"}, "cannot come before", id="ending before it starts"),
        pytest.param({"tax": "IVA 21%"}, "slug", id="a tax code with spaces"),
    ],
)
def test_bad_input_gets_a_clear_error_and_saves_nothing(staff_client, fields, message):
    response = staff_client.post(ADD, form(**fields))

    assert response.status_code == 200
    assert message in errors(response)
    assert not TaxRule.objects.exists()


def test_the_rule_list_says_what_each_rule_taxes(staff_client, vat):
    page = staff_client.get(reverse("admin:meters_taxrule_changelist")).content.decode()
    assert "Energy, Standing charge" in page and "every tariff" in page


def test_staff_add_a_reduced_vat_rate_up_to_10_kw_beside_full_vat_and_see_its_limit_in_the_list(staff_client, vat):
    response = staff_client.post(ADD, form(name="IVA 10%", rate="0.10", max_contracted_kw="10"))

    assert response.status_code == 302, errors(response)
    reduced = TaxRule.objects.get(name="IVA 10%")
    assert reduced.max_contracted_kw == Decimal("10") and reduced.minimum_eur_per_mwh is None
    listing = staff_client.get(reverse("admin:meters_taxrule_changelist")).content.decode()
    assert "only up to contracted power" in listing.lower()


def test_a_second_reduced_rate_with_the_same_limit_is_refused_and_nothing_saved(staff_client, vat):
    rule("iva", "0.10", compound=True, name="IVA 10%", max_contracted_kw=Decimal("10"))

    response = staff_client.post(ADD, form(name="IVA 5%", rate="0.05", max_contracted_kw="10"))

    assert response.status_code == 200 and "IVA 10%" in errors(response)
    assert not TaxRule.objects.filter(name="IVA 5%").exists()


def test_a_minimum_per_mwh_reaching_priced_days_is_refused_like_a_rate(staff_client):
    iee = rule("iee", IEE, name="Impuesto especial sobre la electricidad")
    data = form(tax="iee", name=iee.name, rate=str(IEE), compound=None, valid_from="2020-01-01")
    data["minimum_eur_per_mwh"] = "1"

    response = staff_client.post(change(iee.pk), data)

    assert response.status_code == 200 and "may already be priced" in errors(response)
    iee.refresh_from_db()
    assert iee.minimum_eur_per_mwh is None
