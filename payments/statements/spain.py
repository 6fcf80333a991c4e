"""The Spanish bill of a 2.0TD supply (issue 18 item 7; docs/spain.md, "The bill a household receives").

Beyond its lines, a statement of a household billed a power term on a tariff priced by periods (2.0TD) carries
what the bill of a domestic supply must show (DGPEM resolution of 28 April 2021, CNMC resolutions of 24 June
2021 and 6 October 2022): the CUPS and its distributor (name, fault phone), the access tariff, the contracted
power per period, the meters' readings at the period's ends, kWh and the energy term per period, the power term
per period (kW x days x price), the part of both that is network tolls and system charges (the tariff version's
components), where the bill's money goes, 14 months of consumption with the average daily use, the CNMC
comparator's QR and link, and the year's disclosure staff maintain (mix, environmental impact, switching, claims,
out-of-court resolution, bono social).

``bills`` computes it at issue, outside the issuing transaction's locks, from the ledger and the tables as they are
then; ``issuing`` stores it on the statement (``Statement.bill``, JSON), so an issued bill is never recomputed
from data changed later. ``bill_context`` turns the stored JSON into what the template shows, in the reader's
language.
"""

from __future__ import annotations

import bisect
import calendar as month_calendar
from collections import defaultdict
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from django.db.models import OuterRef, Subquery, Sum
from django.db.models.functions import TruncMonth
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from lib.apportion import to_cents
from lib.money import format_kwh, format_money, format_number
from lib.periods import add_months, local_date, local_day_bounds, local_month_bounds, zone
from meters.calendars import get_calendar
from meters.models import ContractedPower, HourlyUsage, Household, Meter, Reading, TariffVersion, parse_kilowatts
from payments.qr import qr_svg
from payments.statements.models import MIX_SOURCES, BillDisclosure, Distributor

COMPARATOR_URL = "https://comparador.cnmc.gob.es"
COMPARATOR_QR_MM = Decimal("30")  # CNMC resolution of 6 October 2022: at least 3 x 3 cm
HISTORY_MONTHS = 14
ZERO = Decimal("0")
CENT = Decimal("0.01")
KWH3 = Decimal("0.001")
DAYS6 = Decimal("0.000001")


