"""The bill a Spanish household on 2.0TD receives (issue 18 item 7): its page and its PDF show the supply (CUPS,
access tariff, contracted power, distributor and fault phone), the readings, kWh and the energy term per period,
the power term per period (kW x days x price), the tolls and charges inside them, where the money goes, 14 months
of consumption, the CNMC comparator's QR and link, and the year's disclosure staff maintain, as it was at issue.

November 2026 in Madrid: 30 days, no DST change, 1 November a Sunday, so 21 working days and 9 weekend days.
One kWh every hour: P1 = 21 x 8 = 168 kWh, P2 = 21 x 8 = 168 kWh, P3 = 21 x 8 + 9 x 24 = 384 kWh (720 in all).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.urls import reverse
from django.utils import translation

from meters.admin import TariffVersionForm
from meters.contracts import set_contracted_power, start_contract
from meters.demo import IEE_KINDS, VAT_KINDS
from meters.models import HourlyUsage, Household, Meter, Region, TariffVersion
from meters.standing import accrue_standing_charges
from payments.statements import rendering
from payments.statements.issuing import issue_households
from payments.statements.models import BillDisclosure, Distributor, Statement
from tests.meters.taxkit import IEE, mark, rule
from tests.meters.test_periods_tariffs import POWER, PRICES, two_td
from tests.payments.statements import kit

NOVEMBER_START = kit.OCTOBER_END  # 1 November 00:00 CET
AFTER_NOVEMBER = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
CUPS = "ES0021000000000001JN"  # a valid CUPS of distributor code 0021 (tests/meters/test_household_identities.py)
COMPONENTS = {
    "energy_tolls": {"P1": "0.030000", "P2": "0.020000", "P3": "0.003000"},
    "energy_charges": {"P1": "0.040000", "P2": "0.008000", "P3": "0.002000"},
    "power_tolls": {"P1": "0.060000", "P2": "0.001500"},
    "power_charges": {"P1": "0.008000", "P2": "0.000300"},
}
MIX = {
    "mix_renewable": "50.50",
    "mix_high_efficiency_cogeneration": "2.00",
    "mix_cogeneration": "5.00",
    "mix_combined_cycle": "15.00",
    "mix_coal": "1.50",
    "mix_fuel_gas": "1.00",
    "mix_nuclear": "20.00",
    "mix_other": "5.00",
}
# A month of fixed charges accrued hour by hour (meters/standing.py) takes a while on a busy machine.
pytestmark = pytest.mark.timeout(600)
needs_tools = pytest.mark.skipif(
    not (shutil.which("pdftoppm") and shutil.which("zbarimg") and shutil.which("pdftotext")),
    reason="poppler-utils and zbar-tools read the printed PDF",
)


def disclosure(**fields) -> BillDisclosure:
    made = BillDisclosure(
        year=2025,
        valid_from=date(2026, 6, 1),
        co2_g_per_kwh=Decimal("98.50"),
        radioactive_waste_mg_per_kwh=Decimal("0.2100"),
        source_note="CNMC, etiquetado de la electricidad 2025",
        switching_text="Cambiar de comercializadora es gratuito: la nueva se encarga de todo.",
        claims_text="Reclamaciones: 900 000 000, reclamaciones@example.com.",
        odr_text="Resolución extrajudicial: Junta Arbitral de Consumo.",
        bono_social_text="Si cumple los requisitos, puede pedir el bono social a su comercializadora de referencia.",
        **{name: Decimal(value) for name, value in MIX.items()},
        **fields,
    )
    made.full_clean()
    made.save()
    return made


@pytest.fixture
def statement(request, make_household, make_meter) -> Statement:
    kw = getattr(request, "param", "4.6")  # contracted in P1 and P2
    tariff = two_td(**COMPONENTS)
    household = make_household(tariff=tariff)
    Household.objects.filter(pk=household.pk).update(
        created_at=kit.LONG_AGO, region=Region.PENINSULA, cups=CUPS, language="es"
    )
    household.refresh_from_db()
    Distributor.objects.create(code="0021", name="Distribuidora de Prueba", fault_phone="900 111 222")
    disclosure()
    rule("iee", IEE, kinds=IEE_KINDS, name="Impuesto especial sobre la electricidad")
    rule("iva", "0.21", compound=True, kinds=VAT_KINDS, name="IVA 21%")
    mark(NOVEMBER_START)
    start_contract(household.pk, NOVEMBER_START)
    set_contracted_power(household.pk, {"P1": kw, "P2": kw}, NOVEMBER_START, now=NOVEMBER_START)
    meter, _ = make_meter(household)
    Meter.objects.filter(pk=meter.pk).update(rental_per_day=Decimal("0.026630"))
    meter.refresh_from_db()
    # Earlier months, as ledger lines: 100 kWh in October 2025 (the history's first month), 50 in September
    # 2025 (before it), 310.5 in October 2026.
    version = tariff.versions.get()
    for hour, kwh in (
        (datetime(2025, 10, 15, 10, tzinfo=UTC), "100"),
        (datetime(2025, 9, 15, 10, tzinfo=UTC), "50"),
        (datetime(2026, 10, 15, 10, tzinfo=UTC), "310.5"),
    ):
        HourlyUsage.objects.create(
            household=household,
            meter=meter,
            hour_start=hour,
            kwh=Decimal(kwh),
            tariff_version=version,
            rate=Decimal("0.1"),
            cost_eur=Decimal(kwh) / 10,
            tax_eur=Decimal("0"),
            settled_at=hour,
        )
    # Two readings a month apart: ingest spreads the 720 kWh over the 720 hours in proportion to time, 1 kWh each,
    # and prices each hour at its period's price.
    kit.reading(meter, NOVEMBER_START, Decimal("1745"), kit.NOVEMBER_END)
    kit.reading(meter, kit.NOVEMBER_END, Decimal("2465"), kit.NOVEMBER_END)
    accrue_standing_charges(kit.NOVEMBER_END)
    assert issue_households([household.pk], kit.NOVEMBER, now=AFTER_NOVEMBER)["issued"] == 1
    return Statement.objects.get(household=household, month=kit.NOVEMBER)


@pytest.mark.parametrize("statement", ["3.9"], indirect=True)
def test_the_power_term_per_period_adds_up_to_the_statements_power_line(statement):
    # 3.9 kW x 30 days: P1 x 0.073777 = 8.631909 and P2 x 0.001911 = 0.223587, 8.855496 in all. Rounded one
    # by one, 8.63 + 0.22 = 8.85 under a power line of 8.86; rounded as a table, the larger remainder (P2's)
    # takes the cent: 8.63 + 0.23.
    assert [row["amount"] for row in statement.bill["power"]] == ["8.63", "0.23"]
    assert statement.lines.get(kind="power").amount_eur == Decimal("8.86")


def test_the_bill_works_out_each_period_by_hand(statement):
    bill = statement.bill
    assert bill["access_tariff"] == "2.0TD" and bill["cups"] == CUPS and bill["days"] == 30
    assert bill["distributor"] == {"code": "0021", "name": "Distribuidora de Prueba", "fault_phone": "900 111 222"}
    assert bill["contracted_power"] == [{"from": "2026-11-01", "kw": {"P1": "4.6", "P2": "4.6"}}]
    # Energy: kWh x the period's price (0.254321, 0.176543, 0.101234).
    assert [(row["period"], row["kwh"], row["amount"]) for row in bill["energy"]] == [
        ("P1", "168.000", "42.73"),  # 168 x 0.254321 = 42.725928
        ("P2", "168.000", "29.66"),  # 168 x 0.176543 = 29.659224
        ("P3", "384.000", "38.87"),  # 384 x 0.101234 = 38.873856
    ]
    # Power: kW x days x price.
    assert [(row["period"], row["kw"], row["days"], row["price"], row["amount"]) for row in bill["power"]] == [
        ("P1", "4.6", "30.000000", "0.073777", "10.18"),  # 4.6 x 30 x 0.073777 = 10.181226
        ("P2", "4.6", "30.000000", "0.001911", "0.26"),  # 4.6 x 30 x 0.001911 = 0.263718
    ]
    # Tolls: 168 x 0.03 + 168 x 0.02 + 384 x 0.003 + 4.6 x 30 x 0.06 + 4.6 x 30 x 0.0015
    #      = 5.04 + 3.36 + 1.152 + 8.28 + 0.207 = 18.039
    # Charges: 168 x 0.04 + 168 x 0.008 + 384 x 0.002 + 4.6 x 30 x 0.008 + 4.6 x 30 x 0.0003
    #      = 6.72 + 1.344 + 0.768 + 1.104 + 0.0414 = 9.9774
    assert (bill["tolls_eur"], bill["charges_eur"]) == ("18.04", "9.98")
    # The meter's register: 1745 at 1 November 00:00, + 720 in November, both read on the instant.
    assert bill["readings"] == [
        {
            "meter": statement.household.meters.get().serial,
            "start": {"kwh": "1745.000", "real": True},
            "end": {"kwh": "2465.000", "real": True},
            "kwh": "720.000",
        }
    ]
    lines = {line.kind: line.amount_eur for line in statement.lines.exclude(kind="tax")}
    # The statement's own lines: energy 42.73 + 29.66 + 38.87 = 111.26; power 31 ... 30 x 0.348165 = 10.44495.
    assert statement.lines.filter(kind="energy").count() == 3 and lines["power"] == Decimal("10.44")
    assert lines["rental"] == Decimal("0.80")  # 30 x 0.026630 = 0.7989
    money = {row["what"]: row["eur"] for row in bill["money"]}
    # Energy and power terms 111.26 + 10.44 = 121.70, less tolls and charges: 121.70 - 18.04 - 9.98 = 93.68.
    # Electricity tax on 111.259008 + 10.444950 = 121.703958: 6.22235378... -> 6.22; VAT 21% on 121.703958 +
    # 6.22235378 + 0.7989 (rental) = 128.72521178... -> 27.03. Taxes 33.25.
    # The lines make 111.26 + 10.44 + 0.80 + 33.25 = 155.75; the ledger 155.7575... -> 155.76: rounding 0.01.
    assert money == {
        "energy": "93.68",
        "tolls": "18.04",
        "charges": "9.98",
        "rental": "0.80",
        "taxes": "33.25",
        "rounding": "0.01",
    }
    assert statement.tax_eur == Decimal("33.25") and statement.total_eur == Decimal("155.76")
    assert sum(Decimal(value) for value in money.values()) == statement.total_eur
    # 14 months: October 2025 to November 2026; September 2025 is before them.
    history = bill["history"]
    assert len(history) == 14 and history[0]["month"] == "2025-10-01" and history[-1]["month"] == "2026-11-01"
    assert history[0]["kwh"] == "100.000"
    assert [month["kwh"] for month in history[-2:]] == ["310.500", "720.000"]
    assert all(month["kwh"] == "0.000" for month in history[1:-2])
    assert bill["average_daily_kwh"] == "24.00"  # 720 kWh / 30 days
    assert bill["comparator_url"] == "https://comparador.cnmc.gob.es"


def page_text(client, statement: Statement) -> str:
    """The household's page of the statement, its no-break spaces as spaces."""
    client.force_login(statement.household.user)
    page = client.get(reverse("statement-detail", args=[statement.pk])).content.decode()
    return page.replace("\xa0", " ").replace("&nbsp;", " ")


