"""Tax rules, tariffs and contracts the tax tests build, with the figures worked by hand."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.utils import timezone

from meters.ingest import ingest_readings
from meters.models import Region, StandingMark, Tariff, TariffVersion, TaxRule
from meters.schema import ReadingIn

IEE = Decimal("0.0511269632")  # Impuesto especial sobre la electricidad, 5.11269632%
VAT = Decimal("0.21")
# VAT on the cost and on the electricity tax: 0.0511269632 + 0.21 x 1.0511269632
IEE_AND_VAT = Decimal("0.271863625472")
BOTH = ["energy", "standing"]


def rule(tax: str, rate: str | Decimal, *, compound=False, kinds=BOTH, region=Region.PENINSULA, **fields) -> TaxRule:
    fields.setdefault("valid_from", date(2020, 1, 1))
    name = fields.pop("name", f"{tax.upper()} {Decimal(rate) * 100:f}%")
    made = TaxRule(tax=tax, name=name, rate=Decimal(rate), compound=compound, kinds=kinds, region=region, **fields)
    made.full_clean()
    made.save()
    return made


def spanish_taxes(**vat_dates) -> tuple[TaxRule, TaxRule]:
    """The electricity tax, and VAT 21% on the cost plus it, on energy and standing charge, in the peninsula."""
    return rule("iee", IEE, name="Impuesto especial sobre la electricidad"), rule(
        "iva", VAT, compound=True, name="IVA 21%", **vat_dates
    )


def flat(name: str, rate: str, standing: str = "0") -> Tariff:
    tariff = Tariff.objects.create(name=name)
    TariffVersion.objects.create(
        tariff=tariff,
        valid_from=datetime(2020, 1, 1, tzinfo=UTC),
        kind=TariffVersion.Kind.FLAT,
        flat_rate=Decimal(rate),
        standing_charge_per_day=Decimal(standing),
    )
    return tariff


def mark(at: datetime) -> None:
    """Where the hourly standing-charge job stands (the migration puts it at the hour it ran)."""
    StandingMark.objects.update_or_create(pk=1, defaults={"accrued_until": at})


def hourly_readings(meter, start: datetime, hours: int, *, kwh_per_hour: str = "1", first: str = "1000") -> None:
    """A reading on each UTC hour boundary, the register rising ``kwh_per_hour``: each hour uses exactly that."""
    step, register = Decimal(kwh_per_hour), Decimal(first)
    items = [
        (i, ReadingIn(timestamp=start + timedelta(hours=i), energy_kwh=register + i * step)) for i in range(hours + 1)
    ]
    now = max(timezone.now(), start + timedelta(hours=hours))
    for chunk in range(0, len(items), 1000):
        assert ingest_readings(meter.pk, items[chunk : chunk + 1000], now).rejected == []