def _cent(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def _text(value: Decimal) -> str:
    return f"{value:f}"


def _days(value: Fraction) -> Decimal:
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(DAYS6, rounding=ROUND_HALF_UP)


def bills(households: list[Household], month: date, start: datetime, end: datetime, issue_date: date, drafts: dict):
    """The bill content of each household of the chunk (one time zone) billed a power term on a periods tariff
    in the month; households without one get none (their statement stays as before). A few grouped queries per
    chunk: power hours, energy per hour, history per month, contracted power, meters with their readings."""
    if not households:
        return {}
    tz = households[0].timezone
    ids = [household.pk for household in households]
    power_hours = (
        HourlyUsage.objects.filter(
            household_id__in=ids,
            kind=HourlyUsage.Kind.POWER,
            hour_start__gte=start,
            hour_start__lt=end,
            cost_eur__isnull=False,
            tariff_version__kind=TariffVersion.Kind.PERIODS,
        )
        .values_list("household_id", "hour_start", "tariff_version_id")
        .order_by()
        .distinct()
    )
    hours_by_household: defaultdict[int, set[tuple[datetime, int]]] = defaultdict(set)
    for household_id, hour, version_id in power_hours:
        hours_by_household[household_id].add((hour, version_id))
    billed = [household for household in households if household.pk in hours_by_household]
    if not billed:
        return {}
    ids = [household.pk for household in billed]
    energy = defaultdict(list)
    for row in (
        HourlyUsage.objects.filter(
            household_id__in=ids,
            kind=HourlyUsage.Kind.ENERGY,
            hour_start__gte=start,
            hour_start__lt=end,
            cost_eur__isnull=False,
        )
        .values("household_id", "hour_start", "tariff_version_id")
        .annotate(kwh=Sum("kwh"), cost=Sum("cost_eur"))
        .order_by()
    ):
        energy[row["household_id"]].append(row)
    version_ids = {v for hours in hours_by_household.values() for _, v in hours} | {
        row["tariff_version_id"] for rows in energy.values() for row in rows if row["tariff_version_id"]
    }
    versions = TariffVersion.objects.in_bulk(version_ids)
    powers = defaultdict(list)
    for row in ContractedPower.objects.filter(household_id__in=ids, valid_from__lt=end).order_by("valid_from"):
        powers[row.household_id].append(row)
    history = _history(ids, month, end, tz)
    readings = _readings(ids, start, end)
    disclosure = BillDisclosure.in_force(issue_date)
    disclosure_snapshot = disclosure.snapshot() if disclosure else None
    distributors = {d.code: d for d in Distributor.objects.all()}
    result = {}
    for household in billed:
        content = drafts.get(household.pk)
        result[household.pk] = _bill(
            household,
            month,
            start,
            end,
            sorted(hours_by_household[household.pk]),
            energy.get(household.pk, []),
            versions,
            powers.get(household.pk, []),
            history.get(household.pk, {}),
            readings.get(household.pk, []),
            distributors.get(household.cups[2:6]) if household.cups else None,
            disclosure_snapshot,
            content,
        )
    return result


def _bill(household, month, start, end, power_hours, energy_rows, versions, powers, history, readings, distributor,
          disclosure, content) -> dict:  # fmt: skip
    tz = household.timezone
    days_in_day: dict[date, int] = {}

    def day_fraction(hour: datetime) -> Fraction:
        day = local_date(hour, tz)
        if day not in days_in_day:
            day_start, day_end = local_day_bounds(hour, tz)
            days_in_day[day] = int((day_end - day_start).total_seconds() // 3600)
        return Fraction(1, days_in_day[day])

    # The power term: each stretch of one tariff version and one contracted power, in days (an hour is its
    # local day's 1/23, 1/24 or 1/25, as the ledger spreads a day's term), times kW x price per period.
    starts = [row.valid_from for row in powers]
    segments: dict[tuple[int, int], Fraction] = defaultdict(Fraction)
    first_hour: dict[tuple[int, int], datetime] = {}
    for hour, version_id in power_hours:
        index = bisect.bisect_right(starts, hour) - 1
        if index < 0:
            continue
        key = (version_id, index)
        segments[key] += day_fraction(hour)
        first_hour.setdefault(key, hour)
    power_rows, components_known = [], True
    tolls = charges = ZERO
    calendars = set()
    for (version_id, index), days in sorted(segments.items(), key=lambda item: first_hour[item[0]]):
        version = versions[version_id]
        calendars.add(version.calendar)
        parts = version.components()
        components_known = components_known and parts is not None
        kw = parse_kilowatts(powers[index].kw)
        exact_days = Decimal(days.numerator) / Decimal(days.denominator)
        for period, price in version.power_prices().items():
            kilowatts = kw.get(period, ZERO)
            row = {
                "period": period,
                "kw": _text(kilowatts),
                "days": _text(_days(days)),
                "price": _text(price),
                "amount": kilowatts * exact_days * price,  # exact; to the cent below, adding up
                "from": local_date(first_hour[(version_id, index)], tz).isoformat(),
            }
            if parts:
                tolls += kilowatts * exact_days * parts["power_tolls"][period]
                charges += kilowatts * exact_days * parts["power_charges"][period]
            power_rows.append(row)

    # The energy term per period: the ledger's kWh and cost of the hours of each period, at the version's price.
    by_period: dict[tuple[int, str], list[Decimal]] = {}
    order: dict[tuple[int, str], datetime] = {}
    for row in energy_rows:
        version = versions.get(row["tariff_version_id"])
        if version is None or version.kind != TariffVersion.Kind.PERIODS:
            continue
        calendars.add(version.calendar)
        period = get_calendar(version.calendar).energy_period(row["hour_start"].astimezone(zone(tz)))
        key = (version.pk, period)
        sums = by_period.setdefault(key, [ZERO, ZERO])
        sums[0] += Decimal(str(row["kwh"] or 0))
        sums[1] += Decimal(str(row["cost"] or 0))
        order[key] = min(order.get(key, row["hour_start"]), row["hour_start"])
    energy_rows_out = []
    for (version_id, period), (kwh, cost) in sorted(by_period.items(), key=lambda item: (item[0][1], order[item[0]])):
        version = versions[version_id]
        parts = version.components()
        components_known = components_known and parts is not None
        if parts:
            tolls += kwh * parts["energy_tolls"][period]
            charges += kwh * parts["energy_charges"][period]
        energy_rows_out.append(
            {
                "period": period,
                "kwh": _text(kwh.quantize(KWH3, rounding=ROUND_HALF_UP)),
                "price": _text(version.energy_prices()[period]),
                "amount": cost,  # exact; to the cent below, adding up
            }
        )
    # Rows rounded one by one need not add up to the statement's line (P1 8.766 + P2 0.227 is 8.77 + 0.23
    # = 9.00 for a power term of 8.99): each table is rounded as a whole (lib.apportion), as the chart is.
    for rows in (power_rows, energy_rows_out):
        if rows:
            rounded = to_cents([[row["amount"]] for row in rows])
            for row, (amount,) in zip(rows, rounded.cells, strict=True):
                row["amount"] = _text(amount)

    # Where the money goes: the statement's own rounded lines, the energy and power terms split into the
    # retailer's energy, the tolls and the charges.
    amounts = defaultdict(lambda: ZERO)
    for line in content.lines if content else []:
        amounts[line.kind] += line.amount_eur
    terms = amounts["energy"] + amounts["power"] + amounts["standing"]
    money = []
    if components_known:
        tolls_eur, charges_eur = _cent(tolls), _cent(charges)
        money += [("energy", terms - tolls_eur - charges_eur), ("tolls", tolls_eur), ("charges", charges_eur)]
    else:
        tolls_eur = charges_eur = None
        money.append(("terms", terms))
    money += [("rental", amounts["rental"]), ("taxes", amounts["tax"])]
    if amounts["rounding"]:
        money.append(("rounding", amounts["rounding"]))
    whole = sum((amount for _, amount in money), ZERO)

    period_days = (local_date(end, tz) - local_date(start, tz)).days
    month_kwh = sum((Decimal(str(row["kwh"] or 0)) for row in energy_rows), ZERO)
    months = []
    for back in range(HISTORY_MONTHS - 1, -1, -1):
        first = add_months(month, -back)
        kwh = history.get(first, ZERO)
        days = month_calendar.monthrange(first.year, first.month)[1]
        months.append({"month": first.isoformat(), "kwh": _text(kwh.quantize(KWH3)), "days": days})
    contracted = [
        {"from": local_date(max(row.valid_from, start), tz).isoformat(), "kw": dict(row.kw)}
        for index, row in enumerate(powers)
        if row.valid_from < end and (index + 1 == len(powers) or powers[index + 1].valid_from > start)
    ]
    return {
        "access_tariff": ", ".join(sorted(calendars)),
        "cups": household.cups,
        "distributor": None
        if distributor is None
        else {"code": distributor.code, "name": distributor.name, "fault_phone": distributor.fault_phone},
        "days": period_days,
        "contracted_power": contracted,
        "readings": readings,
        "energy": energy_rows_out,
        "power": power_rows,
        "tolls_eur": None if tolls_eur is None else _text(tolls_eur),
        "charges_eur": None if charges_eur is None else _text(charges_eur),
        "money": [
            {
                "what": what,
                "eur": _text(amount),
                "percent": _text((amount * 100 / whole).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))
                if whole
                else "0",
            }
            for what, amount in money
        ],
        "history": months,
        "average_daily_kwh": _text((month_kwh / period_days).quantize(CENT, rounding=ROUND_HALF_UP))
        if period_days
        else "0",
        "comparator_url": COMPARATOR_URL,
        "disclosure": disclosure,
    }


def _history(ids: list[int], month: date, end: datetime, tz: str) -> dict[int, dict[date, Decimal]]:
    """kWh per local month over the 14 months ending with ``month``, per household (one grouped query)."""
    first = local_month_bounds(add_months(month, -(HISTORY_MONTHS - 1)), tz)[0]
    rows = (
        HourlyUsage.objects.filter(household_id__in=ids, kind=HourlyUsage.Kind.ENERGY, hour_start__gte=first)
        .filter(hour_start__lt=end)
        .annotate(local_month=TruncMonth("hour_start", tzinfo=zone(tz)))
        .values("household_id", "local_month")
        .annotate(kwh=Sum("kwh"))
        .order_by()
    )
    history: defaultdict[int, dict[date, Decimal]] = defaultdict(dict)
    for row in rows:
        value = row["local_month"]
        day = value.date() if isinstance(value, datetime) else value
        history[row["household_id"]][day] = Decimal(str(row["kwh"] or 0))
    return history


def _readings(ids: list[int], start: datetime, end: datetime) -> dict[int, list[dict]]:
    """Each active meter's register at the period's start and end: real where a reading falls on the instant,
    estimated otherwise (between the readings around it, in proportion to time, as ingest spreads energy; or
    the last reading when none came after)."""
    meters = Meter.objects.filter(household_id__in=ids).order_by("serial")
    for name, instant in (("start", start), ("end", end)):
        before = Reading.objects.filter(meter=OuterRef("pk"), timestamp__lte=instant).order_by("-timestamp")
        after = Reading.objects.filter(meter=OuterRef("pk"), timestamp__gt=instant).order_by("timestamp")
        meters = meters.annotate(
            **{
                f"{name}_before_at": Subquery(before.values("timestamp")[:1]),
                f"{name}_before_kwh": Subquery(before.values("energy_kwh")[:1]),
                f"{name}_after_at": Subquery(after.values("timestamp")[:1]),
                f"{name}_after_kwh": Subquery(after.values("energy_kwh")[:1]),
            }
        )
    result: defaultdict[int, list[dict]] = defaultdict(list)
    for meter in meters:
        ends = {}
        for name, instant in (("start", start), ("end", end)):
            ends[name] = _register_at(
                instant,
                getattr(meter, f"{name}_before_at"),
                getattr(meter, f"{name}_before_kwh"),
                getattr(meter, f"{name}_after_at"),
                getattr(meter, f"{name}_after_kwh"),
            )
        if ends["start"] is None and ends["end"] is None:
            continue
        used = None
        if ends["start"] and ends["end"]:
            used = _text(Decimal(ends["end"]["kwh"]) - Decimal(ends["start"]["kwh"]))
        result[meter.household_id].append({"meter": meter.serial, **ends, "kwh": used})
    return result


def _register_at(instant, before_at, before_kwh, after_at, after_kwh) -> dict | None:
    if before_at is None:
        return None
    before_kwh = Decimal(str(before_kwh))
    if before_at == instant:
        return {"kwh": _text(before_kwh.quantize(KWH3)), "real": True}
    if after_at is None:
        return {"kwh": _text(before_kwh.quantize(KWH3)), "real": False}
    after_kwh = Decimal(str(after_kwh))
    share = Decimal((instant - before_at).total_seconds()) / Decimal((after_at - before_at).total_seconds())
    value = before_kwh + (after_kwh - before_kwh) * share
    return {"kwh": _text(value.quantize(KWH3, rounding=ROUND_HALF_UP)), "real": False}


# What the template shows, in the reader's language (the statement's, active while it renders).

PERIOD_PLACES = 2


def bill_context(bill: dict, currency: str) -> dict | None:
    """The stored bill with its figures formatted and its labels translated; None for a statement without one."""
    if not bill:
        return None

    def eur(value: str | None, places: int | None = None) -> str:
        return "" if value is None else format_money(Decimal(value), currency, places=places)

    money_labels = {
        "energy": _("Energy (the retailer's supply)"),
        "terms": _("Energy and power terms"),
        "tolls": _("Network tolls"),
        "charges": _("System charges"),
        "rental": _("Meter rental"),
        "taxes": _("Taxes"),
        "rounding": _("Rounding to the cent"),
    }
    history = bill.get("history", [])
    top = max((Decimal(month["kwh"]) for month in history), default=ZERO)
    chart_height = 60
    bars = []
    for index, month in enumerate(history):
        kwh = Decimal(month["kwh"])
        height = int((kwh / top * chart_height).to_integral_value()) if top else 0
        first = date.fromisoformat(month["month"])
        bars.append(
            {
                "month": first,
                "kwh": format_kwh(kwh, 0),
                "daily": format_kwh(kwh / month["days"], 2),
                "x": 4 + index * 22,
                "y": chart_height - height + 4,
                "height": height,
                "current": index == len(history) - 1,
            }
        )
    disclosure = bill.get("disclosure")
    mix = []
    if disclosure:
        labels = {name.removeprefix("mix_"): label for name, label in MIX_SOURCES}
        mix = [
            {"label": labels.get(source, source), "percent": format_number(Decimal(value), 2)}
            for source, value in disclosure["mix"].items()
        ]
    return {
        **bill,
        "contracted": [
            {
                "from": date.fromisoformat(row["from"]),
                "kw": [(p, _number(Decimal(v))) for p, v in row["kw"].items()],
            }
            for row in bill.get("contracted_power", [])
        ],
        "energy_rows": [
            {
                **row,
                "kwh_text": format_kwh(Decimal(row["kwh"]), 3),
                # A plain space before the unit: on a phone the unit may go to the next line.
                "price_text": _breakable(format_money(Decimal(row["price"]), currency, places=6) + "/kWh"),
                "amount_text": eur(row["amount"]),
            }
            for row in bill.get("energy", [])
        ],
        "power_rows": [
            {
                **row,
                "kw_text": _number(Decimal(row["kw"])) + " kW",
                "days_text": _days_text(Decimal(row["days"])),
                "price_text": _breakable(format_money(Decimal(row["price"]), currency, places=6) + _("/kW/day")),
                "amount_text": eur(row["amount"]),
            }
            for row in bill.get("power", [])
        ],
        "reading_rows": [
            {
                "meter": row["meter"],
                "start": None
                if not row.get("start")
                else {**row["start"], "text": format_kwh(Decimal(row["start"]["kwh"]), 3)},
                "end": None
                if not row.get("end")
                else {**row["end"], "text": format_kwh(Decimal(row["end"]["kwh"]), 3)},
                "kwh_text": "" if row.get("kwh") is None else format_kwh(Decimal(row["kwh"]), 3),
            }
            for row in bill.get("readings", [])
        ],
        "tolls_text": eur(bill.get("tolls_eur")),
        "charges_text": eur(bill.get("charges_eur")),
        "money_rows": [
            {
                "what": row["what"],
                "label": money_labels.get(row["what"], row["what"]),
                "text": eur(row["eur"]),
                "percent": format_number(Decimal(row["percent"]), 1),
            }
            for row in bill.get("money", [])
        ],
        "bars": bars,
        "chart_width": 8 + 22 * len(bars),
        "chart_height": chart_height + 8,
        "average_daily_text": format_kwh(Decimal(bill.get("average_daily_kwh", "0")), 2),
        "comparator_svg": qr_svg(bill["comparator_url"], symbol_mm=COMPARATOR_QR_MM),
        "mix": mix,
        "co2_text": None if not disclosure else format_number(Decimal(disclosure["co2_g_per_kwh"]), 2),
        "waste_text": None if not disclosure else format_number(Decimal(disclosure["radioactive_waste_mg_per_kwh"]), 4),
    }


def _days_text(days: Decimal) -> str:
    """ "30 days", "15.50 days": whole days without decimals, a day begun part-way with two."""
    shown = format_number(days, PERIOD_PLACES if days % 1 else 0)
    return ngettext("%(days)s day", "%(days)s days", 1 if days == 1 else 2) % {"days": shown}


def _number(value: Decimal) -> str:
    """A figure with the decimals it has (4.6 kW stays "4.6"/"4,6", not "4.600")."""
    exponent = value.normalize().as_tuple().exponent
    return format_number(value, -exponent if isinstance(exponent, int) and exponent < 0 else 0)


def _breakable(text: str) -> str:
    return text.replace("\xa0", " ")
