"""Statements: numbered monthly documents of a household's bill, never edited or deleted.

- ``Series``: a numbering series as data (``EP`` for statements, ``EPR`` for corrective notes); one
  active series per purpose. ``SeriesCounter`` is the last number used in a series and year: the
  issuing transaction locks it and raises it with the statements it inserts, so a rollback takes
  its numbers back with it (a database sequence would skip them).
- ``Statement``: one per household, local calendar month and revision: revision 0 is the month's
  statement, 1, 2, ... its corrective notes, each carrying only the difference to what the earlier
  ones said. The issuer and the customer are snapshotted on it; ``ledger_*`` are the exact sums of
  the hourly ledger it covers, which the corrections job compares against the ledger later.
- ``StatementLine``: energy per rate, standing charge, each tax, and a rounding line when the lines
  rounded to the cent do not add up to the ledger's total rounded once.
- ``StatementPayment``: the settlements that paid the month's hours, as they stood at issue.
- ``StatementWithdrawal``: the withdrawals of the wallet's balance in the month (the final statement
  of a closed account shows where its balance went).
- ``StatementDelivery``: the outbox of mails (one per issue, one per staff re-send), retried until sent.
- ``InvoiceRecordChain`` and ``InvoiceRecord``: VERI*FACTU's chained record of every issued document, one
  chain per issuer NIF (payments.statements.verifactu.records; docs/spain.md).
- ``RecordQueue``, ``RecordSubmission`` and ``RecordTransmission``: sending those records to the AEAT, apart from
  issuing: each issuer's queue (the wait, the batch in flight), every batch with the answer as received, and each
  record's outcome (payments.statements.verifactu.sending). Issuing never locks or reads them.

Statements, lines and payments are final: ``save()`` of a stored row, ``delete()`` and a queryset's
``update()``/``delete()`` raise ``DocumentIsFinal``, and on PostgreSQL a trigger refuses UPDATE and
DELETE as well (migration 0002); so are invoice records (0004). Lock order: the series counter, then the
issuer's chain head (``InvoiceRecordChain``); an anulación locks only the chain head.
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from lib.money import format_kwh, format_money, format_percent, format_rate
from meters.models import Household


class DocumentIsFinal(Exception):
    """An issued statement, its lines or its payments were about to change: a correction is a new statement."""


class FinalQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise DocumentIsFinal(f"{self.model.__name__} rows are never updated; issue a corrective note instead.")

    def delete(self):
        raise DocumentIsFinal(f"{self.model.__name__} rows are never deleted; issue a corrective note instead.")


class Final(models.Model):
    """Rows written once, at issue, in bulk; never changed after (pretix's invoices, STYLE 24)."""

    objects = FinalQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args, **kwargs) -> None:
        if not self._state.adding:
            raise DocumentIsFinal(f"{type(self).__name__} {self.pk} is issued and final.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise DocumentIsFinal(f"{type(self).__name__} {self.pk} is issued and final.")


class Series(models.Model):
    """A numbering series: its code starts every number (``EP-2026-000123``), counted per year."""

    class Purpose(models.TextChoices):
        STATEMENT = "statement", _("Monthly statements")
        CORRECTIVE = "corrective", _("Corrective notes")

    code = models.CharField(
        max_length=10,
        unique=True,
        validators=[RegexValidator(r"^[A-Z][A-Z0-9]{0,9}$", "Capital letters and digits, starting with a letter.")],
    )
    purpose = models.CharField(max_length=12, choices=Purpose.choices)
    name = models.CharField(max_length=100)
    active = models.BooleanField(default=True, help_text="The series new documents of its purpose are numbered in.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]
        verbose_name_plural = "series"
        constraints = [
            models.UniqueConstraint(fields=["purpose"], condition=Q(active=True), name="series_one_active_per_purpose")
        ]

    def __str__(self) -> str:
        return f"{self.code} ({self.get_purpose_display()})"

    @classmethod
    def active_for(cls, purpose: str) -> Series:
        """The series new documents of ``purpose`` are numbered in.

        A database without any series of the purpose (one emptied by hand or by a test) gets the
        default one the first migration creates; series that exist but are all inactive are a
        configuration error staff must see, never guessed around.
        """
        if series := cls.objects.filter(purpose=purpose, active=True).first():
            return series
        if not cls.objects.filter(purpose=purpose).exists():
            # Two issuers may both get here: get_or_create's unique code lets one insert and the other read it.
            code, name = DEFAULT_SERIES[purpose]
            cls.objects.get_or_create(code=code, defaults={"purpose": purpose, "name": name})
        return cls.objects.get(purpose=purpose, active=True)

    def number_text(self, year: int, number: int) -> str:
        return f"{self.code}-{year}-{number:06d}"


DEFAULT_SERIES = {
    Series.Purpose.STATEMENT: ("EP", "Monthly statements"),
    Series.Purpose.CORRECTIVE: ("EPR", "Corrective notes"),
}


class SeriesCounter(models.Model):
    """The last number used in a series and year; locked and raised in the transaction that inserts statements."""

    series = models.ForeignKey(Series, on_delete=models.PROTECT, related_name="counters")
    year = models.PositiveSmallIntegerField()
    last_number = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["series", "-year"]
        constraints = [models.UniqueConstraint(fields=["series", "year"], name="series_counter_unique_year")]

    def __str__(self) -> str:
        return f"{self.series.code} {self.year}: {self.last_number}"


class Statement(Final):
    """A household's bill for one local calendar month (revision 0), or a corrective note to it (1, 2, ...).

    A corrective note is a Spanish factura rectificativa (RD 1619/2012 art. 15; docs/spain.md): typed by its
    cause (``rectification_type`` R1-R4, the TipoFactura of its VERI*FACTU record) and by its method
    (``rectification_method``: by differences, I, or by substitution, S), with the cause in words
    (``rectification_reason``); a statement has none of the three.
    """

    class Kind(models.TextChoices):
        STATEMENT = "statement", _("Statement")
        CORRECTIVE = "corrective", _("Corrective note")

    class RectificationType(models.TextChoices):
        # The causes of RD 1619/2012 art. 15 and Ley 37/1992 art. 80, as Orden HAC/1177/2024 lists TipoFactura.
        R1 = "R1", _("R1: error founded in law and art. 80 One, Two and Six of the VAT law")
        R2 = "R2", _("R2: art. 80 Three of the VAT law (insolvency proceedings)")
        R3 = "R3", _("R3: art. 80 Four of the VAT law (bad debts)")
        R4 = "R4", _("R4: other causes")

    class RectificationMethod(models.TextChoices):
        DIFFERENCES = "I", _("by differences")
        SUBSTITUTION = "S", _("by substitution")

    series = models.ForeignKey(Series, on_delete=models.PROTECT, related_name="statements")
    year = models.PositiveSmallIntegerField(help_text="The numbering year: the issue date's.")
    number = models.PositiveIntegerField()
    code = models.CharField("number", max_length=32, unique=True)
    kind = models.CharField(max_length=12, choices=Kind.choices)
    revision = models.PositiveSmallIntegerField(default=0, help_text="0: the statement; 1, 2, ...: corrective notes.")
    corrects = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="corrections", help_text="The statement."
    )
    rectification_type = models.CharField(
        max_length=2, choices=RectificationType.choices, blank=True, help_text="Corrective notes: the cause, R1-R4."
    )
    rectification_method = models.CharField(
        max_length=1, choices=RectificationMethod.choices, blank=True, help_text="Corrective notes: I or S."
    )
    rectification_reason = models.CharField(
        max_length=200, blank=True, help_text="Corrective notes: the cause in words, as the document says it."
    )
    household = models.ForeignKey(Household, on_delete=models.PROTECT, related_name="statements")
    month = models.DateField(help_text="First day of the household's local calendar month.")
    period_start = models.DateTimeField(help_text="The local month's first instant (UTC).")
    period_end = models.DateTimeField(help_text="The next local month's first instant (UTC).")
    timezone = models.CharField(max_length=64)
    language = models.CharField(max_length=10)
    currency = models.CharField(max_length=3, default="EUR")
    issued_at = models.DateTimeField()
    issue_date = models.DateField(help_text="In the issuer's time zone (STATEMENT_TIME_ZONE).")
    issued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    issuer = models.JSONField(help_text="Who issued it (name, tax id, address), as it was at issue.")
    customer = models.JSONField(help_text="The household (name, address, email), as it was at issue.")
    # What it bills (rounded to the cent; a corrective note's are differences).
    energy_kwh = models.DecimalField(max_digits=15, decimal_places=6)
    net_eur = models.DecimalField(max_digits=12, decimal_places=2)
    tax_eur = models.DecimalField(max_digits=12, decimal_places=2)
    total_eur = models.DecimalField(max_digits=12, decimal_places=2)
    # The exact ledger sums it covers (a corrective note: the change since the documents before it).
    ledger_cost_eur = models.DecimalField(max_digits=15, decimal_places=6)
    ledger_tax_eur = models.DecimalField(max_digits=15, decimal_places=6)
    ledger_kwh = models.DecimalField(max_digits=15, decimal_places=6)
    # The month's position when it was issued: paid and unpaid add up to every document of the month so far.
    settled_eur = models.DecimalField(max_digits=12, decimal_places=2)
    unsettled_eur = models.DecimalField(max_digits=12, decimal_places=2)
    settlement_count = models.PositiveIntegerField(default=0)
    settled_satoshis = models.PositiveBigIntegerField(default=0)
    # The wallet at the end of the month (statements only).
    balance_at = models.DateTimeField(null=True, blank=True)
    balance_satoshis = models.BigIntegerField(null=True, blank=True)
    balance_eur = models.DecimalField(max_digits=15, decimal_places=2, null=True, blank=True)
    balance_bsv_eur = models.DecimalField(
        "BSV/EUR of the balance", max_digits=18, decimal_places=8, null=True, blank=True
    )
    # The Spanish bill's content for a 2.0TD supply (issue 18 item 7, payments.statements.spain), as it was at
    # issue: contracted power, kWh and terms per period, tolls and charges, history, the distributor, the year's
    # disclosure (mix, claims, bono social). Empty for other households and for corrective notes.
    bill = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-issued_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["series", "year", "number"], name="statement_unique_number"),
            # Exactly once per household, month and revision: the claim every issuer's insert relies on.
            models.UniqueConstraint(fields=["household", "month", "revision"], name="statement_once_per_month"),
            models.CheckConstraint(
                condition=Q(kind="statement", revision=0, corrects__isnull=True)
                | Q(kind="corrective", revision__gt=0, corrects__isnull=False),
                name="statement_kind_matches_revision",
            ),
            # Only a corrective note is a rectificativa, and every one is typed by cause and method.
            models.CheckConstraint(
                condition=Q(kind="statement", rectification_type="", rectification_method="", rectification_reason="")
                | Q(
                    kind="corrective",
                    rectification_type__in=["R1", "R2", "R3", "R4"],
                    rectification_method__in=["I", "S"],
                ),
                name="statement_rectification_only_corrective",
            ),
        ]
        indexes = [
            models.Index(fields=["month", "kind"], name="statement_month_kind"),
            models.Index(fields=["household", "-month", "-revision"], name="statement_household"),
        ]

    def __str__(self) -> str:
        return self.code

    @property
    def is_credit(self) -> bool:
        """A corrective note that gives money back (its total is negative)."""
        return self.kind == self.Kind.CORRECTIVE and self.total_eur < 0

    @property
    def title(self) -> str:
        if self.kind == self.Kind.STATEMENT:
            return str(_("Statement"))
        return str(_("Credit note")) if self.is_credit else str(_("Debit note"))

    @property
    def is_rectificativa(self) -> bool:
        return self.kind == self.Kind.CORRECTIVE

    @property
    def rectification_text(self) -> str:
        """ "R4: other causes, by differences", in the reader's language (rendered where shown)."""
        if not self.is_rectificativa:
            return ""
        return str(
            _("%(type)s, %(method)s")
            % {
                "type": self.RectificationType(self.rectification_type).label,
                "method": self.RectificationMethod(self.rectification_method).label,
            }
        )

    @property
    def rectification_reason_text(self) -> str:
        """The cause in words: the corrections job's own text is translated; what staff wrote is shown as written."""
        return gettext(self.rectification_reason) if self.rectification_reason else ""

    @property
    def file_stem(self) -> str:
        return f"statement-{self.code}"


