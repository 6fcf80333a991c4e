"""What a household can be told, one stable code each; the words are rendered from the code and its numbers.

Codes are stored on ``Notification`` rows and in preferences: never rename one. Sentences are
gettext with named placeholders, rendered where they are read (page or mail) in the reader's language.
"""

from __future__ import annotations

from django.utils.translation import gettext, gettext_lazy

from lib.money import as_decimal, format_money, format_sats

DEPOSIT_RECEIVED = "deposit.received"
DEPOSIT_CONFIRMED = "deposit.confirmed"
ARREARS_STARTED = "arrears.started"
ARREARS_CLEARED = "arrears.cleared"
PAYMENT_RECOVERED = "payment.recovered"

TITLES = {
    DEPOSIT_RECEIVED: gettext_lazy("Deposit received"),
    DEPOSIT_CONFIRMED: gettext_lazy("Deposit confirmed"),
    ARREARS_STARTED: gettext_lazy("Balance ran out: payments in arrears"),
    ARREARS_CLEARED: gettext_lazy("Arrears paid: up to date again"),
    PAYMENT_RECOVERED: gettext_lazy("A payment went through after a failure"),
}
CODES = tuple(TITLES)
DEPOSIT_KINDS = (DEPOSIT_RECEIVED, DEPOSIT_CONFIRMED)
CHOICES = [(code, title) for code, title in TITLES.items()]

# What a household that never chose gets: everything in the page; by mail, what asks it to act or
# tells it a problem is over (a deposit it is waiting for shows in the page it waits on).
DEFAULTS: dict[str, dict[str, bool]] = {
    DEPOSIT_RECEIVED: {"badge": True, "email": False},
    DEPOSIT_CONFIRMED: {"badge": True, "email": True},
    ARREARS_STARTED: {"badge": True, "email": True},
    ARREARS_CLEARED: {"badge": True, "email": True},
    PAYMENT_RECOVERED: {"badge": True, "email": True},
}


def _amount(params: dict) -> str:
    """EUR (at the quote when the notification was written) and satoshis, or satoshis alone without a quote."""
    sats = format_sats(params.get("satoshis"))
    eur = as_decimal(params.get("eur"))
    return sats if eur is None else gettext("%(eur)s (%(sats)s)") % {"eur": format_money(eur, "EUR"), "sats": sats}


SENTENCES = {
    DEPOSIT_RECEIVED: gettext_lazy(
        "We have seen a deposit of %(amount)s on its way to your wallet. It counts once it is in a block, "
        "usually within about ten minutes."
    ),
    DEPOSIT_CONFIRMED: gettext_lazy("Your deposit of %(amount)s is confirmed and in your balance."),
    ARREARS_STARTED: gettext_lazy(
        "Your balance did not cover your electricity: %(amount)s is unpaid (in arrears). Nothing is cut off; "
        "we try again every hour. Add money to catch up."
    ),
    ARREARS_CLEARED: gettext_lazy("Everything in arrears is paid: you are up to date again."),
    PAYMENT_RECOVERED: gettext_lazy(
        "A payment of %(amount)s went through after an earlier one had failed: those hours are paid."
    ),
}


def describe(code: str, params: dict) -> str:
    """The sentence of a notification, in the active language."""
    sentence = SENTENCES.get(code)
    if sentence is None:
        return code  # a code from a newer release: shown as it is rather than hidden
    if code in (DEPOSIT_RECEIVED, DEPOSIT_CONFIRMED):
        amount = _amount(params)
    elif code == ARREARS_STARTED:
        amount = format_money(as_decimal(params.get("arrears_eur")), "EUR")
    else:
        amount = format_money(as_decimal(params.get("eur")), "EUR")
    return str(sentence) % {"amount": amount}


def title(code: str) -> str:
    return str(TITLES.get(code, code))
