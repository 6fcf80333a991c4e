"""The meters admin: tariffs and their versions, households and meters, readings and the hourly ledger."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import DecimalField
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from lib.periods import HOUR, local_date
from meters.adminkit import ReadOnlyAdmin, ReadOnlyInline, count_of
from meters.audit import AuditHistory, record_action
from meters.calendars import get_calendar
from meters.contracts import (
    assign_tariff,
    contract_start,
    contracted_power_refusal,
    earliest_change,
    first_hour_of,
    local_hour,
    set_contracted_power,
    start_contract,
)
from meters.formfields import FiniteDecimalField
from meters.ingest import accept_held, discard_held
from meters.models import (
    ContractedPower,
    DynamicPrice,
    HeldReading,
    HourlyUsage,
    Household,
    Meter,
    MeterEvent,
    Reading,
    Tariff,
    TariffAssignment,
    TariffVersion,
    TaxRule,
    tax_rules_changed,
)
from meters.price_import import import_prices
from meters.taxes import overlapping, refusal
from meters.usage import price_unpriced_lines

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_TOKENS_PER_ACTION = 100


def has_priced_usage(version: TariffVersion) -> bool:
    """Asked once per loaded version: a change page asks five times (fieldsets, form, readonly fields)."""
    if not hasattr(version, "_has_priced_usage"):
        version._has_priced_usage = HourlyUsage.objects.filter(tariff_version=version).exists()
    return version._has_priced_usage


class TariffVersionForm(forms.ModelForm):
    """Versions are effective-dated: a new one may not start where usage is already priced."""

    class Meta:
        model = TariffVersion
        fields = [
            "tariff",
            "valid_from",
            "kind",
            "flat_rate",
            "standing_charge_per_day",
            "bands",
            "calendar",
            "period_rates",
            "power_rates",
            *TariffVersion.COMPONENTS,
        ]
        field_classes = {"flat_rate": FiniteDecimalField, "standing_charge_per_day": FiniteDecimalField}

    def clean(self) -> dict:
        cleaned = super().clean()
        valid_from = cleaned.get("valid_from")
        tariff = cleaned.get("tariff")
        tariff_id = tariff.pk if tariff else self.instance.tariff_id  # an inline form has no tariff field
        if valid_from and tariff_id:
            # "The version in force at an hour prices that hour, forever": a version slipped in
            # before priced hours would price their late readings differently from the rest.
            # Priced by any of its versions, whichever household was on it then (tariffs change).
            priced = HourlyUsage.objects.filter(
                tariff_version__in=TariffVersion.objects.filter(tariff_id=tariff_id), hour_start__gte=valid_from
            )
            last = priced.order_by("-hour_start").values_list("hour_start", flat=True).first()
            if last is not None:
                self.add_error(
                    "valid_from",
                    f"This tariff has already priced usage up to the hour starting {last:%Y-%m-%d %H:%M} UTC; "
                    f"a new version must start at {last + HOUR:%Y-%m-%d %H:%M} UTC or later.",
                )
        return cleaned


class TariffVersionInline(admin.TabularInline):
    model = TariffVersion
    form = TariffVersionForm
    extra = 0
    fields = ["valid_from", "kind", "flat_rate", "standing_charge_per_day", "bands", "calendar", "period_rates"]
    show_change_link = True

    def has_change_permission(self, request, obj=None) -> bool:
        # Existing versions are changed on their own page, which locks those already in force.
        return False


def template_initial(code: str) -> dict:
    """A new version's form filled from a calendar's template: its kind, calendar, and one empty price
    per energy and power period for staff to fill (an empty one is refused, naming the period)."""
    calendar = get_calendar(code)
    return {
        "kind": TariffVersion.Kind.PERIODS,
        "calendar": calendar.code,
        "period_rates": {period: "" for period in calendar.energy_periods},
        "power_rates": {period: "" for period in calendar.power_periods},
        "standing_charge_per_day": 0,
    }


@admin.register(Tariff)
class TariffAdmin(AuditHistory, admin.ModelAdmin):
    list_display = ["name", "households"]
    search_fields = ["name"]
    inlines = [TariffVersionInline]
    actions = ["add_2_0td_version", "add_2_0td_cm_version"]

    @admin.action(description="Add a 2.0TD version (P1/P2/P3 energy, P1/P2 power prices) to the selected tariff")
    def add_2_0td_version(self, request, queryset):
        return self._from_template(request, queryset, "2.0TD")

    @admin.action(description="Add a 2.0TD version for Ceuta and Melilla to the selected tariff")
    def add_2_0td_cm_version(self, request, queryset):
        return self._from_template(request, queryset, "2.0TD-CM")

    def _from_template(self, request, queryset, code: str):
        tariffs = list(queryset[:2])
        if len(tariffs) != 1:
            self.message_user(request, "Select exactly one tariff to add a version to.", messages.ERROR)
            return None
        url = reverse("admin:meters_tariffversion_add")
        return HttpResponseRedirect(f"{url}?tariff={tariffs[0].pk}&template={code}")

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(household_count=count_of(Household, "tariff"))

    @admin.display(ordering="household_count")
    def households(self, obj) -> int:
        return obj.household_count

    def save_related(self, request, form, formsets, change) -> None:
        super().save_related(request, form, formsets, change)
        added = [version for formset in formsets for version in formset.new_objects]
        if added:
            # Hours that had no version in force may be priceable now.
            start = min(version.valid_from for version in added)
            price_unpriced_lines(HourlyUsage.objects.filter(household__tariff=form.instance, hour_start__gte=start))


class TaxRuleForm(forms.ModelForm):
    """A tax rule: refused if it overlaps another of its tax, or if it would re-price days that have begun."""

    rate = FiniteDecimalField(
        min_value=0,
        max_value=1,
        decimal_places=10,
        help_text=TaxRule._meta.get_field("rate").help_text,
        error_messages={
            "min_value": "A rate is a fraction between 0 and 1 (0.21 for 21%%).",
            "max_value": "A rate is a fraction between 0 and 1 (0.21 for 21%%).",
        },
    )
    kinds = forms.MultipleChoiceField(
        label="applies to",
        choices=[(value, label) for value, label in HourlyUsage.Kind.choices if value != HourlyUsage.Kind.RETAX],
        widget=forms.CheckboxSelectMultiple,
        help_text="The kinds of ledger line it taxes.",
    )

    class Meta:
        model = TaxRule
        fields = [
            "tax",
            "name",
            "rate",
            "kinds",
            "compound",
            "region",
            "max_contracted_kw",
            "minimum_eur_per_mwh",
            "tariffs",
            "valid_from",
            "valid_to",
        ]
        widgets = {"tariffs": forms.CheckboxSelectMultiple}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.now = timezone.now()
        # As stored, before the form changes the instance: what the change is measured against.
        self.stored = TaxRule.objects.filter(pk=self.instance.pk).first() if self.instance.pk else None
        self.stored_tariffs = {t.pk for t in self.stored.tariffs.all()} if self.stored else set()

    def clean(self) -> dict:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        candidate = TaxRule(
            pk=self.instance.pk, **{name: cleaned.get(name) for name in self.Meta.fields if name != "tariffs"}
        )
        tariffs = {tariff.pk for tariff in cleaned.get("tariffs") or []}
        if why := refusal(self.stored, candidate, self.stored_tariffs, tariffs, self.now):
            raise forms.ValidationError(why)
        if clashes := overlapping(candidate, tariffs):
            names = "; ".join(str(rule) for rule in clashes)
            raise forms.ValidationError(
                f"Another rule of the tax {candidate.tax!r} already applies to some of these lines on some of "
                f"these days: {names}. End one the day before the other starts, or narrow its region, tariffs "
                "or kinds of line."
            )
        return cleaned


@admin.register(TaxRule)
class TaxRuleAdmin(AuditHistory, admin.ModelAdmin):
    """Tax rules price hours forever: a change may only reach days that have begun in no household's zone."""

    form = TaxRuleForm
    list_display = [
        "name",
        "tax",
        "rate",
        "applies_to",
        "compound",
        "region",
        "max_contracted_kw",
        "tariff_list",
        "valid_from",
        "valid_to",
    ]
    list_filter = ["tax", "region", "compound"]
    search_fields = ["name", "tax"]
    # A correction of a rate already billed is made by manage.py correct_tax_rate, never in this form.
    readonly_fields = ["replaces", "correction_reason"]
    date_hierarchy = "valid_from"

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("tariffs")

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # one by one, each checked against the days it prices
        return actions

    def has_delete_permission(self, request, obj=None) -> bool:
        if obj is not None and refusal(obj, None, set(), set(), timezone.now()):
            return False
        return super().has_delete_permission(request, obj)

    @admin.display(description="applies to")
    def applies_to(self, rule: TaxRule) -> str:
        labels = dict(HourlyUsage.Kind.choices)
        return ", ".join(str(labels.get(kind, kind)) for kind in rule.kinds)

    @admin.display(description="tariffs")
    def tariff_list(self, rule: TaxRule) -> str:
        return ", ".join(tariff.name for tariff in rule.tariffs.all()) or "every tariff"

    def save_related(self, request, form, formsets, change) -> None:
        super().save_related(request, form, formsets, change)
        tax_rules_changed()  # its tariffs were saved after the rule itself