class StatementLine(Final):
    """One line of a statement: energy at a rate, the standing charge, a tax, or the rounding."""

    class Kind(models.TextChoices):
        ENERGY = "energy", _("Energy")
        STANDING = "standing", _("Standing charge")
        POWER = "power", _("Power term")
        RENTAL = "rental", _("Meter rental")
        TAX = "tax", _("Tax")
        ROUNDING = "rounding", _("Rounding")

    statement = models.ForeignKey(Statement, on_delete=models.PROTECT, related_name="lines")
    position = models.PositiveSmallIntegerField()
    # What the line is about, stable across a month's documents, so a corrective note differs by key:
    # energy:<tariff version>:<rate>, standing:<tariff version>, tax:<rate or rule>, rounding.
    key = models.CharField(max_length=64)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    name = models.CharField(max_length=100, blank=True, help_text="A tax's name; other lines render from their kind.")
    quantity = models.DecimalField(max_digits=15, decimal_places=6, null=True, blank=True, help_text="kWh or days.")
    unit_price = models.DecimalField(
        max_digits=12, decimal_places=6, null=True, blank=True, help_text="EUR/kWh or EUR/day; none for hourly prices."
    )
    tax_rate = models.DecimalField(max_digits=16, decimal_places=12, null=True, blank=True)
    base_eur = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    exact_eur = models.DecimalField(max_digits=15, decimal_places=6, help_text="The ledger's sum, unrounded.")
    amount_eur = models.DecimalField(max_digits=12, decimal_places=2)

    class Meta:
        ordering = ["statement", "position"]
        constraints = [models.UniqueConstraint(fields=["statement", "position"], name="statement_line_position")]

    def __str__(self) -> str:
        return f"{self.statement_id} #{self.position} {self.key}: {self.amount_eur}"

    @property
    def label(self) -> str:
        """What the line is, in the reader's language (rendered where shown, from the kind and the figures)."""
        if self.kind == self.Kind.ENERGY:
            if self.unit_price is None:
                return str(_("Energy at hourly prices"))
            return str(_("Energy at %(rate)s") % {"rate": format_rate(self.unit_price)})
        if self.kind in (self.Kind.STANDING, self.Kind.POWER, self.Kind.RENTAL):
            return str(self.Kind(self.kind).label)
        if self.kind == self.Kind.TAX:
            return self.name or str(_("Tax at %(percent)s") % {"percent": format_percent(self.tax_rate)})
        return str(_("Rounding to the cent"))

    @property
    def unit(self) -> str:
        return {self.Kind.ENERGY: "kWh", self.Kind.STANDING: "days"}.get(self.kind, "")

    @property
    def quantity_text(self) -> str:
        """ "123.456 kWh", "30 days"; nothing for taxes and rounding (rendered where shown)."""
        if self.quantity is None or self.kind not in (self.Kind.ENERGY, self.Kind.STANDING):
            return ""
        if self.kind == self.Kind.ENERGY:
            return format_kwh(self.quantity, 3)
        days = self.quantity.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP).normalize()
        return ngettext("%(days)s day", "%(days)s days", 1 if days == 1 else 2) % {"days": f"{days:f}"}

    @property
    def price_text(self) -> str:
        """ "€0.2400/kWh", "€0.3500/day", "21%" (rendered where shown)."""
        if self.kind == self.Kind.ENERGY:
            return format_rate(self.unit_price) if self.unit_price is not None else str(_("hourly prices"))
        if self.kind == self.Kind.STANDING and self.unit_price is not None:
            return str(_("%(price)s/day") % {"price": format_money(self.unit_price, "EUR", places=4)})
        if self.kind == self.Kind.TAX and self.tax_rate is not None:
            return format_percent(self.tax_rate)
        return ""

    @property
    def tax_percent(self) -> Decimal | None:
        return None if self.tax_rate is None else (self.tax_rate * 100).normalize()


