from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from meters.models import DynamicPrice, HourlyUsage, Household, Meter, MeterEvent, Reading, Tariff, TariffVersion
from meters.price_import import import_prices
from meters.usage import price_unpriced_lines


class ReadOnlyAdmin(admin.ModelAdmin):
    """Ledger data: staff look, nobody edits."""

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class TariffVersionInline(admin.TabularInline):
    model = TariffVersion
    extra = 0
    fields = ["valid_from", "kind", "flat_rate", "standing_charge_per_day", "bands"]
    show_change_link = True


@admin.register(Tariff)
class TariffAdmin(admin.ModelAdmin):
    list_display = ["name", "households"]
    search_fields = ["name"]
    inlines = [TariffVersionInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(household_count=Count("households"))

    @admin.display(ordering="household_count")
    def households(self, obj) -> int:
        return obj.household_count


class PriceImportForm(forms.Form):
    file = forms.FileField(help_text="CSV with header hour_start,rate_eur_per_kwh; hours in ISO 8601 with offset.")


@admin.register(TariffVersion)
class TariffVersionAdmin(admin.ModelAdmin):
    list_display = ["tariff", "valid_from", "kind", "flat_rate", "standing_charge_per_day", "price_count"]
    list_filter = ["kind", "tariff"]
    date_hierarchy = "valid_from"

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("tariff").annotate(n_prices=Count("prices"))

    @admin.display(description="hourly prices", ordering="n_prices")
    def price_count(self, obj) -> str:
        if obj.kind != TariffVersion.Kind.DYNAMIC:
            return "-"
        url = reverse("admin:meters_tariffversion_import_prices", args=[obj.pk])
        return format_html('{} <a href="{}">import CSV</a>', obj.n_prices, url)

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        # Hours that had no version in force may be priceable now.
        price_unpriced_lines(HourlyUsage.objects.filter(household__tariff=obj.tariff, hour_start__gte=obj.valid_from))

    def get_urls(self):
        own = [
            path(
                "<int:pk>/import-prices/",
                self.admin_site.admin_view(self.import_prices_view),
                name="meters_tariffversion_import_prices",
            ),
        ]
        return own + super().get_urls()

    def import_prices_view(self, request: HttpRequest, pk: int):
        if not self.has_change_permission(request):
            raise PermissionDenied
        version = get_object_or_404(TariffVersion, pk=pk)
        form = PriceImportForm(request.POST or None, request.FILES or None)
        errors: list[str] = []
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                text = upload.read(20 * 1024 * 1024).decode("utf-8-sig")
            except UnicodeDecodeError:
                errors = ["the file is not UTF-8 text"]
            else:
                result = import_prices(version, text)
                errors = result.errors
                if not errors:
                    self.message_user(
                        request,
                        f"Imported {result.created} prices ({result.unchanged} already stored); "
                        f"priced {result.repriced_lines} usage lines that were waiting for a price.",
                        messages.SUCCESS,
                    )
                    return HttpResponseRedirect(reverse("admin:meters_tariffversion_change", args=[pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Import hourly prices into {version}",
            "opts": self.model._meta,
            "original": version,
            "form": form,
            "errors": errors[:50],
            "more_errors": max(0, len(errors) - 50),
        }
        return TemplateResponse(request, "admin/meters/import_prices.html", context)


@admin.register(DynamicPrice)
class DynamicPriceAdmin(ReadOnlyAdmin):
    list_display = ["version", "hour_start", "rate"]
    list_filter = ["version__tariff"]
    date_hierarchy = "hour_start"
    list_select_related = ["version__tariff"]


class MeterInline(admin.TabularInline):
    model = Meter
    extra = 0
    fields = ["serial", "max_power_kw", "is_active", "last_seen_at"]
    readonly_fields = ["last_seen_at"]
    show_change_link = True


@admin.register(Household)
class HouseholdAdmin(admin.ModelAdmin):
    list_display = ["name", "user", "timezone", "tariff", "created_at"]
    list_filter = ["tariff", "timezone"]
    search_fields = ["name", "user__email", "address"]
    list_select_related = ["user", "tariff"]
    autocomplete_fields = ["user"]
    inlines = [MeterInline]


class MeterEventInline(admin.TabularInline):
    model = MeterEvent
    extra = 0
    fields = ["kind", "timestamp", "previous_kwh", "new_kwh", "created_at"]
    readonly_fields = fields
    can_delete = False
    max_num = 0
    verbose_name_plural = "events (register resets)"


@admin.register(Meter)
class MeterAdmin(admin.ModelAdmin):
    list_display = [
        "serial",
        "household",
        "is_active",
        "last_seen_at",
        "last_reading_at",
        "last_register_kwh",
        "reset_count",
        "has_token",
    ]
    list_filter = ["is_active"]
    search_fields = ["serial", "household__name", "household__user__email"]
    list_select_related = ["household"]
    autocomplete_fields = ["household"]
    readonly_fields = ["last_seen_at", "last_reading_at", "last_register_kwh", "readings_link", "created_at"]
    inlines = [MeterEventInline]
    actions = ["issue_new_token"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(n_resets=Count("events"))

    @admin.display(description="resets", ordering="n_resets")
    def reset_count(self, obj) -> int:
        return obj.n_resets

    @admin.display(boolean=True, description="token")
    def has_token(self, obj) -> bool:
        return bool(obj.token_hash)

    @admin.display(description="readings")
    def readings_link(self, obj) -> str:
        url = reverse("admin:meters_reading_changelist") + f"?meter__id__exact={obj.pk}"
        return format_html('<a href="{}">readings of this meter</a>', url)

    @admin.action(description="Issue a new token (the old one stops working)")
    def issue_new_token(self, request, queryset):
        # The tokens go straight into this response: never into messages, logs or the database.
        issued = [(meter, meter.issue_token()) for meter in queryset.order_by("serial")]
        context = {
            **self.admin_site.each_context(request),
            "title": "New meter tokens",
            "issued": issued,
            "opts": self.model._meta,
        }
        response = TemplateResponse(request, "admin/meters/issued_tokens.html", context)
        response["Cache-Control"] = "no-store"
        return response


@admin.register(Reading)
class ReadingAdmin(ReadOnlyAdmin):
    list_display = ["meter", "timestamp", "energy_kwh", "received_at"]
    search_fields = ["meter__serial"]
    list_select_related = ["meter"]
    date_hierarchy = "timestamp"
    show_full_result_count = False  # a count over all readings is a full scan


@admin.register(MeterEvent)
class MeterEventAdmin(ReadOnlyAdmin):
    list_display = ["meter", "kind", "timestamp", "previous_kwh", "new_kwh", "created_at"]
    list_filter = ["kind"]
    search_fields = ["meter__serial"]
    list_select_related = ["meter"]


class SettledFilter(admin.SimpleListFilter):
    title = "settled"
    parameter_name = "settled"

    def lookups(self, request, model_admin):
        return [("yes", "Settled"), ("no", "Open"), ("unpriced", "Waiting for a price")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(settled_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(settled_at__isnull=True)
        if self.value() == "unpriced":
            return queryset.filter(cost_eur__isnull=True)
        return queryset


@admin.register(HourlyUsage)
class HourlyUsageAdmin(ReadOnlyAdmin):
    list_display = ["household", "hour_start", "kind", "meter", "seq", "kwh", "rate", "cost_eur", "settled_at"]
    list_filter = ["kind", SettledFilter]
    search_fields = ["household__name", "meter__serial"]
    list_select_related = ["household", "meter"]
    date_hierarchy = "hour_start"
    show_full_result_count = False
