"""seed_demo on the local ledger: funded wallets, settled history, one household in arrears, last month's statements
and a corrective note for the demo login, which is a Spanish 2.0TD supply with its tax QR."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
import time_machine
from django.core.management import call_command
from django.db.models import Sum
from django.urls import reverse
from stdnum.es import cups, nif

from meters.models import HourlyUsage, Household
from payments.figures import eur
from payments.models import LedgerOutput, Settlement, SettlementLine
from payments.statements.models import InvoiceRecord, Statement
from payments.statements.verifactu import qr
from payments.wallets import balance_satoshis

NOW = datetime(2026, 11, 2, 14, 30, tzinfo=UTC)  # October ended two days ago: its statements are due
HISTORY_START = datetime(2026, 10, 30, 14, 30, tzinfo=UTC)  # --days 3


@pytest.fixture(autouse=True)
def _var_in_tmp(settings, tmp_path):
    # The demo webhook's secret is a file in var/: each test its own, not the checkout's one that a parallel
    # worker's seed rewrites.
    settings.VAR_DIR = tmp_path


@pytest.fixture
def seeded(db):
    with time_machine.travel(NOW, tick=False):
        call_command("seed_demo", "--households", "3", "--days", "3", stdout=io.StringIO())
    return list(Household.objects.order_by("pk"))


def test_every_demo_household_has_a_wallet_and_all_but_the_last_are_funded(seeded):
    assert all(household.wallet for household in seeded)
    assert [balance_satoshis(h.wallet) > 0 for h in seeded] == [True, True, False]


def test_history_is_settled_hour_by_hour_and_the_unfunded_household_is_in_arrears(seeded):
    paying, unfunded = seeded[:2], seeded[2]
    for household in paying:
        settlements = Settlement.objects.filter(household=household)
        assert settlements.count() >= 48
        assert set(settlements.values_list("state", flat=True)) <= {"seen", "confirmed"}
        # seq 0: the hours as first recorded (the demo login's late readings add true-up lines, seq 1).
        assert not HourlyUsage.objects.filter(
            household=household, settled_at__isnull=True, hour_start__lt=NOW.replace(minute=0), seq=0
        ).exists()
    assert not Settlement.objects.filter(household=unfunded).exists()
    assert HourlyUsage.objects.filter(household=unfunded, settled_at__isnull=True).exists()


def test_seeded_money_reconciles(seeded):
    for household in seeded:
        wallet = household.wallet
        on_ledger = LedgerOutput.objects.filter(address=wallet.address, spent_by__isnull=True)
        assert balance_satoshis(wallet) == (on_ledger.aggregate(s=Sum("satoshis"))["s"] or 0)
        paid = SettlementLine.objects.filter(settlement__household=household, released=False)
        # eur(): SQLite hands sums back through a float.
        assert eur(paid.aggregate(e=Sum("eur"))["e"]) == eur(
            Settlement.objects.filter(household=household).aggregate(e=Sum("eur"))["e"]
        )


def test_seeding_again_pays_nothing_twice(seeded):
    before = Settlement.objects.count()
    with time_machine.travel(NOW, tick=False):
        call_command("seed_demo", "--households", "3", "--days", "3", stdout=io.StringIO())
    assert Settlement.objects.count() == before


def test_last_month_is_stated_for_every_household_and_the_demo_login_has_a_corrective_note(seeded):
    october = date(2026, 10, 1)
    assert sorted(Statement.objects.filter(kind="statement").values_list("household_id", "month")) == [
        (household.pk, october) for household in seeded
    ]
    demo = seeded[0]
    statement, note = Statement.objects.filter(household=demo).order_by("revision")
    assert (note.kind, note.corrects, note.month, note.code) == ("corrective", statement, october, "EPR-2026-000001")
    assert note.total_eur != 0
    # The note covers exactly the true-up lines the late readings added to October; together the two
    # documents are October's ledger now, to the cent.
    start, end = statement.period_start, statement.period_end
    october = HourlyUsage.objects.filter(household=demo, hour_start__gte=start, hour_start__lt=end)
    assert note.ledger_cost_eur == eur(october.filter(seq__gt=0).aggregate(c=Sum("cost_eur"))["c"])
    ledger = october.aggregate(c=Sum("cost_eur"), t=Sum("tax_eur"))
    assert statement.total_eur + note.total_eur == (eur(ledger["c"]) + eur(ledger["t"])).quantize(Decimal("0.01"))


def test_seeding_again_issues_no_statement_twice(seeded):
    before = list(Statement.objects.values_list("code", flat=True))
    with time_machine.travel(NOW, tick=False):
        call_command("seed_demo", "--households", "3", "--days", "3", stdout=io.StringIO())
    assert list(Statement.objects.values_list("code", flat=True)) == before


def test_the_demo_has_a_webhook_endpoint_with_the_confirmed_settlements_waiting_for_its_receiver(seeded):
    from energypay.webhooks import demo
    from energypay.webhooks.models import WebhookDelivery, WebhookEndpoint

    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.url == demo.demo_url() and endpoint.secret == demo.read_secret()
    confirmed = Settlement.objects.filter(state="confirmed").count()
    assert confirmed and WebhookDelivery.objects.filter(
        endpoint=endpoint, event__type="settlement.confirmed"
    ).count() == (confirmed)
    with time_machine.travel(NOW, tick=False):
        call_command("seed_demo", "--households", "3", "--days", "3", stdout=io.StringIO())
    assert WebhookEndpoint.objects.get().secret == endpoint.secret  # kept: the receiver's copy still verifies


def test_the_demo_login_is_a_2_0td_supply_with_contracted_power_a_rented_meter_a_nif_and_a_cups(seeded):
    demo, flat, tou = seeded
    (version,) = demo.tariff.versions.all()
    assert (version.kind, version.calendar) == ("periods", "2.0TD")
    assert set(version.energy_prices()) == {"P1", "P2", "P3"} and set(version.power_prices()) == {"P1", "P2"}
    assert version.standing_charge_per_day == 0  # the power term replaces it
    (power,) = demo.contracted_powers.all()
    assert (power.kw, power.valid_from) == ({"P1": "4.6", "P2": "4.6"}, HISTORY_START.replace(minute=0))
    assert (demo.tax_id, demo.cups) == ("12345678Z", "ES0021000000000001RK")
    assert nif.is_valid(demo.tax_id) and cups.is_valid(demo.cups)
    assert all(nif.is_valid(h.tax_id) and cups.is_valid(h.cups) for h in seeded)
    assert len({h.tax_id for h in seeded}) == len({h.cups for h in seeded}) == 3
    # Variety: the others keep the flat and time-of-use tariffs.
    assert (flat.tariff.versions.get().kind, tou.tariff.versions.get().kind) == ("flat", "tou")


def test_the_demo_logins_power_term_and_meter_rental_accrue_from_its_first_hour_with_spains_taxes(seeded):
    demo = seeded[0]
    lines = HourlyUsage.objects.filter(household=demo, hour_start__lt=NOW.replace(minute=0))
    first_hour = HISTORY_START.replace(minute=0)
    hours = 72
    for kind in ("power", "rental"):
        kind_lines = lines.filter(kind=kind, seq=0)
        assert kind_lines.count() == hours and kind_lines.order_by("hour_start").first().hour_start == first_hour
    assert not lines.filter(kind="standing").exists()
    # A day's power term: 4.6 kW x (0.073777 + 0.001911) EUR/kW/day = 0.3481648, spread over the day's hours;
    # the whole local day of 31 October (UTC+1 after the clocks went back on the 25th) adds up to it.
    oct31 = lines.filter(
        kind="power",
        hour_start__gte=datetime(2026, 10, 30, 23, tzinfo=UTC),
        hour_start__lt=datetime(2026, 10, 31, 23, tzinfo=UTC),
    )
    assert eur(oct31.aggregate(c=Sum("cost_eur"))["c"]) == Decimal("0.348165")
    electricity_tax, vat = Decimal("0.0511269632"), Decimal("0.21")
    power_line = lines.filter(kind="power").first()
    rental_line = lines.filter(kind="rental").first()
    energy_line = lines.filter(kind="energy").first()
    assert power_line.tax_rate == energy_line.tax_rate == (1 + electricity_tax) * (1 + vat) - 1
    assert rental_line.tax_rate == vat  # meter rental: VAT only


def test_the_demo_logins_statement_names_its_holder_and_supply_point_and_shows_a_working_tax_qr(seeded, client):
    demo = seeded[0]
    statement = Statement.objects.get(household=demo, kind="statement")
    assert (statement.customer["tax_id"], statement.customer["cups"]) == ("12345678Z", "ES0021000000000001RK")
    record = InvoiceRecord.objects.get(statement=statement, kind="alta")
    assert record.invoice_type == "F1"  # the customer has a NIF
    client.force_login(demo.user)
    body = client.get(reverse("statement-detail", args=[statement.pk])).content.decode()
    url = qr.statement_qr(statement)["url"]
    assert f"numserie={statement.code}" in url and f"importe={statement.total_eur:.2f}" in url
    section = body[body.index('id="statement-tax-qr"') : body.index('id="statement-issuer"')]
    assert section.index("QR tributario:") < section.index("<svg") < section.index("VERI*FACTU")
    assert 'href="{}"'.format(url.replace("&", "&amp;")) in section


def test_the_demo_logins_statement_is_a_spanish_bill_with_its_distributor_tolls_and_charges(seeded, client):
    demo = seeded[0]
    statement = Statement.objects.get(household=demo, kind="statement")
    bill = statement.bill
    assert bill["access_tariff"] == "2.0TD" and bill["cups"] == "ES0021000000000001RK"
    assert bill["distributor"]["name"] == "Distribuidora de demostración"  # by the CUPS's code, 0021
    assert Decimal(bill["tolls_eur"]) > 0 and Decimal(bill["charges_eur"]) > 0
    assert sum(Decimal(part["eur"]) for part in bill["money"]) == statement.total_eur  # where the money goes: all of it
    assert sum(Decimal(share) for share in bill["disclosure"]["mix"].values()) == 100
    for kind in ("power", "energy"):  # the per-period tables add up to the statement's lines, to the cent
        lines = sum(line.amount_eur for line in statement.lines.filter(kind=kind))
        assert sum(Decimal(row["amount"]) for row in bill[kind]) == lines, kind
    other = Statement.objects.get(household=seeded[1], kind="statement")
    assert other.bill == {}  # not on 2.0TD: the statement it always had
    client.force_login(demo.user)
    body = client.get(reverse("statement-detail", args=[statement.pk])).content.decode()
    assert "comparador.cnmc.gob.es" in body and "900 000 000" in body