class StatementPayment(Final):
    """A settlement that paid hours of the statement's month: its share of them, as at issue."""

    statement = models.ForeignKey(Statement, on_delete=models.PROTECT, related_name="payments")
    settlement = models.ForeignKey("payments.Settlement", on_delete=models.PROTECT, related_name="+")
    txid = models.CharField(max_length=64)
    paid_at = models.DateTimeField()
    eur = models.DecimalField(max_digits=15, decimal_places=6, help_text="What it paid for the month's hours.")
    satoshis = models.PositiveBigIntegerField(help_text="Its satoshis for those hours.")

    class Meta:
        ordering = ["statement", "paid_at", "pk"]
        constraints = [models.UniqueConstraint(fields=["statement", "settlement"], name="statement_payment_once")]

    def __str__(self) -> str:
        return f"{self.statement_id}: {self.txid} {self.eur} EUR"


class StatementWithdrawal(Final):
    """A withdrawal of the wallet's balance shown on the statement: the last one of a closed account shows it."""

    statement = models.ForeignKey(Statement, on_delete=models.PROTECT, related_name="withdrawals")
    withdrawal = models.ForeignKey("payments.Withdrawal", on_delete=models.PROTECT, related_name="+")
    txid = models.CharField(max_length=64)
    address = models.CharField(max_length=64)
    sent_at = models.DateTimeField()
    satoshis = models.PositiveBigIntegerField(help_text="Sent to the address.")
    fee_satoshis = models.PositiveBigIntegerField()

    class Meta:
        ordering = ["statement", "sent_at", "pk"]
        constraints = [models.UniqueConstraint(fields=["statement", "withdrawal"], name="statement_withdrawal_once")]

    def __str__(self) -> str:
        return f"{self.statement_id}: {self.satoshis} sat to {self.address}"