class PriceImportForm(forms.Form):
    file = forms.FileField(help_text="CSV with header hour_start,rate_eur_per_kwh; hours in ISO 8601 with offset.")


@admin.register(TariffVersion)
class TariffVersionAdmin(AuditHistory, admin.ModelAdmin):
    form = TariffVersionForm
    list_display = ["tariff", "valid_from", "kind", "flat_rate", "standing_charge_per_day", "price_count"]
    list_filter = ["kind", "tariff"]
    date_hierarchy = "valid_from"
    list_select_related = ["tariff"]
    readonly_fields = ["price_count"]

    def get_readonly_fields(self, request, obj=None):
        if obj is not None and has_priced_usage(obj):
            # Tolls and charges price nothing (they say what part of a price they are, for the bill), so staff
            # may state them on a version in force; the prices themselves stay as they priced the hours.
            fixed = [name for name in TariffVersionForm.Meta.fields if name not in TariffVersion.COMPONENTS]
            return [*fixed, "price_count", "created_at"]
        return super().get_readonly_fields(request, obj)

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        code = request.GET.get("template")
        if code:
            try:
                initial.update(template_initial(code))
            except ValueError as error:
                self.message_user(request, str(error), messages.ERROR)
        return initial

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is not None and has_priced_usage(obj):
            description = (
                "This version has priced usage and prices those hours forever: add a new version instead. "
                "Only the tolls and charges inside its prices can still be stated."
            )
            fieldsets = [(None, {**fieldsets[0][1], "description": description})]
        return fieldsets

    def get_queryset(self, request):
        return (
            super().get_queryset(request).select_related("tariff").annotate(n_prices=count_of(DynamicPrice, "version"))
        )

    @admin.display(description="hourly prices", ordering="n_prices")
    def price_count(self, obj) -> str:
        if obj.kind != TariffVersion.Kind.DYNAMIC or obj.pk is None:
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
                if upload.size > MAX_UPLOAD_BYTES:
                    # Never read a prefix: a row cut in the middle can still parse, as a wrong price.
                    raise ValueError(f"the file is larger than {MAX_UPLOAD_BYTES // 1024 // 1024} MB")
                text = upload.read().decode("utf-8-sig")
            except UnicodeDecodeError:
                errors = ["the file is not UTF-8 text"]
            except ValueError as error:
                errors = [str(error)]
            else:
                result = import_prices(version, text)
                errors = result.errors
                if not errors:
                    summary = f"Imported {result.created} hourly prices ({result.unchanged} already stored)"
                    record_action(version, "tariff.import_prices", summary, actor=request.user, created=result.created)
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


