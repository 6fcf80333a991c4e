"""The django-import-export resource of the onboarding file: households with their meters, one row per meter.

django-import-export brings the admin's import and export pages, the file formats (CSV, XLSX
through tablib and openpyxl) and the upload kept between the preview and the confirmation. Its
row-by-row import is replaced here: it would save each row with several queries and, for the
preview, write everything and roll it back. Instead ``import_data`` judges the whole file first
(rows.py: three queries, nothing written) and, once confirmed, writes it set-based in one
transaction (importing.py). Export writes the same columns, so an exported file imports elsewhere;
no token, hash, key or password is in it.
"""

from __future__ import annotations

from typing import Any

import tablib
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from import_export import fields, resources
from import_export.results import Error, Result, RowResult

from energypay.onboarding import importing, rows
from lib.periods import local_date
from meters.models import Household, Meter, TariffAssignment


class Refusal(Exception):
    """Shown as the preview's error: a message, never a traceback."""


class OnboardingResource(resources.Resource):
    email = fields.Field(column_name="email")
    name = fields.Field(column_name="name")
    address = fields.Field(column_name="address")
    timezone = fields.Field(column_name="timezone")
    region = fields.Field(column_name="region")
    tariff = fields.Field(column_name="tariff")
    contract_starts = fields.Field(column_name="contract_starts")
    serial = fields.Field(column_name="serial")
    max_power_kw = fields.Field(column_name="max_power_kw")
    installed_at = fields.Field(column_name="installed_at")

    @classmethod
    def get_display_name(cls) -> str:
        return "Households and meters"

    # --- import ---------------------------------------------------------------------------------

    def import_data(self, dataset: tablib.Dataset, dry_run: bool = False, raise_errors: bool = False, **kwargs: Any):
        """Judge the file; when it has no error and this is not the preview, write it (all or nothing)."""
        result = Result()
        result.diff_headers = list(rows.COLUMNS)
        try:
            plan = rows.read(dataset.headers, list(dataset))
        except rows.FileRefused as refused:
            result.append_base_error(Error(Refusal(str(refused))))
            return result
        for line, errors in plan.errors.items():
            result.append_invalid_row(line, plan.rows[line - rows.FIRST_LINE], ValidationError(errors))
        if not plan.ok:
            result.totals[RowResult.IMPORT_TYPE_INVALID] = len(plan.errors)
            return result
        if not dry_run:
            try:
                result.outcome = importing.apply(
                    plan, acting_user=kwargs["user"], file_name=kwargs.get("file_name") or ""
                )
            except importing.ImportConflict as conflict:
                result.append_base_error(Error(Refusal(str(conflict))))
                return result
        for row in plan.rows:
            row_result = RowResult()
            row_result.import_type = RowResult.IMPORT_TYPE_NEW
            row_result.diff = [row[column] for column in rows.COLUMNS]
            result.append_row_result(row_result)
            result.increment_row_result_total(row_result)
        result.plan = plan
        return result

    # --- export ---------------------------------------------------------------------------------

    def export(self, queryset: QuerySet[Household] | None = None, **kwargs: Any) -> tablib.Dataset:
        """One row per meter of the households given (a household without meters: one row without a serial)."""
        households = (queryset if queryset is not None else Household.objects.all()).order_by("pk")
        dataset = tablib.Dataset(headers=list(rows.COLUMNS))
        starts = dict(
            TariffAssignment.objects.filter(household__in=households.values("pk"))
            .order_by("household_id", "-valid_from")
            .values_list("household_id", "valid_from")
        )  # the earliest of each household wins, being written last
        meters: dict[int, list[tuple]] = {}
        for meter in (
            Meter.objects.filter(household__in=households.values("pk"))
            .order_by("serial")
            .values_list("household_id", "serial", "max_power_kw", "installed_at")
        ):
            meters.setdefault(meter[0], []).append(meter[1:])
        for household in households.select_related("user", "tariff").iterator(chunk_size=2_000):
            start = starts.get(household.pk)
            head = [
                household.user.email,
                household.name,
                household.address,
                household.timezone,
                household.region,
                household.tariff.name,
                local_date(start, household.timezone).isoformat() if start else "",
            ]
            for serial, power, installed in meters.get(household.pk) or [("", None, None)]:
                dataset.append(
                    [*head, serial, "" if power is None else str(power), installed.isoformat() if installed else ""]
                )
        return dataset