def test_the_page_shows_each_section_in_spanish(client, statement):
    page = page_text(client, statement)
    for text in (
        'id="bill-supply"',
        CUPS,
        "2.0TD",
        "P1 4,6 kW, P2 4,6 kW",
        "Distribuidora de Prueba. Averías: 900 111 222",
        "1.745,000 kWh<br>(real)",
        "Término de energía por periodo",
        "42,73",
        "4,6 kW x 30 días x 0,073777 €/kW/día",
        "10,18",
        "18,04 €",
        "9,98 €",
        "son peajes de transporte y distribución",
        "son cargos del sistema",
        "Adónde va el dinero de tu factura",
        "93,68",
        "Tu consumo en los últimos 14 meses",
        "noviembre 2026",
        "octubre 2025",
        "Uso medio diario en este periodo: 24,00 kWh (30 días).",
        "https://comparador.cnmc.gob.es",
        "Cambiar de comercializadora es gratuito",
        "Reclamaciones: 900 000 000",
        "Junta Arbitral de Consumo",
        "bono social a su comercializadora",
        "Renovable",
        "50,50 %",
        "98,50 g/kWh",
        "0,2100 mg/kWh",
    ):
        assert text in page, text
    assert page.count('class="history-month"') == 14


@needs_tools
def test_the_pdf_has_the_sections_and_a_qr_for_the_comparator(statement, tmp_path):
    (tmp_path / "bill.pdf").write_bytes(rendering.pdf_bytes(statement))
    text = subprocess.run(
        ["pdftotext", "-layout", "bill.pdf", "-"], cwd=tmp_path, capture_output=True, text=True, check=True
    ).stdout
    flat = " ".join(text.split())
    for wanted in (
        CUPS,
        "Peaje de acceso 2.0TD",
        "Distribuidora de Prueba. Averías: 900 111 222",
        "4,6 kW x 30 días x 0,073777 €/kW/día 10,18 €",
        "4,6 kW x 30 días x 0,001911 €/kW/día 0,26 €",
        "P1 168,000 kWh 0,254321 €/kWh 42,73 €",
        "18,04 €",
        "9,98 €",
        "Tu consumo en los últimos 14 meses",
        "24,00 kWh",
        "https://comparador.cnmc.gob.es",
        "Junta Arbitral de Consumo",
        "Nuclear 20,00 %",
        "98,50 g/kWh",
    ):
        assert wanted in flat, wanted
    subprocess.run(["pdftoppm", "-r", "200", "-png", "bill.pdf", "page"], cwd=tmp_path, check=True, timeout=120)
    decoded = []
    for page in sorted(tmp_path.glob("page*.png")):
        run = subprocess.run(["zbarimg", "--quiet", "--raw", str(page)], capture_output=True, text=True, timeout=60)
        decoded += run.stdout.split()
    assert "https://comparador.cnmc.gob.es" in decoded