# Meter forms, on their own page and inline in a household's: max power refuses NaN before a formset compares it.
FINITE_DECIMALS = {DecimalField: {"form_class": FiniteDecimalField}}


class MeterInline(admin.TabularInline):
    model = Meter
    formfield_overrides = FINITE_DECIMALS
    extra = 0
    fields = ["serial", "max_power_kw", "rental_per_day", "is_active", "last_seen_at"]
    readonly_fields = ["last_seen_at"]
    show_change_link = True


class TariffAssignmentInline(ReadOnlyInline):
    model = TariffAssignment
    fields = ["tariff", "valid_from", "created_by", "created_at"]
    readonly_fields = fields
    verbose_name_plural = "tariffs (the first starts the contract; a change is added on its own page)"


class HouseholdAddForm(forms.ModelForm):
    """A new household starts its contract on the tariff chosen, from a local day (today by default)."""

    contract_starts = forms.DateField(
        required=False,
        help_text="Local day in the household's time zone; the standing charge accrues from its first hour. "
        "Blank: today.",
    )

    class Meta:
        model = Household
        fields = ["user", "name", "tax_id", "address", "cups", "timezone", "region", "tariff"]


class HouseholdAdmin(AuditHistory, admin.ModelAdmin):
    """A household and its meters. Registered by energypay/admin.py, which adds the columns of higher apps.

    Its tariff changes only through a tariff assignment (its own page): the form never re-prices hours.
    """

    list_display = ["name", "user", "timezone", "region", "tariff", "created_at"]
    list_filter = ["tariff", "timezone", "region"]
    search_fields = ["name", "user__email", "address", "=cups", "=tax_id"]
    list_select_related = ["user", "tariff"]
    show_full_result_count = False  # a second COUNT(*) over every household
    autocomplete_fields = ["user"]
    inlines = [TariffAssignmentInline, MeterInline]
    readonly_fields = ["tariff_change", "contract_start", "contracted_power"]

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = HouseholdAddForm
        return super().get_form(request, obj, change, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        fields = super().get_readonly_fields(request, obj)
        return fields if obj is None else ["tariff", *fields]

    def get_inlines(self, request, obj=None):
        return self.inlines if obj is not None else [MeterInline]  # a new household has no tariff history yet

    @admin.display(description="tariff change")
    def tariff_change(self, household: Household) -> str:
        if household.pk is None:
            return "-"
        url = reverse("admin:meters_tariffassignment_add") + f"?household={household.pk}"
        planned = (
            f"a change is planned from {household.tariff_until:%Y-%m-%d %H:%M} UTC; " if household.tariff_until else ""
        )
        return format_html('{}<a href="{}">change the tariff from a day</a>', planned, url)

    @admin.display(description="contracted power")
    def contracted_power(self, household: Household) -> str:
        if household.pk is None:
            return "-"
        rows = list(household.contracted_powers.order_by("-valid_from")[:1])
        url = reverse("admin:meters_contractedpower_add") + f"?household={household.pk}"
        current = f"{rows[0]}; " if rows else "none recorded; "
        return format_html('{}<a href="{}">change it from a day</a>', current, url)

    @admin.display(description="contract start")
    def contract_start(self, household: Household) -> str:
        start = contract_start(household) if household.pk else None
        return f"{start:%Y-%m-%d %H:%M} UTC" if start else "-"

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        if not change:
            day = form.cleaned_data.get("contract_starts") or local_date(timezone.now(), obj.timezone)
            start_contract(obj.pk, first_hour_of(day, obj.timezone), acting_user=request.user)


class TariffAssignmentForm(forms.ModelForm):
    """A tariff change from a local day (and hour) of the household: never before the hours that may be priced."""

    starts_on = forms.DateField(help_text="Local day in the household's time zone.")
    at_hour = forms.IntegerField(
        min_value=0, max_value=23, required=False, help_text="Local clock hour (0-23); blank: midnight."
    )

    class Meta:
        model = TariffAssignment
        fields = ["household", "tariff"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.now = timezone.now()  # the same instant checks and saves: a clock crossing the hour changes nothing

    def clean(self) -> dict:
        cleaned = super().clean()
        household, day = cleaned.get("household"), cleaned.get("starts_on")
        if household is None or day is None:
            return cleaned
        self.valid_from = local_hour(day, cleaned.get("at_hour") or 0, household.timezone)
        earliest = earliest_change(self.now)
        if self.valid_from < earliest:
            self.add_error(
                "starts_on",
                f"A tariff change cannot start before {earliest:%Y-%m-%d %H:%M} UTC: earlier hours may already be "
                "priced or paid, and keep their tariff.",
            )
        return cleaned


@admin.register(TariffAssignment)
class TariffAssignmentAdmin(AuditHistory, admin.ModelAdmin):
    """Tariff changes: added, never edited or deleted (a planned change is replaced by assigning again)."""

    form = TariffAssignmentForm
    list_display = ["household", "tariff", "valid_from", "created_by", "created_at"]
    list_filter = ["tariff"]
    search_fields = ["household__name", "household__user__email"]
    list_select_related = ["household", "tariff", "created_by"]
    date_hierarchy = "valid_from"
    autocomplete_fields = ["household"]
    show_full_result_count = False

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["household", "tariff", "starts_on", "at_hour"]
        return ["household", "tariff", "valid_from", "created_by", "created_at"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else ["household", "tariff", "valid_from", "created_by", "created_at"]

    def has_change_permission(self, request, obj=None) -> bool:
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change) -> None:
        saved = assign_tariff(obj.household_id, obj.tariff, form.valid_from, now=form.now, acting_user=request.user)
        obj.pk, obj.valid_from, obj.created_at, obj.created_by = (
            saved.pk,
            saved.valid_from,
            saved.created_at,
            request.user,
        )


class ContractedPowerForm(forms.ModelForm):
    """Contracted kW per power period from a local day (and hour): never re-prices a charged power term."""

    starts_on = forms.DateField(help_text="Local day in the household's time zone.")
    at_hour = forms.IntegerField(
        min_value=0, max_value=23, required=False, help_text="Local clock hour (0-23); blank: midnight."
    )

    class Meta:
        model = ContractedPower
        fields = ["household", "kw"]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.now = timezone.now()

    def clean(self) -> dict:
        cleaned = super().clean()
        household, day = cleaned.get("household"), cleaned.get("starts_on")
        if household is None or day is None or "kw" not in cleaned:
            return cleaned
        self.valid_from = local_hour(day, cleaned.get("at_hour") or 0, household.timezone)
        self.instance.valid_from = self.valid_from
        refused = contracted_power_refusal(household, self.valid_from, self.now)
        if refused:
            self.add_error("starts_on", refused)
        # The household's tariff decides the power periods: each needs its kW.
        version = household.tariff.versions.order_by("-valid_from").first()
        if version is not None and version.has_power_term:
            periods = get_calendar(version.calendar).power_periods
            missing = [period for period in periods if period not in (cleaned["kw"] or {})]
            if missing:
                self.add_error("kw", f"{household.tariff} prices power in {', '.join(periods)}: give kW for each.")
        return cleaned


@admin.register(ContractedPower)
class ContractedPowerAdmin(AuditHistory, admin.ModelAdmin):
    """Contracted power per household: added, never edited or deleted (a planned change is replaced)."""

    form = ContractedPowerForm
    list_display = ["household", "kw", "valid_from", "created_by", "created_at"]
    search_fields = ["household__name", "household__user__email", "=household__cups"]
    list_select_related = ["household", "created_by"]
    date_hierarchy = "valid_from"
    autocomplete_fields = ["household"]
    show_full_result_count = False

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["household", "kw", "starts_on", "at_hour"]
        return ["household", "kw", "valid_from", "created_by", "created_at"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else ["household", "kw", "valid_from", "created_by", "created_at"]

    def has_change_permission(self, request, obj=None) -> bool:
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change) -> None:
        saved = set_contracted_power(obj.household_id, obj.kw, form.valid_from, now=form.now, acting_user=request.user)
        obj.pk, obj.valid_from, obj.created_at, obj.created_by = (
            saved.pk,
            saved.valid_from,
            saved.created_at,
            request.user,
        )


class MeterEventInline(ReadOnlyInline):
    model = MeterEvent
    fields = ["kind", "timestamp", "previous_kwh", "new_kwh", "created_at"]
    readonly_fields = fields
    verbose_name_plural = "events (register resets and one-off dips)"


@admin.register(Meter)
class MeterAdmin(AuditHistory, admin.ModelAdmin):
    formfield_overrides = FINITE_DECIMALS
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
    show_full_result_count = False  # a second COUNT(*) over every meter
    search_fields = ["serial", "household__name", "household__user__email"]
    list_select_related = ["household"]
    autocomplete_fields = ["household"]
    readonly_fields = [
        "last_seen_at",
        "last_reading_at",
        "last_register_kwh",
        "readings_link",
        "held_link",
        "created_at",
    ]
    inlines = [MeterEventInline]
    actions = ["issue_new_token"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(n_resets=count_of(MeterEvent, "meter"))

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

    @admin.display(description="held readings")
    def held_link(self, obj) -> str:
        url = reverse("admin:meters_heldreading_changelist") + f"?meter__id__exact={obj.pk}"
        return format_html('<a href="{}">readings held for review</a>', url)

    @admin.action(description="Issue a new token (the old one stops working)", permissions=["change"])
    def issue_new_token(self, request, queryset):
        meters = list(queryset.order_by("serial")[: MAX_TOKENS_PER_ACTION + 1])
        if len(meters) > MAX_TOKENS_PER_ACTION:
            self.message_user(
                request, f"Select at most {MAX_TOKENS_PER_ACTION} meters; no token was changed.", messages.ERROR
            )
            return None
        # The tokens go straight into this response: never into messages, logs or the database.
        with transaction.atomic():
            issued = [(meter, meter.issue_token()) for meter in meters]
            for meter in meters:  # the token itself goes nowhere but the response
                summary = "Issued a new token; the old one stopped working"
                record_action(meter, "meter.issue_token", summary, actor=request.user)
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


@admin.register(HeldReading)
class HeldReadingAdmin(ReadOnlyAdmin):
    """Readings a meter's token could not bill (too old, before installation): staff accept or discard.

    The rows are never edited by hand: the two actions record who decided what, and when, on the row
    and in the admin's history (LogEntry).
    """

    list_display = [
        "meter",
        "timestamp",
        "energy_kwh",
        "why_held",
        "received_at",
        "state",
        "decided_by",
        "decided_at",
        "outcome",
    ]
    list_filter = ["state", "reason"]
    search_fields = ["meter__serial"]
    list_select_related = ["meter", "decided_by"]
    date_hierarchy = "timestamp"
    show_full_result_count = False
    actions = ["accept", "discard"]

    def has_review_permission(self, request) -> bool:
        return request.user.has_perm("meters.change_heldreading")

    @admin.display(description="reason", ordering="reason")
    def why_held(self, held: HeldReading) -> str:
        # The code as the meter was answered, in words for staff (the installation date from the meter).
        if held.reason == "reading.before_installation":
            return f"before the meter's installation ({held.meter.installed_at:%Y-%m-%d %H:%M} UTC)"
        if held.reason == "reading.too_old":
            return f"older than the billing window ({settings.INGEST_BACKFILL_DAYS} days) when it arrived"
        return held.reason

    @admin.action(description="Accept: bill the selected readings now (staff decision)", permissions=["review"])
    def accept(self, request, queryset):
        self._review(request, queryset, accept_held, "accepted")

    @admin.action(description="Discard: never bill the selected readings (the rows stay)", permissions=["review"])
    def discard(self, request, queryset):
        self._review(request, queryset, discard_held, "discarded")

    def _review(self, request, queryset, decide, verb: str) -> None:
        held = list(queryset.filter(state=HeldReading.State.HELD).order_by("timestamp")[: MAX_TOKENS_PER_ACTION + 1])
        if len(held) > MAX_TOKENS_PER_ACTION:
            self.message_user(
                request, f"Select at most {MAX_TOKENS_PER_ACTION} readings; none was {verb}.", messages.ERROR
            )
            return
        # In time order, one transaction each: each accepted reading is judged against the ones before it.
        for row in held:
            result = decide(row.pk, acting_user=request.user, now=timezone.now())
            row.refresh_from_db()
            self.log_change(request, row, row.outcome)  # the audit trail's entry is accept_held's/discard_held's
            self.message_user(
                request, result, messages.SUCCESS if row.state != HeldReading.State.HELD else messages.WARNING
            )
        if not held:
            self.message_user(request, "None of the selected readings is still held.", messages.WARNING)


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
