"""BSV/EUR price quotes, as fetched: settlement prices with the newest usable one (payments/figures.py)."""

from __future__ import annotations

from django.contrib import admin

from meters.adminkit import ReadOnlyAdmin
from payments.models import PriceQuote


@admin.register(PriceQuote)
class PriceQuoteAdmin(ReadOnlyAdmin):
    list_display = ["fetched_at", "source", "bsv_eur"]
    list_filter = ["source"]
    show_full_result_count = False
