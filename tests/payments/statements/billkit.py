"""A 2.0TD bill's content as a statement stores it (``Statement.bill``), for pages that only need to show one:
the accessibility and layout checks in Chromium. The figures are those worked by hand in test_spanish_bill.py."""

from __future__ import annotations

from meters.models import Household
from payments.statements.models import Statement
from payments.statements.spain import COMPARATOR_URL


def sample_bill(cups: str = "ES0021000000000001JN") -> dict:
    history = [
        {"month": f"{2025 + (9 + n) // 12}-{(9 + n) % 12 + 1:02d}-01", "kwh": "0.000", "days": 30} for n in range(14)
    ]
    history[0]["kwh"], history[-2]["kwh"], history[-1]["kwh"] = "100.000", "310.500", "720.000"
    return {
        "access_tariff": "2.0TD",
        "cups": cups,
        "distributor": {"code": "0021", "name": "Distribuidora de Prueba", "fault_phone": "900 111 222"},
        "days": 30,
        "contracted_power": [{"from": "2026-11-01", "kw": {"P1": "4.6", "P2": "4.6"}}],
        "readings": [
            {
                "meter": "SN-000001",
                "start": {"kwh": "1745.000", "real": True},
                "end": {"kwh": "2465.000", "real": False},
                "kwh": "720.000",
            }
        ],
        "energy": [
            {"period": "P1", "kwh": "168.000", "price": "0.254321", "amount": "42.73"},
            {"period": "P2", "kwh": "168.000", "price": "0.176543", "amount": "29.66"},
            {"period": "P3", "kwh": "384.000", "price": "0.101234", "amount": "38.87"},
        ],
        "power": [
            {
                "period": "P1",
                "kw": "4.6",
                "days": "30.000000",
                "price": "0.073777",
                "amount": "10.18",
                "from": "2026-11-01",
            },
            {
                "period": "P2",
                "kw": "4.6",
                "days": "30.000000",
                "price": "0.001911",
                "amount": "0.26",
                "from": "2026-11-01",
            },
        ],
        "tolls_eur": "18.04",
        "charges_eur": "9.98",
        "money": [
            {"what": "energy", "eur": "93.68", "percent": "60.1"},
            {"what": "tolls", "eur": "18.04", "percent": "11.6"},
            {"what": "charges", "eur": "9.98", "percent": "6.4"},
            {"what": "rental", "eur": "0.80", "percent": "0.5"},
            {"what": "taxes", "eur": "33.25", "percent": "21.3"},
        ],
        "history": history,
        "average_daily_kwh": "24.00",
        "comparator_url": COMPARATOR_URL,
        "disclosure": {
            "year": 2025,
            "valid_from": "2026-06-01",
            "mix": {
                "renewable": "50.50",
                "high_efficiency_cogeneration": "2.00",
                "cogeneration": "5.00",
                "combined_cycle": "15.00",
                "coal": "1.50",
                "fuel_gas": "1.00",
                "nuclear": "20.00",
                "other": "5.00",
            },
            "co2_g_per_kwh": "98.50",
            "radioactive_waste_mg_per_kwh": "0.2100",
            "source_note": "CNMC, etiquetado de la electricidad 2025",
            "switching": "Cambiar de comercializadora es gratuito: la nueva se encarga de todo.",
            "claims": "Reclamaciones: 900 000 000, reclamaciones@example.com.",
            "odr": "Resolución extrajudicial: Junta Arbitral de Consumo.",
            "bono_social": "Si cumple los requisitos, puede pedir el bono social a su comercializadora de referencia.",
        },
    }


def statement_with_bill(household: Household) -> Statement:
    """A copy of the household's newest statement, a year earlier, carrying a 2.0TD bill (a row only: no ledger)."""
    newest = Statement.objects.filter(household=household).order_by("-month", "-revision").first()
    fields = {
        field.name: getattr(newest, field.name)
        for field in Statement._meta.concrete_fields
        if field.name not in ("id", "code", "number", "month", "bill")
    }
    last = Statement.objects.filter(series=newest.series, year=newest.year).order_by("-number").first()
    return Statement.objects.create(
        **fields,
        number=last.number + 1,
        code=newest.series.number_text(newest.year, last.number + 1),
        month=newest.month.replace(year=newest.month.year - 1),
        bill=sample_bill(),
    )