def test_the_disclosure_edited_later_leaves_the_issued_bill_as_it_was(client, statement):
    BillDisclosure.objects.update(mix_renewable=Decimal("40.50"), mix_nuclear=Decimal("30.00"))
    Distributor.objects.update(fault_phone="900 999 999")
    TariffVersion.objects.update(energy_tolls={"P1": "0.01", "P2": "0.01", "P3": "0.001"})
    statement = Statement.objects.get(pk=statement.pk)
    assert statement.bill["disclosure"]["mix"]["renewable"] == "50.50"
    page = page_text(client, statement)
    assert "50,50 %" in page and "40,50 %" not in page
    assert "900 111 222" in page and "900 999 999" not in page
    assert "18,04 €" in page


def test_a_household_on_a_band_tariff_keeps_the_statement_it_had(make_household, make_meter):
    household = make_household(tariff=kit.tou_tariff())
    kit.contracted_long_ago(household)
    meter, _ = make_meter(household)
    kit.feed(meter, NOVEMBER_START, kit.NOVEMBER_END)
    assert issue_households([household.pk], kit.NOVEMBER, now=AFTER_NOVEMBER)["issued"] == 1
    statement = Statement.objects.get(household=household)
    assert statement.bill == {}
    assert 'id="statement-spain-bill"' not in rendering.render_to_string(
        "statements/_document.html", rendering.document_context(statement)
    )


