"""Money in one place: the EUR quanta, EUR <-> satoshis exactly, and the formatting core the money filter wraps.

EUR amounts and prices are Decimal, satoshis are int. The only framework call is the active
language, for formatting.

Rounding happens at defined points only: EUR -> satoshis rounds half up to whole satoshis (what a
settlement pays), satoshis -> EUR rounds half up to 6 places (what a balance shows). Everything in
between is exact: arithmetic runs in a local context that traps ``Inexact``, so a value too large
for its precision raises instead of being rounded silently. Floats are refused, never converted;
ints are exact and accepted.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from decimal import (
    ROUND_HALF_UP,
    Context,
    Decimal,
    DecimalException,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
    localcontext,
)
from functools import lru_cache

from babel import Locale
from babel.numbers import format_currency, format_decimal
from babel.numbers import format_percent as babel_percent
from django.utils import translation

EUR_PLACES = Decimal("0.000001")  # the micro-euro: every stored EUR amount and sum; settlement rounds further
KWH_PLACES = Decimal("0.000001")  # usage lines' kWh
CENT = Decimal("0.01")  # statement lines; see docs/billing.md

SATS_PER_BSV = 100_000_000

# Far more digits than any real amount needs (21e6 BSV is 2.1e15 sat; usage lines carry 15 digits);
# the point is that nothing is ever rounded between the defined rounding points.
_PRECISION = 100


def round_eur(amount: Decimal) -> Decimal:
    return amount.quantize(EUR_PLACES, rounding=ROUND_HALF_UP)


def cost_of(kwh: Decimal, rate: Decimal) -> Decimal:
    return round_eur(kwh * rate)


def round_cent(amount: Decimal) -> Decimal:
    """To the cent, half up: a statement line (docs/billing.md)."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def tax_of(cost: Decimal, tax_rate: Decimal) -> Decimal:
    """The taxes on ``cost`` at a combined ``tax_rate``, rounded like a cost (PostgreSQL's round() agrees).

    The product is taken exactly first: a 20-decimal factor times a cost has more digits than the
    default context keeps, and rounding twice could move a half-micro-euro.
    """
    with exact():
        product = cost * tax_rate
    return round_eur(product)


def exact() -> AbstractContextManager[Context]:
    """A decimal context in which any rounding raises ``Inexact``: sums and products that must be exact."""
    return localcontext(
        Context(prec=_PRECISION, rounding=ROUND_HALF_UP, traps=[Inexact, InvalidOperation, DivisionByZero, Overflow])
    )


def _checked_decimal(name: str, value: Decimal | int, *, positive: bool) -> Decimal:
    if isinstance(value, int) and not isinstance(value, bool):
        value = Decimal(value)  # exact, and sum(..., start=0) of no lines is an int 0
    if not isinstance(value, Decimal):
        # A float has already lost the exact value (0.1 is 0.1000000000000000055...).
        raise TypeError(f"{name} must be a Decimal, not {type(value).__name__}.")
    if not value.is_finite():
        raise ValueError(f"{name} must be a finite number, not {value}.")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'positive' if positive else 'zero or more'}, not {value}.")
    return value


def _check_sats(sats: int) -> None:
    if not isinstance(sats, int) or isinstance(sats, bool):
        raise TypeError(f"satoshis must be an int, not {type(sats).__name__}.")
    if sats < 0:
        raise ValueError(f"satoshis must be zero or more, not {sats}.")


def eur_to_satoshis(eur: Decimal | int, bsv_eur: Decimal | int) -> int:
    """The satoshis worth ``eur`` at ``bsv_eur`` EUR per BSV, rounded half up to a whole satoshi."""
    eur = _checked_decimal("eur", eur, positive=False)
    bsv_eur = _checked_decimal("bsv_eur", bsv_eur, positive=True)
    try:
        with exact():
            # An integer division with its remainder is exact, where eur * 1e8 / price is not
            # (1/3 has no end): half up means "remainder at least half the divisor".
            whole, remainder = divmod(eur * SATS_PER_BSV, bsv_eur)
            return int(whole) + (1 if 2 * remainder >= bsv_eur else 0)
    except DecimalException as exc:  # Inexact or DivisionImpossible: beyond _PRECISION digits
        raise ValueError(f"EUR {eur} at {bsv_eur} EUR/BSV is out of range.") from exc


def satoshis_to_eur(sats: int, bsv_eur: Decimal | int) -> Decimal:
    """What ``sats`` are worth at ``bsv_eur`` EUR per BSV, rounded half up to 6 places (for display)."""
    _check_sats(sats)
    bsv_eur = _checked_decimal("bsv_eur", bsv_eur, positive=True)
    try:
        with exact():
            eur = sats * bsv_eur / SATS_PER_BSV  # dividing by 10^8 always terminates: exact
        with localcontext(Context(prec=_PRECISION, traps=[InvalidOperation])):
            return eur.quantize(EUR_PLACES, rounding=ROUND_HALF_UP)
    except DecimalException as exc:
        raise ValueError(f"{sats} sat at {bsv_eur} EUR/BSV is out of range.") from exc


