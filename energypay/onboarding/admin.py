"""Bulk onboarding in the admin: "Import" and "Export" on the household list, the imports, the token download.

``OnboardingActions`` is a mixin that energypay/admin.py composes into the household admin (the
page that already knows meters, payments and statements). The flow is django-import-export's:
upload -> preview (every row's errors, nothing written) -> confirm (all or nothing) -> the
import's page, with its meters' tokens downloadable once.
"""

from __future__ import annotations

import csv
import io

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.http import require_POST
from import_export.admin import ImportExportMixin
from import_export.formats.base_formats import CSV, XLSX
from import_export.forms import ExportForm, ImportForm

from energypay.onboarding import downloads, rows
from energypay.onboarding.models import ImportBatch
from energypay.onboarding.resources import OnboardingResource
from meters.adminkit import ReadOnlyAdmin

IMPORT_PERMISSIONS = ("meters.add_household", "meters.add_meter", "accounts.add_user")
EXPORT_PERMISSIONS = ("meters.view_household", "meters.view_meter")


class OnboardingImportForm(ImportForm):
    def clean_import_file(self):
        upload = self.cleaned_data["import_file"]
        limit = settings.ONBOARDING_MAX_BYTES
        if upload.size > limit:
            # Refused before it is read: a file cut at the limit could still parse, as fewer households.
            raise ValidationError(f"The file is larger than {limit / 1024 / 1024:.0f} MB (ONBOARDING_MAX_BYTES).")
        return upload


class OnboardingActions(ImportExportMixin):
    """Import and export of households with their meters (energypay/onboarding/resources.py)."""

    resource_classes = [OnboardingResource]
    formats = [CSV, XLSX]
    import_form_class = OnboardingImportForm
    export_form_class = ExportForm  # every column, always: what the import reads back
    import_template_name = "admin/onboarding/import.html"
    skip_admin_log = True  # one audit entry for the whole import (importing.apply), not one per row

    def has_import_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perms(IMPORT_PERMISSIONS)

    def has_export_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perms(EXPORT_PERMISSIONS)

    def get_import_context_data(self, **kwargs):
        return {**super().get_import_context_data(**kwargs), **_columns_help()}

    def add_data_read_fail_error_to_form(self, form, error: Exception) -> None:
        if isinstance(error, UnicodeDecodeError):
            message = 'The file is not UTF-8 text. Save it as "CSV UTF-8" (or upload it as XLSX) and try again.'
        else:
            message = (
                "The file could not be read in the format chosen: check the format, and that every row has as "
                "many cells as the header."
            )
        form.add_error("import_file", message)

    def process_result(self, result, request: HttpRequest):
        outcome = getattr(result, "outcome", None)
        if outcome is None:
            # The confirmation found errors (the database changed since the preview): nothing was written.
            context = {
                **self.admin_site.each_context(request),
                **_columns_help(),
                "title": "Import",
                "opts": self.model._meta,
                "result": result,
                "form": self.get_import_form_class(request)(
                    self.get_import_formats(), self.get_import_resource_classes(request)
                ),
            }
            return TemplateResponse(request, [self.import_template_name], context, status=409)
        self.message_user(
            request,
            f"Imported {outcome.households:,} households and {outcome.meters:,} meters; download their tokens now.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(reverse("admin:onboarding_importbatch_change", args=[outcome.batch.pk]))


def _columns_help() -> dict:
    return {
        "onboarding_columns": rows.COLUMNS,
        "onboarding_required": rows.REQUIRED,
        "onboarding_max_rows": settings.ONBOARDING_MAX_ROWS,
    }


@admin.register(ImportBatch)
class ImportBatchAdmin(ReadOnlyAdmin):
    """Each import with who ran it and what it made; its page offers the one-time token download."""

    list_display = ["__str__", "created_at", "created_by", "file_name", "tokens"]
    list_select_related = ["created_by"]
    fields = ["created_at", "created_by", "file_name", "households", "meters", "tokens"]
    readonly_fields = fields
    change_form_template = "admin/onboarding/importbatch/change_form.html"

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="meter tokens")
    def tokens(self, batch: ImportBatch) -> str:
        if batch.tokens_claimed_at:
            return f"downloaded {batch.tokens_claimed_at:%Y-%m-%d %H:%M:%S} UTC"
        if timezone.now() >= downloads.available_until(batch):
            return "never downloaded (expired): issue new tokens from the meters list"
        return format_html("not downloaded yet (until {:%H:%M} UTC)", downloads.available_until(batch))

    def change_view(self, request, object_id, form_url="", extra_context=None):
        batch = self.get_object(request, object_id)
        extra = {}
        if batch is not None:
            extra = {
                "download_refused": downloads.refusal(batch, request.user, timezone.now()),
                "download_url": reverse("admin:onboarding_importbatch_tokens", args=[batch.pk]),
            }
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})

    def get_urls(self):
        own = [
            path(
                "<int:pk>/tokens.csv",
                self.admin_site.admin_view(self.tokens_view),
                name="onboarding_importbatch_tokens",
            )
        ]
        return own + super().get_urls()

    @staticmethod
    def _csv(issued: downloads.Issued) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["serial", "token"])
        writer.writerows(issued.tokens)
        return out.getvalue().encode()

    @method_decorator(require_POST)
    def tokens_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """POST only (it issues tokens); the answer is the CSV, sent once and never stored by any cache."""
        if not request.user.has_perms(IMPORT_PERMISSIONS):
            raise PermissionDenied
        batch = get_object_or_404(ImportBatch, pk=pk)
        try:
            issued = downloads.claim(batch.pk, acting_user=request.user, now=timezone.now())
        except downloads.DownloadGone as gone:
            response = HttpResponse(
                f"{gone} Issue new tokens from the meters list.\n", status=410, content_type="text/plain"
            )
            response["Cache-Control"] = "no-store"
            return response
        return _download(issued)


def _download(issued: downloads.Issued) -> HttpResponse:
    batch = issued.batch
    response = HttpResponse(ImportBatchAdmin._csv(issued), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="meter-tokens-import-{batch.pk}.csv"'
    response["Cache-Control"] = "no-store"
    return response
