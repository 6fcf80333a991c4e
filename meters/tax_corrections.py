"""A tax rate corrected after its days were billed: an explicit, audited correction, never an edit.

A tax rule prices its days forever, and the admin refuses any change that reaches a day that has
begun (meters/taxes.py ``refusal``). When a rate turns out to have been wrong (VAT at 10% where 21% was
due), staff correct it for the days concerned with ``manage.py correct_tax_rate`` (payments.statements,
which then issues the R1 rectificativas); the steps here are:

1. ``correct_rate`` adds a rule with the right rate for those days (``TaxRule.replaces`` names the wrong
   one; every other field is copied from it). From its commit, pricing takes it instead of the wrong rule
   on those days (meters/pricing.py ``TaxSchedule.rules``), so a line written later for one of them (a
   late reading) is taxed right. The wrong rule is not changed: it still explains the lines it taxed.
2. ``retax`` writes, for each household, hour and group of lines the wrong rule taxed on those days (same
   tariff version and tax factor), two ledger lines of kind ``retax``: the lines' cost given back at the
   old factor with exactly the tax they were charged, and the same cost charged again at the new factor,
   its tax rounded to the micro-euro as every hour's is. The two costs add up to nothing and the taxes
   to the difference, which the next hourly settlement pays (or nets, if it is negative), as it does a
   late reading. No line is edited. Run again, it writes only what is still taxed at the old factor (lines
   a concurrent writer priced with the old rules while the correction committed).
3. The months whose statements were issued get a factura rectificativa R1 by differences
   (payments.statements.corrections; the daily corrections job types it R1 too if it comes first).

Cost: the lines of the corrected days are read once (in Python, grouped per household and hour); a staff
action, rare, not a hot path.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from lib.money import tax_of
from lib.periods import local_date, local_midnight
from meters.audit import record_action
from meters.models import HourlyUsage, Household, TariffVersion, TaxRule
from meters.pricing import ContractedPowers, TaxSchedule, combined_rate
from meters.taxes import first_open_day
from meters.usage import bump_usage_version

log = logging.getLogger(__name__)

ZERO = Decimal("0")


class CorrectionRefused(ValueError):
    """The correction cannot be made as asked; nothing was written."""


@dataclass
class Retaxed:
    """What ``retax`` wrote: the pairs of lines, the households and the tax it adds (negative: gives back)."""

    pairs: int = 0
    tax_eur: Decimal = ZERO
    household_ids: set[int] = field(default_factory=set)
    start: datetime | None = None
    end: datetime | None = None


def correct_rate(
    rule: TaxRule,
    rate: Decimal,
    first_day: date,
    last_day: date,
    *,
    reason: str,
    name: str = "",
    actor=None,
    now: datetime | None = None,
) -> TaxRule:
    """Add the rule that corrects ``rule``'s rate to ``rate`` on the local days ``first_day`` to ``last_day``.

    Refused (``CorrectionRefused``, nothing saved): a rule that is itself a correction, a rate that is not a
    fraction or does not change, days outside the rule's or not yet begun (a rate for days to come is a
    new rule in the admin), days another correction of the rule already covers, no reason.
    """
    now = now or timezone.now()
    reason = (reason or "").strip()
    if not reason:
        raise CorrectionRefused("Say why the rate is corrected (the rectificativas say it).")
    if rule.replaces_id is not None:
        raise CorrectionRefused(f"{rule} is itself a correction: correct the rule it replaces, {rule.replaces}.")
    if not (ZERO <= rate <= 1) or rate.as_tuple().exponent < -10:
        raise CorrectionRefused("A rate is a fraction between 0 and 1 with at most 10 decimals (0.21 for 21%).")
    if rate == rule.rate:
        raise CorrectionRefused(f"{rule} already has the rate {rate}.")
    if last_day < first_day:
        raise CorrectionRefused("The last day cannot come before the first.")
    if not (rule.covers(first_day) and rule.covers(last_day)):
        raise CorrectionRefused(f"{rule} does not apply to every day from {first_day} to {last_day}.")
    open_day = first_open_day(now)
    if open_day is None or last_day >= open_day:
        raise CorrectionRefused(
            f"Days from {open_day or first_day} have not begun: a rate for days to come is a change of the rule "
            "in the admin (end it the day before, add the new one)."
        )
    with transaction.atomic():
        locked = TaxRule.objects.select_for_update().get(pk=rule.pk)  # two staff correcting at once take turns
        if locked.corrections.filter(valid_from__lte=last_day, valid_to__gte=first_day).exists():
            raise CorrectionRefused(f"{rule} already has a correction on some of these days.")
        tariffs = list(rule.tariffs.all())
        correction = TaxRule.objects.create(
            tax=rule.tax,
            name=(name or rule.name)[:120],
            rate=rate,
            kinds=list(rule.kinds),
            compound=rule.compound,
            region=rule.region,
            max_contracted_kw=rule.max_contracted_kw,
            minimum_eur_per_mwh=rule.minimum_eur_per_mwh,
            valid_from=first_day,
            valid_to=last_day,
            replaces=rule,
            correction_reason=reason[:200],
        )
        if tariffs:
            correction.tariffs.set(tariffs)
            correction.save()  # renews the tariffs' revision once more, now with its tariffs (tax_rules_changed)
        record_action(
            rule,
            "tax_rule.corrected",
            f"Rate corrected to {rate} from {first_day} to {last_day}: {reason}"[:250],
            actor=actor,
            correction_rule=correction.pk,
            rate=str(rate),
            first_day=str(first_day),
            last_day=str(last_day),
        )
    log.info(
        "tax_rate_corrected rule=%s correction=%s rate=%s first=%s last=%s",
        rule.pk,
        correction.pk,
        rate,
        first_day,
        last_day,
    )
    return correction


def retax(correction: TaxRule) -> Retaxed:
    """Write the pairs of ``retax`` lines that move the corrected days' lines from the old factor to the new one
    (the module's step 2), in one transaction under the correction rule's row lock (two runs take turns, the
    second finds nothing left at the old factor). Returns what it wrote."""
    if correction.replaces_id is None or correction.valid_to is None:
        raise CorrectionRefused(f"{correction} is not a correction of another rule's rate.")
    with transaction.atomic():
        TaxRule.objects.select_for_update().filter(pk=correction.pk).exists()
        return _retax(correction)


def _retax(correction: TaxRule) -> Retaxed:
    wrong = correction.replaces
    households = Household.objects.all()
    if wrong.region:
        households = households.filter(region=wrong.region)
    zones = dict(households.values_list("pk", "timezone"))
    regions = dict(households.values_list("pk", "region"))
    done = Retaxed()
    if not zones:
        return done
    tz_names = set(zones.values())
    start = min(local_midnight(correction.valid_from, tz) for tz in tz_names)
    end = max(local_midnight(correction.valid_to + timedelta(days=1), tz) for tz in tz_names)
    done.start, done.end = start, end
    lines = HourlyUsage.objects.filter(
        household_id__in=list(zones),
        hour_start__gte=start,
        hour_start__lt=end,
        cost_eur__isnull=False,
        kind__in=[*wrong.kinds, HourlyUsage.Kind.RETAX],
        tariff_version__isnull=False,
    )
    tariff_ids = set(wrong.tariffs.values_list("pk", flat=True))
    if tariff_ids:
        lines = lines.filter(tariff_version__tariff_id__in=tariff_ids)
    # (household, hour, version, factor) -> [cost, tax, a kind of line its rules are looked up by]
    groups: dict[tuple, list] = {}
    for household_id, hour, version_id, factor, kind, cost, tax in lines.order_by(
        "household_id", "hour_start", "pk"
    ).values_list("household_id", "hour_start", "tariff_version_id", "tax_rate", "kind", "cost_eur", "tax_eur"):
        day = local_date(hour, zones[household_id])
        if not correction.covers(day):
            continue
        group = groups.setdefault((household_id, hour, version_id, factor), [ZERO, ZERO, None])
        group[0] += cost
        group[1] += tax or ZERO
        if kind != HourlyUsage.Kind.RETAX and group[2] is None:
            group[2] = kind
    versions = TariffVersion.objects.select_related("tariff").in_bulk({key[2] for key in groups})
    powers = ContractedPowers(ContractedPowers.rows(list(zones), end))
    schedules: dict[tuple, TaxSchedule] = {}
    new_lines = []
    seqs: defaultdict[tuple, int] = defaultdict(int)
    for (household_id, hour, version_id, factor), (cost, tax, kind) in groups.items():
        if kind is None or (not cost and not tax):
            continue  # only correction lines (an hour already moved), or nothing left at this factor
        tariff = versions[version_id].tariff
        schedule = schedules.setdefault((tariff.pk, regions[household_id]), TaxSchedule(tariff, regions[household_id]))
        day = local_date(hour, zones[household_id])
        max_kw = powers.at(household_id, hour) if schedule.conditional else None
        old = schedule.rules(kind, day, max_kw, as_billed=True)
        if wrong not in old or combined_rate(old) != factor:
            continue  # not taxed by the wrong rule (another power bucket, taxed by hand, already the new factor)
        new_factor = combined_rate(schedule.rules(kind, day, max_kw))
        new_tax = tax_of(cost, new_factor)
        for seq_cost, seq_factor, seq_tax in ((-cost, factor, -tax), (cost, new_factor, new_tax)):
            key = (household_id, hour)
            new_lines.append(
                HourlyUsage(
                    household_id=household_id,
                    kind=HourlyUsage.Kind.RETAX,
                    hour_start=hour,
                    seq=seqs[key],
                    kwh=ZERO,
                    tariff_version_id=version_id,
                    cost_eur=seq_cost,
                    tax_rate=seq_factor,
                    tax_eur=seq_tax,
                )
            )
            seqs[key] += 1
        done.pairs += 1
        done.tax_eur += new_tax - tax
        done.household_ids.add(household_id)
    if new_lines:
        bump_usage_version(done.household_ids)
        # Later runs number their lines after these (seq is informative: the pairs have no unique key).
        earlier: defaultdict[tuple, int] = defaultdict(int)
        for household_id, hour in (
            HourlyUsage.objects.filter(
                kind=HourlyUsage.Kind.RETAX,
                household_id__in=done.household_ids,
                hour_start__gte=start,
                hour_start__lt=end,
            )
            .values_list("household_id", "hour_start")
            .order_by()
        ):
            earlier[household_id, hour] += 1
        for line in new_lines:
            line.seq += earlier[line.household_id, line.hour_start]
        HourlyUsage.objects.bulk_create(new_lines, batch_size=2000)
    log.info(
        "tax_rate_retaxed correction=%s pairs=%d households=%d tax=%s",
        correction.pk,
        done.pairs,
        len(done.household_ids),
        done.tax_eur,
    )
    return done