# Formatting for people: the core of the template filters in meters/templatetags/money.py, for code
# that formats outside a template (alarm sentences, charts, statements) without importing a template
# library. The conventions are the reader's: CLDR's, through Babel, in the active language
# ("€1,234.56" in English, "1.234,56 €" in Spanish), or in ``locale`` when given. Amounts are rounded
# half up here first, so Babel's own rounding (half even) never has anything left to do.

DISPLAY_PLACES = {"EUR": 2}
MISSING = "\N{EN DASH}"  # what a table cell shows for no value
# Django language code -> the CLDR locale whose conventions it uses; other languages fall back to English.
BABEL_LOCALES = {"en": "en", "es": "es_ES"}


def babel_locale(language: str | None = None) -> Locale:
    """The Babel locale of ``language``, or of the active Django language."""
    language = (language or translation.get_language() or "en").lower()
    code = BABEL_LOCALES.get(language) or BABEL_LOCALES.get(language.split("-")[0], "en")
    return _parse_locale(code)


@lru_cache(maxsize=8)
def _parse_locale(code: str) -> Locale:
    return Locale.parse(code)


def as_decimal(value: object) -> Decimal | None:
    """``value`` as a Decimal, None for nothing or nonsense; a float is refused (it lost the exact amount)."""
    if value is None or value == "":
        return None
    if isinstance(value, float):
        raise TypeError("money values are Decimal, never float")
    try:
        return Decimal(value)  # type: ignore[arg-type]
    except (InvalidOperation, TypeError, ValueError):
        return None


def _half_up(value: Decimal, places: int) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def _pattern(places: int) -> str:
    return "#,##0" + ("." + "0" * places if places else "")


def fixed(value: Decimal, places: int) -> str:
    """``value`` rounded half up to ``places`` decimals, for machines (CSV, JSON): "1234567.50", no grouping."""
    return f"{_half_up(value, places):.{places}f}"


def format_number(value: Decimal | int, places: int, locale: str | None = None) -> str:
    """``value`` rounded half up to ``places`` decimals, grouped for the reader: "1,234.50", "1.234,50"."""
    return format_decimal(_half_up(Decimal(value), places), format=_pattern(places), locale=babel_locale(locale))


def _currency(amount: Decimal, currency: str, places: int, locale: str | None) -> str:
    where = babel_locale(locale)
    # The locale's own currency pattern (symbol before or after, spacing), with ``places`` decimals.
    pattern = where.currency_formats["standard"].pattern.split(";")[0].replace("0.00", "0." + "0" * places)
    if places == 0:
        pattern = pattern.replace("0.", "0")
    return format_currency(_half_up(amount, places), currency, format=pattern, locale=where, currency_digits=False)


def format_money(value: object, currency: str, places: int | None = None, locale: str | None = None) -> str:
    """``value`` as "€2.14" / "2,14 €"; "< €0.01" for a few micro-euros, rather than hide that something was charged.

    ``places``: the currency's display places unless given (6 shows a usage line exactly).
    """
    if not currency:
        raise ValueError("money needs a currency: {{ amount|money:'EUR' }}")
    amount = as_decimal(value)
    if amount is None:
        return MISSING
    shown = DISPLAY_PLACES.get(currency, 2) if places is None else int(places)
    if amount and abs(amount) < Decimal(5).scaleb(-shown - 1):
        smallest = _currency(Decimal(1).scaleb(-shown), currency, shown, locale)
        return f"{'-' if amount < 0 else ''}< {smallest}"
    return _currency(amount, currency, shown, locale)


def exact_places(value: Decimal, minimum: int = 2) -> int:
    """The decimal places ``value`` needs to be shown without rounding (a quote: "€31.2546"), at least ``minimum``."""
    exponent = value.normalize().as_tuple().exponent
    return max(minimum, -exponent if isinstance(exponent, int) else 0)


def format_kwh(value: object, places: int = 2, locale: str | None = None) -> str:
    """``value`` as "3.50 kWh" / "3,50 kWh"; the dash for no value."""
    amount = as_decimal(value)
    return MISSING if amount is None else f"{format_number(amount, int(places), locale)} kWh"


def format_rate(value: object, locale: str | None = None) -> str:
    """A price per kWh as "€0.2500/kWh" / "0,2500 €/kWh"; the dash for no value."""
    amount = as_decimal(value)
    return MISSING if amount is None else f"{format_money(amount, 'EUR', places=4, locale=locale)}/kWh"


def format_percent(rate: object, locale: str | None = None) -> str:
    """A rate (0.21, 0.0511269632) as a percentage with every digit it has, in the reader's way:
    "21%", "5.11269632%" / "21 %", "5,11269632 %"; the dash for no value."""
    value = as_decimal(rate)
    if value is None:
        return MISSING
    where = babel_locale(locale)
    pattern = where.percent_formats[None].pattern.split(";")[0].replace("0", "0.##########", 1)
    return babel_percent(value, format=pattern, locale=where)


def format_sats(value: object, locale: str | None = None) -> str:
    """Satoshis as "12,345 sat" / "12.345 sat"; the dash for no value."""
    if value is None or value == "":
        return MISSING
    return f"{format_decimal(int(value), format='#,##0', locale=babel_locale(locale))} sat"