class StatementDeliveryQuerySet(models.QuerySet):
    def due(self, now) -> StatementDeliveryQuerySet:
        """Deliveries waiting to be mailed whose next attempt is now or past (the partial index serves this)."""
        return self.filter(sent_at__isnull=True, next_attempt_at__isnull=False, next_attempt_at__lte=now)


class StatementDelivery(models.Model):
    """A statement mailed to its household: one when issued, one more each time staff re-send it (an outbox)."""

    class Reason(models.TextChoices):
        ISSUED = "issued", "Issued"
        RESENT = "resent", "Re-sent by staff"

    statement = models.ForeignKey(Statement, on_delete=models.PROTECT, related_name="deliveries")
    to = models.CharField(max_length=254, blank=True, help_text="The household's address when it was queued.")
    reason = models.CharField(max_length=10, choices=Reason.choices, default=Reason.ISSUED)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # The outbox: due while sent_at is null and next_attempt_at is set and past.
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    skip_reason = models.CharField(max_length=100, blank=True, help_text="Why it is not mailed (no address).")

    objects = StatementDeliveryQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name_plural = "statement deliveries"
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(sent_at__isnull=True, next_attempt_at__isnull=False),
                name="statement_delivery_due",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.statement_id} to {self.to or '(no address)'}: {self.state}"

    @property
    def state(self) -> str:
        if self.sent_at:
            return "sent"
        if self.skip_reason:
            return "not sent"
        return "retrying" if self.attempts else "pending"


