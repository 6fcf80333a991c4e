"""Money in one place: the EUR quanta, EUR <-> satoshis exactly, and the formatting core the money filter wraps.

Framework-free: EUR amounts and prices are Decimal, satoshis are int.

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
# that formats outside a template (alarm sentences, charts) without importing a template library.
# Separators are the project's (settings.THOUSAND_SEPARATOR "," in groups of 3, a "." before the
# decimals), fixed here so that a formatted amount never depends on the reader's locale.

DISPLAY_PLACES = {"EUR": 2}
MISSING = "\N{EN DASH}"  # what a table cell shows for no value
_SMALLEST_SHOWN = Decimal("0.005")  # below this an amount would round to 0.00


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


def fixed(value: Decimal, places: int) -> str:
    """``value`` rounded half up to ``places`` decimals, thousands grouped: 1234567.5 -> "1,234,567.50"."""
    quantum = Decimal(1).scaleb(-places)
    return f"{value.quantize(quantum, rounding=ROUND_HALF_UP):,.{places}f}"


def format_money(value: object, currency: str) -> str:
    """``value`` as "EUR 2.14"; "< EUR 0.01" for a few micro-euros, rather than hide that something was charged."""
    if not currency:
        raise ValueError("money needs a currency: {{ amount|money:'EUR' }}")
    amount = as_decimal(value)
    if amount is None:
        return MISSING
    if amount and abs(amount) < _SMALLEST_SHOWN:
        return f"{'-' if amount < 0 else ''}< {currency} 0.01"
    return f"{currency} {fixed(amount, DISPLAY_PLACES.get(currency, 2))}"


def format_kwh(value: object, places: int = 2) -> str:
    """``value`` as "3.50 kWh"; the dash for no value."""
    amount = as_decimal(value)
    return MISSING if amount is None else f"{fixed(amount, int(places))} kWh"


def format_rate(value: object) -> str:
    """A price per kWh as "EUR 0.2500/kWh"; the dash for no value."""
    amount = as_decimal(value)
    return MISSING if amount is None else f"EUR {fixed(amount, 4)}/kWh"
