"""Columns and filters several payments pages share: a payment's state and transaction, a household's arrears."""

from __future__ import annotations

from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from django.contrib import admin
from django.db.models import DecimalField, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.html import format_html

from meters.models import HourlyUsage
from payments import figures
from payments.networks import explorer_url

CENTS = Decimal("0.01")


def eur_text(amount: Decimal) -> str:
    return f"{amount.quantize(CENTS, rounding=ROUND_HALF_UP)} EUR"


def raw_hex(raw: str) -> str:
    return format_html('<pre class="raw-hex">{}</pre>', raw)  # static/css/admin.css: no style attributes (CSP)


def explorer_link(txid: str) -> str:
    url = explorer_url(txid)
    if not url:
        return txid or "-"
    return format_html('<a href="{}" rel="noopener" target="_blank">{}</a>', url, txid)


class OutgoingPaymentColumns:
    """State and transaction columns of an outgoing payment (a settlement, a community pass)."""

    @admin.display(description="state", ordering="state")
    def state_badge(self, payment) -> str:
        # Coloured by static/css/admin.css: a style attribute would break the CSP.
        return format_html('<strong class="payment-state {}">{}</strong>', payment.state, payment.get_state_display())

    @admin.display(description="txid")
    def short_txid(self, payment) -> str:
        return format_html('<code title="{}">{}…</code>', payment.txid, payment.txid[:12])

    @admin.display(description="txid")
    def txid_link(self, payment) -> str:
        return explorer_link(payment.txid)

    @admin.display(description="raw transaction (hex)")
    def raw_tx_text(self, payment) -> str:
        return raw_hex(payment.raw_tx)


def arrears_eur(household: str, now: datetime) -> Coalesce:
    """EUR the household is in arrears with at ``now`` (payments/figures.py: the status page's figure too).

    A correlated subquery (served by the index on open usage lines), so the changelist's COUNT(*)
    leaves it out and only the rows of the page shown compute it.
    """
    lines = HourlyUsage.objects.filter(figures.in_arrears(now), household=OuterRef(household))
    total = lines.order_by().values("household").annotate(total=Sum(figures.line_amount())).values("total")
    return Coalesce(Subquery(total), Decimal("0"), output_field=DecimalField(max_digits=15, decimal_places=6))


def arrears_text(arrears: Decimal | None) -> str:
    # Quantized again: SQLite hands a subquery's SUM back through a float.
    return f"owes {figures.eur(arrears)} EUR" if arrears else "-"


class ArrearsColumn:
    """The "arrears" column of a page listing households (``arrears_of = "pk"``) or their wallets
    (``"household"``), with the annotation ``ArrearsFilter`` filters on."""

    arrears_of = "household"

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(arrears_eur=arrears_eur(self.arrears_of, timezone.now()))

    @admin.display(description="arrears", ordering="arrears_eur")
    def arrears(self, obj) -> str:
        return arrears_text(getattr(obj, "arrears_eur", None))  # None on an add page: nothing annotated


class ArrearsFilter(admin.SimpleListFilter):
    """Needs the ``arrears_eur`` annotation (``ArrearsColumn`` above) on the page's queryset."""

    title = "arrears"
    parameter_name = "arrears"

    def lookups(self, request, model_admin):
        return [("yes", "In arrears"), ("no", "Up to date")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(arrears_eur__gt=0)
        if self.value() == "no":
            return queryset.filter(arrears_eur=0)
        return queryset