class InvoiceRecordChain(models.Model):
    """The head of one issuer's chain of VERI*FACTU invoice records (one per issuer NIF, across all series).

    Whoever appends records locks this row first (``select_for_update``), links the new records to
    the head it holds (the identity and hash of the newest record) and moves the head, all in the
    transaction that issues the statements: two issuers of one NIF take turns here, so the chain
    never forks. Lock order: a series counter (issuing), then this row; an anulación takes only this row.
    """

    issuer_tax_id = models.CharField("issuer NIF", max_length=9, unique=True)
    length = models.PositiveIntegerField(default=0, help_text="Records in the chain: the newest one's position.")
    # The newest record's identity and hash: what the next record carries as its previous one.
    last_issuer_tax_id = models.CharField(max_length=9, blank=True)
    last_invoice_number = models.CharField(max_length=60, blank=True)
    last_invoice_date = models.DateField(null=True, blank=True)
    last_hash = models.CharField(max_length=64, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["issuer_tax_id"]

    def __str__(self) -> str:
        return f"{self.issuer_tax_id}: {self.length} records"


class InvoiceRecord(Final):
    """A VERI*FACTU "registro de facturación": an alta for every issued statement or corrective note, or an
    anulación of a statement that should not exist. Written once, in generation order, never changed.

    The columns are the fields the hash covers and the chain's link; ``content`` holds the rest of the
    record as it was generated (issuer name, description, recipient, tax breakdown, corrected invoice,
    invoicing system), so the AEAT XML is rebuilt from the row alone, whatever settings say later.
    """

    class Kind(models.TextChoices):
        ALTA = "alta", "Registro de alta"
        ANULACION = "anulacion", "Registro de anulación"

    chain = models.ForeignKey(InvoiceRecordChain, on_delete=models.PROTECT, related_name="records")
    position = models.PositiveIntegerField(help_text="1, 2, ...: the order the chain's records were generated in.")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    statement = models.ForeignKey(Statement, on_delete=models.PROTECT, related_name="invoice_records")
    # The invoice the record is about (IDFactura): for an anulación, the cancelled one.
    issuer_tax_id = models.CharField("IDEmisorFactura", max_length=9)
    invoice_number = models.CharField("NumSerieFactura", max_length=60)
    invoice_date = models.DateField("FechaExpedicionFactura")
    invoice_type = models.CharField("TipoFactura", max_length=2, blank=True, help_text="F1, F2, R1-R5 (altas).")
    total_tax = models.DecimalField("CuotaTotal", max_digits=14, decimal_places=2, null=True, blank=True)
    total = models.DecimalField("ImporteTotal", max_digits=14, decimal_places=2, null=True, blank=True)
    # The previous record of the chain (Encadenamiento/RegistroAnterior): position - 1; blank for the first.
    previous_issuer_tax_id = models.CharField(max_length=9, blank=True)
    previous_invoice_number = models.CharField(max_length=60, blank=True)
    previous_invoice_date = models.DateField(null=True, blank=True)
    previous_hash = models.CharField(max_length=64, blank=True)
    generated_at = models.DateTimeField()
    generated_text = models.CharField("FechaHoraHusoGenRegistro", max_length=32, help_text="As hashed.")
    hash = models.CharField("Huella", max_length=64)
    content = models.JSONField(default=dict)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["chain", "position"]
        constraints = [
            models.UniqueConstraint(fields=["chain", "position"], name="invoice_record_position"),
            # The backstop of the chain lock: a record links to the one at position - 1 (the first to none), and
            # positions are unique, so two appends that read the same head cannot both commit: no fork.
            models.CheckConstraint(
                condition=Q(position=1, previous_hash="") | Q(position__gt=1) & ~Q(previous_hash=""),
                name="invoice_record_links_previous",
            ),
            models.UniqueConstraint(fields=["statement", "kind"], name="invoice_record_one_per_statement_and_kind"),
            models.CheckConstraint(
                condition=Q(kind="anulacion") | (~Q(invoice_type="") & Q(total__isnull=False)),
                name="invoice_record_alta_has_type_and_total",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.chain.issuer_tax_id} #{self.position} {self.kind} {self.invoice_number}"


class RecordQueue(models.Model):
    """Sending one issuer's invoice records to the AEAT: the wait the service asked for and the batch under way.

    A worker claims the queue by setting ``in_flight`` with a conditional update (only where it is empty), so two
    workers never send the same records; issuing never touches this row (payments.statements.verifactu.sending).
    """

    chain = models.OneToOneField(InvoiceRecordChain, on_delete=models.PROTECT, related_name="queue")
    not_before = models.DateTimeField(
        null=True, blank=True, help_text="No batch of fewer than 1,000 records goes before this (TiempoEsperaEnvio)."
    )
    failures = models.PositiveIntegerField(default=0, help_text="Failed sends in a row (network, 5xx): the backoff.")
    sent_through = models.PositiveIntegerField(
        default=0,
        help_text="Every record up to this position has the AEAT's answer: the search for pending ones starts after.",
    )
    in_flight = models.OneToOneField(
        "RecordSubmission", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.chain.issuer_tax_id}: not before {self.not_before}"


class RecordSubmission(models.Model):
    """One batch of invoice records sent to the AEAT (RegFactuSistemaFacturacion) and its answer, kept as received."""

    class State(models.TextChoices):
        SENDING = "sending", _("Sending")
        ANSWERED = "answered", _("Answered")
        FAILED = "failed", _("Failed (sent again later)")

    chain = models.ForeignKey(InvoiceRecordChain, on_delete=models.PROTECT, related_name="submissions")
    state = models.CharField(max_length=10, choices=State.choices, default=State.SENDING)
    record_count = models.PositiveIntegerField()
    first_position = models.PositiveIntegerField()
    last_position = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField("EstadoEnvio", max_length=24, blank=True)
    csv = models.CharField("CSV", max_length=100, blank=True)
    wait_seconds = models.PositiveIntegerField("TiempoEsperaEnvio", null=True, blank=True)
    request_xml = models.TextField(blank=True)
    response_xml = models.TextField(blank=True, help_text="The answer as received (the SOAP envelope or the error).")
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.chain.issuer_tax_id} #{self.first_position}-{self.last_position}: {self.state} {self.status}"


class RecordTransmission(models.Model):
    """What the AEAT said about one invoice record. A record without a row has never been sent: it is pending.

    Kept apart from ``InvoiceRecord``, which is never changed once written.
    """

    class State(models.TextChoices):
        PENDING = "pending", _("Pending")
        ACCEPTED = "accepted", _("Accepted")
        ACCEPTED_WITH_ERRORS = "accepted_with_errors", _("Accepted with errors")
        REJECTED = "rejected", _("Rejected")

    record = models.OneToOneField(InvoiceRecord, on_delete=models.PROTECT, related_name="transmission")
    state = models.CharField(max_length=24, choices=State.choices, default=State.PENDING)
    submission = models.ForeignKey(
        RecordSubmission, on_delete=models.PROTECT, related_name="transmissions", help_text="The last batch it was in."
    )
    attempts = models.PositiveIntegerField(default=0)
    duplicate = models.BooleanField(default=False, help_text="The AEAT already held it (error 3000): accepted.")
    error_code = models.CharField("CodigoErrorRegistro", max_length=10, blank=True)
    error_text = models.CharField("DescripcionErrorRegistro", max_length=1500, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["record"]
        indexes = [models.Index(fields=["state"], name="record_transmission_state")]

    def __str__(self) -> str:
        return f"{self.record_id}: {self.state} {self.error_code}".strip()


class Distributor(models.Model):
    """A distribution company, known by the 4 digits after ``ES`` in a CUPS: its name and its fault phone,
    printed on the bills of its supply points (staff maintain them; issue 18 item 4)."""

    code = models.CharField(
        "CUPS distributor code",
        max_length=4,
        unique=True,
        validators=[RegexValidator(r"^[0-9]{4}$", "The 4 digits after ES in the CUPS (ES0021...: 0021).")],
    )
    name = models.CharField(max_length=150)
    fault_phone = models.CharField(
        "fault phone",
        max_length=30,
        validators=[RegexValidator(r"^\+?[0-9][0-9 ]{5,28}$", "Digits and spaces, optionally a leading +.")],
        help_text="The distributor's 24-hour line for supply faults (averías).",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.code} {self.name}"

    @classmethod
    def for_cups(cls, cups: str) -> Distributor | None:
        if not cups or len(cups) < 6:
            return None
        return cls.objects.filter(code=cups[2:6]).first()


MIX_SOURCES = (
    ("mix_renewable", _("Renewable")),
    ("mix_high_efficiency_cogeneration", _("High-efficiency cogeneration")),
    ("mix_cogeneration", _("Cogeneration")),
    ("mix_combined_cycle", _("Natural gas combined cycle")),
    ("mix_coal", _("Coal")),
    ("mix_fuel_gas", _("Fuel oil and gas")),
    ("mix_nuclear", _("Nuclear")),
    ("mix_other", _("Other")),
)


def _percent_field(label: str) -> models.DecimalField:
    return models.DecimalField(
        label,
        max_digits=5,
        decimal_places=2,
        default=Decimal("0"),
        validators=[MinValueValidator(Decimal("0")), MaxValueValidator(Decimal("100"))],
    )


class BillDisclosure(models.Model):
    """What every Spanish bill must tell for a year, staff-maintained: the origin of the retailer's electricity
    (its mix by source, in %, adding up to 100), its environmental impact, and the texts on switching supplier,
    claims, out-of-court resolution and the social tariff (bono social). The one in force on a statement's issue
    date (the latest ``valid_from`` on or before it) is copied into the statement, so editing it later changes
    no issued statement (docs/spain.md)."""

    year = models.PositiveSmallIntegerField(help_text="The year the mix and the impact figures are of.")
    valid_from = models.DateField(unique=True, help_text="Statements issued from this day on print it.")
    mix_renewable = _percent_field("renewable (%)")
    mix_high_efficiency_cogeneration = _percent_field("high-efficiency cogeneration (%)")
    mix_cogeneration = _percent_field("cogeneration (%)")
    mix_combined_cycle = _percent_field("natural gas combined cycle (%)")
    mix_coal = _percent_field("coal (%)")
    mix_fuel_gas = _percent_field("fuel oil and gas (%)")
    mix_nuclear = _percent_field("nuclear (%)")
    mix_other = _percent_field("other (%)")
    co2_g_per_kwh = models.DecimalField(
        "CO2 emissions (g/kWh)", max_digits=7, decimal_places=2, validators=[MinValueValidator(Decimal("0"))]
    )
    radioactive_waste_mg_per_kwh = models.DecimalField(
        "high-level radioactive waste (mg/kWh)",
        max_digits=9,
        decimal_places=4,
        validators=[MinValueValidator(Decimal("0"))],
    )
    source_note = models.CharField(
        max_length=300,
        blank=True,
        help_text="Where the figures come from, as printed (the CNMC's labelling of the year's electricity).",
    )
    switching_text = models.TextField("how to switch supplier")
    claims_text = models.TextField("claims", help_text="The retailer's claims channels: phone, address, email, web.")
    odr_text = models.TextField(
        "out-of-court resolution", help_text="Who resolves disputes out of court, and how to reach them."
    )
    bono_social_text = models.TextField("social tariff (bono social)")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-valid_from"]
        verbose_name = "bill disclosure"

    def __str__(self) -> str:
        return f"{self.year} figures, from {self.valid_from:%Y-%m-%d}"

    def mix(self) -> dict[str, Decimal]:
        return {name: getattr(self, name) for name, _label in MIX_SOURCES}

    def clean(self) -> None:
        values = [value for value in self.mix().values() if value is not None]
        total = sum(values, Decimal("0"))
        if len(values) == len(MIX_SOURCES) and total != Decimal("100"):
            raise ValidationError(
                {"mix_renewable": f"The mix adds up to {total:f}%: its sources must add up to exactly 100%."}
            )

    @classmethod
    def in_force(cls, day: date) -> BillDisclosure | None:
        return cls.objects.filter(valid_from__lte=day).order_by("-valid_from").first()

    def snapshot(self) -> dict:
        return {
            "year": self.year,
            "valid_from": self.valid_from.isoformat(),
            "mix": {name.removeprefix("mix_"): f"{value:f}" for name, value in self.mix().items()},
            "co2_g_per_kwh": f"{self.co2_g_per_kwh:f}",
            "radioactive_waste_mg_per_kwh": f"{self.radioactive_waste_mg_per_kwh:f}",
            "source_note": self.source_note,
            "switching": self.switching_text,
            "claims": self.claims_text,
            "odr": self.odr_text,
            "bono_social": self.bono_social_text,
        }