def test_a_mix_that_does_not_add_up_to_100_is_refused_and_nothing_is_saved(staff_client, db):
    data = {
        "year": "2025",
        "valid_from": "2026-06-01",
        "co2_g_per_kwh": "98.5",
        "radioactive_waste_mg_per_kwh": "0.21",
        "switching_text": "x",
        "claims_text": "x",
        "odr_text": "x",
        "bono_social_text": "x",
        **MIX,
        "mix_nuclear": "25.00",  # 105 in all
    }
    response = staff_client.post(reverse("admin:statements_billdisclosure_add"), data)
    assert response.status_code == 200
    assert "The mix adds up to 105.00%: its sources must add up to exactly 100%." in response.content.decode()
    assert not BillDisclosure.objects.exists()
    data["mix_nuclear"] = "20.00"
    response = staff_client.post(reverse("admin:statements_billdisclosure_add"), data)
    assert response.status_code == 302 and BillDisclosure.objects.count() == 1


def version_form(**components) -> TariffVersionForm:
    tariff = two_td()
    return TariffVersionForm(
        data={
            "tariff": tariff.pk,
            "valid_from": "2027-01-01 00:00:00",
            "kind": "periods",
            "flat_rate": "",
            "standing_charge_per_day": "0",
            "bands": "[]",
            "calendar": "2.0TD",
            "period_rates": json.dumps(PRICES),
            "power_rates": json.dumps(POWER),
            **{name: json.dumps(value) for name, value in {**COMPONENTS, **components}.items()},
        }
    )


def test_a_toll_above_its_price_is_refused_and_nothing_is_saved(db):
    form = version_form(energy_tolls={"P1": "0.300000", "P2": "0.020000", "P3": "0.003000"})
    assert not form.is_valid()
    assert form.errors["energy_tolls"] == [
        "P1: 0.300000 is more than the price 0.254321 EUR/kWh. A part of a price cannot exceed it."
    ]
    assert TariffVersion.objects.count() == 1  # two_td's own


def test_tolls_and_charges_above_the_price_together_are_refused(db):
    form = version_form(power_charges={"P1": "0.020000", "P2": "0.000300"})  # 0.06 + 0.02 > 0.073777
    assert not form.is_valid()
    assert "P1: tolls 0.060000 + charges 0.020000 are more than the price 0.073777" in form.errors["power_charges"][0]


def test_components_for_some_periods_only_are_refused(db):
    form = version_form(energy_charges={"P1": "0.01"})
    assert not form.is_valid() and "No price for P2, P3" in form.errors["energy_charges"][0]


def test_valid_components_are_saved(db):
    form = version_form()
    assert form.is_valid(), form.errors
    version = form.save()
    with translation.override("en"):
        assert version.components()["power_tolls"]["P1"] == Decimal("0.060000")
