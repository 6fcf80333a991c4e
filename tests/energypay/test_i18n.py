"""Spanish beside English: every household page, mail and form message in the household's language.

Two nets catch an untranslated string: every household page rendered in English and in Spanish
must differ in every sentence (a sentence that reads the same in both was not translated), and
every household template is read for text outside {% translate %} / {% blocktranslate %}.
"""

from __future__ import annotations

import gettext
import re
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from django.conf import settings
from django.core import mail
from django.template.base import Lexer, TokenType
from django.test import Client
from django.urls import reverse
from django.utils import dates, translation

from alarms import notify
from alarms.models import AlarmEvent, AlarmRule
from energypay.accounts import tokens
from energypay.accounts.models import PersonalAccessToken
from meters.models import Household
from tests.energypay.test_security import NOW, World, build_world

pytestmark = pytest.mark.time_machine(NOW, tick=False)

NBSP = "\N{NO-BREAK SPACE}"
TEMPLATES = Path(settings.BASE_DIR) / "templates"
LOCALE = Path(settings.BASE_DIR) / "locale"
# Staff pages (Django's admin, in its own translations) are not household pages.
STAFF_DIRS = ("admin", "auditlog")
# Words that are the same in both languages, or names: no sentence is made of these alone.
SAME_IN_BOTH = {
    "EnergyPay", "English", "Español", "CSV", "PDF", "JSON", "kWh", "EUR", "BSV", "sat", "UTC", "h",
    "Total", "Satoshis", "Token", "Europe", "Madrid", "fixed", "coingecko", "ROUNDING", "ST", "CN", "IVA", "IEE",
    # The tax QR's legends are the words Orden HAC/1177/2024 prescribes, in Spanish for every reader.
    "QR", "tributario", "VERI", "FACTU", "CUPS",
}  # fmt: skip


@pytest.fixture(autouse=True)
def _english_after_each_test():
    """LocaleMiddleware activates the language of a request in the thread and leaves it there (Django's way:
    the next request activates its own); the next test in this thread must start in English again."""
    yield
    translation.activate(settings.LANGUAGE_CODE)


@pytest.fixture
def world(make_household, make_meter, staff_user) -> World:
    world = build_world(make_household, make_meter, staff_user)
    told_of(world.household.pk)
    return world


def told_of(household_id: int) -> None:
    """One notification of every kind, so the notifications page shows each sentence."""
    from energypay import eventhook

    deposit = {"household_id": household_id, "txid": "d" * 64, "satoshis": 1_000_000}
    eventhook.record(
        [
            ("deposit.received", household_id, deposit),
            ("deposit.confirmed", household_id, deposit),
            ("household.arrears_started", household_id, {"arrears_eur": "1.5", "unpaid_since": NOW, "started_at": NOW}),
            ("household.arrears_cleared", household_id, {"arrears_started_at": NOW}),
            ("settlement.failed", household_id, {"settlement_id": 10**9, "eur": "2"}),
            ("settlement.confirmed", household_id, {"settlement_id": 10**9 + 1, "eur": "2"}),
        ]
    )


# --- Rendered pages -----------------------------------------------------------------------------------


class VisibleText(HTMLParser):
    """The text a person sees or hears: text nodes outside script/style, and the labels screen readers read."""

    SPOKEN = ("aria-label", "title", "alt", "placeholder", "hx-confirm")

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag, attrs) -> None:
        if tag in ("script", "style"):
            self._hidden += 1
        self.texts.extend(value for name, value in attrs if name in self.SPOKEN and value)

    def handle_endtag(self, tag) -> None:
        if tag in ("script", "style"):
            self._hidden -= 1

    def handle_data(self, data) -> None:
        if not self._hidden and data.strip():
            self.texts.append(" ".join(data.split()))


def visible_text(html: str) -> list[str]:
    parser = VisibleText()
    parser.feed(html)
    return parser.texts


def household_pages(world: World) -> dict[str, str]:
    return {
        "dashboard": reverse("dashboard"),
        "dashboard, a week in kWh": reverse("dashboard") + "?range=week&unit=kwh",
        "dashboard, a refused date": reverse("dashboard") + "?date=2026-02-30",
        "comparison": reverse("dashboard-comparison") + "?range=month",
        "payments": reverse("settlement-list"),
        "payment": reverse("settlement-detail", args=[world.settlement.pk]),
        "wallet": reverse("wallet"),
        "top-up": reverse("top-up"),
        "top-up, a week, a refused period": reverse("top-up") + "?days=7&days=9",
        "notifications": reverse("notifications"),
        "community": reverse("community"),
        "alarms": reverse("alarm-list"),
        "new alarm": reverse("alarm-create"),
        "edit alarm": reverse("alarm-edit", args=[world.rule.pk]),
        "statements": reverse("statement-list"),
        "statement": reverse("statement-detail", args=[world.statement.pk]),
        "API tokens": reverse("access-tokens"),
        "closing the account": reverse("account-close"),
        "withdrawal": reverse("withdrawal-detail", args=[world.withdrawal.pk]),
    }


def data_of(world: World) -> list[str]:
    """The household's own data on its pages (names, codes, addresses): the same in every language."""
    return [
        *world.markers().values(),
        world.statement.code,
        world.household.timezone,
        world.statement.issuer["name"],
        world.statement.issuer["address"],
        world.statement.issuer["tax_id"],
        world.settlement.detail,  # the network's own words ("accepted into the mempool"), quoted as they came
        *(  # the household's API tokens: the name it gave each, and the token's own characters
            text
            for row in PersonalAccessToken.objects.filter(user=world.household.user)
            for text in (row.name, f"{tokens.PREFIX}…{row.hint}")
        ),
    ]


def month_abbreviations() -> set[str]:
    """ "Nov" is November's abbreviation in English and in Spanish: a date is not a sentence."""
    names = set()
    for language in ("en", "es"):
        with translation.override(language):
            names |= {str(name).title() for name in dates.MONTHS_3.values()}
    return names


_HEX = re.compile(r"\b[0-9a-f]{8,}…?")  # transaction ids, whole or shortened


def untranslated(english: list[str], spanish: list[str], data: list[str]) -> list[str]:
    """Sentences shown in both renderings that carry a word of their own, not only data and shared words."""
    found, shared = [], SAME_IN_BOTH | month_abbreviations()
    for text in sorted(set(english) & set(spanish)):
        rest = _HEX.sub(" ", text)
        for value in data:
            rest = rest.replace(value, " ")
        words = set(re.findall(r"[^\W\d_]+", rest))
        if words - shared:
            found.append(text)
    return found


def get_in(client: Client, household: Household, language: str, url: str) -> str:
    Household.objects.filter(pk=household.pk).update(language=language)
    response = client.get(url)
    assert response.status_code == 200, url
    assert response["Content-Language"] == language
    return response.content.decode()


def test_every_household_page_is_in_spanish_with_nothing_left_in_english(world):
    client = Client()
    client.force_login(world.household.user)
    problems = {}
    for name, url in household_pages(world).items():
        english = get_in(client, world.household, "en", url)
        spanish = get_in(client, world.household, "es", url)
        assert '<html lang="es">' in spanish and '<html lang="en">' in english
        left = untranslated(visible_text(english), visible_text(spanish), data_of(world))
        if left:
            problems[name] = left
    assert not problems, f"Untranslated on household pages (add them to the catalog): {problems}"


def test_the_untranslated_check_would_catch_an_english_sentence_left_in_a_page():
    english = ["Your wallet", "€3.00", "Zyxwvut Target Home", "Total"]
    spanish = ["Tu monedero", "3,00\N{NO-BREAK SPACE}€", "Zyxwvut Target Home", "Total"]
    assert untranslated(english, spanish, ["Zyxwvut Target Home"]) == []
    assert untranslated([*english, "Nothing yet."], [*spanish, "Nothing yet."], ["Zyxwvut Target Home"]) == [
        "Nothing yet."
    ]


def test_pages_before_login_follow_the_browser_and_then_the_cookie():
    client = Client()
    assert "Iniciar sesión" in client.get(reverse("login"), HTTP_ACCEPT_LANGUAGE="es-ES,es;q=0.9").content.decode()
    page = client.get(reverse("login"), HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Log in" in page and "Iniciar sesión" not in page
    client.post(reverse("set_language"), {"language": "es"})
    assert "Iniciar sesión" in client.get(reverse("login"), HTTP_ACCEPT_LANGUAGE="en").content.decode()


def test_money_and_numbers_follow_the_household_language(world):
    client = Client()
    client.force_login(world.household.user)
    wallet = get_in(client, world.household, "es", reverse("wallet"))
    assert f"30,00{NBSP}€/BSV" in wallet  # the quote, as a Spanish reader writes it
    assert re.search(r"\d{1,3}(\.\d{3})+ sat", wallet)  # thousands grouped with a dot
    detail = get_in(client, world.household, "es", reverse("settlement-detail", args=[world.settlement.pk]))
    assert f"0,2500{NBSP}€/kWh" in detail
    english = get_in(client, world.household, "en", reverse("settlement-detail", args=[world.settlement.pk]))
    assert "€0.2500/kWh" in english and "€30/BSV" not in english


# --- The household's choice ------------------------------------------------------------------------


def test_the_switch_stores_the_households_language_which_then_wins_over_the_browser(world):
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(world.household.user)
    response = client.post(reverse("set_language"), {"language": "es"}, HTTP_REFERER="/wallet/?x=1")
    assert response.status_code == 302
    world.household.refresh_from_db()
    assert world.household.language == "es"
    # Another browser, asking for English, still gets the household's Spanish.
    other_browser = Client(HTTP_ACCEPT_LANGUAGE="en")
    other_browser.force_login(world.household.user)
    page = other_browser.get(reverse("dashboard")).content.decode()
    assert "Panel" in page and "Hoy" in page and '<html lang="es">' in page


def test_a_language_that_is_not_offered_changes_nothing(world):
    client = Client()
    client.force_login(world.household.user)
    client.post(reverse("set_language"), {"language": "xx"})
    client.post(reverse("set_language"), {"language": "de"})
    world.household.refresh_from_db()
    assert world.household.language == "en"


def test_switching_changes_only_the_logged_in_households_language(world):
    client = Client()
    client.force_login(world.other.user)
    client.post(reverse("set_language"), {"language": "es"})
    world.household.refresh_from_db()
    world.other.refresh_from_db()
    assert (world.household.language, world.other.language) == ("en", "es")


# --- Forms: the decimal comma ----------------------------------------------------------------------


@pytest.mark.parametrize("typed", ["3,50", "3.50"])
def test_a_spanish_household_may_type_a_decimal_comma_or_point_in_a_threshold(world, typed):
    Household.objects.filter(pk=world.household.pk).update(language="es")
    client = Client()
    client.force_login(world.household.user)
    response = client.post(reverse("alarm-create"), {"kind": "daily_cost", "threshold": typed})
    assert response.status_code == 302
    rule = AlarmRule.objects.get(household=world.household, kind="daily_cost")
    assert rule.threshold == Decimal("3.50")
    page = client.get(reverse("alarm-list")).content.decode()
    assert f"Avísame cuando un día cueste 3,50{NBSP}€ o más" in page


def test_an_english_household_gets_a_clear_error_for_a_comma_and_nothing_is_saved(world):
    client = Client()
    client.force_login(world.household.user)
    response = client.post(reverse("alarm-create"), {"kind": "daily_cost", "threshold": "3,50"})
    assert response.status_code == 200
    assert "Enter a number." in response.content.decode()
    assert not AlarmRule.objects.filter(household=world.household, kind="daily_cost").exists()


def test_form_errors_are_in_spanish(world):
    Household.objects.filter(pk=world.household.pk).update(language="es")
    client = Client()
    client.force_login(world.household.user)
    page = client.post(reverse("alarm-create"), {"kind": "daily_cost", "threshold": "abc"}).content.decode()
    assert "Introduce un número." in page
    page = client.post(reverse("alarm-create"), {"kind": "daily_cost", "threshold": "0"}).content.decode()
    assert f"Con 0,00{NBSP}€ saltaría todo el tiempo: introduce más de 0." in page


# --- Mails ------------------------------------------------------------------------------------------


def test_an_alarm_mail_is_written_in_the_households_language(world):
    Household.objects.filter(pk=world.household.pk).update(language="es")
    event = AlarmEvent.objects.filter(household=world.household).select_related("household__user").first()
    message = notify._message(event)
    # A subject is one line: lib/mail.py collapses its whitespace, the no-break space included.
    assert message.subject == "Alarma de EnergyPay: Avísame cuando una hora cueste 0,10 € o más"
    assert f"Ahora es 0,25{NBSP}€ (tu umbral: 0,10{NBSP}€)." in message.body
    assert translation.get_language() == "en"  # the mail's language did not leak into the process


def test_a_household_page_leaves_the_threads_language_as_it_found_it(world):
    """The API answers in the thread after a household page, before LocaleMiddleware runs: no Spanish may linger."""
    Household.objects.filter(pk=world.household.pk).update(language="es")
    client = Client()
    client.force_login(world.household.user)
    with translation.override("en"):
        response = client.get(reverse("dashboard"))
        assert response["Content-Language"] == "es" and "Hoy" in response.content.decode()
        assert translation.get_language() == "en"


def test_a_password_reset_mail_is_in_the_households_language_whatever_the_browser(world):
    Household.objects.filter(pk=world.household.pk).update(language="es")
    Client(HTTP_ACCEPT_LANGUAGE="en").post(reverse("password_reset"), {"email": world.household.user.email})
    (message,) = mail.outbox
    assert message.subject == "Restablece tu contraseña de EnergyPay"
    assert "alguien (esperamos que tú) ha pedido restablecer la contraseña" in message.body


def test_a_login_without_a_household_gets_the_reset_mail_in_the_browsers_language(staff_user):
    Client(HTTP_ACCEPT_LANGUAGE="es").post(reverse("password_reset"), {"email": staff_user.email})
    (message,) = mail.outbox
    assert message.subject == "Restablece tu contraseña de EnergyPay"


# --- Templates and catalogs ---------------------------------------------------------------------------


def household_templates() -> list[Path]:
    return sorted(
        path
        for path in TEMPLATES.rglob("*")
        if path.suffix in (".html", ".txt") and path.relative_to(TEMPLATES).parts[0] not in STAFF_DIRS
    )


_TAG = re.compile(r"<(?:[^>\"']|\"[^\"]*\"|'[^']*')*>")
_SPOKEN_ATTRIBUTE = re.compile(r"\b(?:aria-label|title|alt|placeholder|hx-confirm)=\"([^\"]*)\"")
# Literal text handed to a template as a value: {% include ... with label="Pages" %}.
_LITERAL_ARGUMENT = re.compile(r"\b(?:label|title|text)=\"([^\"]*[A-Za-z]{2}[^\"]*)\"")


_HOLE = "\ue000"  # where a template tag or variable was: neither a letter nor markup


def text_outside_translation(source: str) -> list[str]:
    """Words a template shows that no {% translate %} or {% blocktranslate %} carries.

    Tags and variables become holes, translated text too; what is left is the template's own markup
    and text. Markup is taken out (its spoken attributes kept), and every word left is a finding.
    """
    found, kept, depth, comment = [], [], 0, False
    for token in Lexer(source).tokenize():
        content = token.contents.strip()
        if token.token_type == TokenType.BLOCK:
            name = content.split()[0] if content else ""
            if name == "comment":
                comment = True
            elif name == "endcomment":
                comment = False
            elif name == "blocktranslate":
                depth += 1
            elif name == "endblocktranslate":
                depth -= 1
            elif name in ("include", "with") and not comment:
                found.extend(_LITERAL_ARGUMENT.findall(content))
        if token.token_type == TokenType.TEXT and not depth and not comment:
            kept.append(token.contents)
        else:
            kept.append(_HOLE)
    text = "".join(kept)
    parts = [*_SPOKEN_ATTRIBUTE.findall(text), _TAG.sub(" ", text)]
    found.extend(word for part in parts for word in re.findall(r"[^\W\d_]+", part) if word not in SAME_IN_BOTH)
    return found


def test_no_household_template_shows_text_outside_a_translation_tag():
    problems = {
        str(path.relative_to(TEMPLATES)): words
        for path in household_templates()
        if (words := text_outside_translation(path.read_text()))
    }
    assert not problems, f"Wrap these in {{% translate %}} or {{% blocktranslate %}}: {problems}"


def test_the_template_check_would_catch_a_word_left_outside_a_tag():
    assert text_outside_translation('{% load i18n %}<p>{% translate "Saved" %}</p>') == []
    assert text_outside_translation('<p title="Explain">{% blocktranslate %}Hi {{ x }}{% endblocktranslate %}</p>') == [
        "Explain"
    ]
    assert text_outside_translation("<button>Save</button>") == ["Save"]
    assert text_outside_translation('{% include "_pager.html" with label="Pages" %}') == ["Pages"]


def test_the_spanish_catalog_is_complete_and_the_compiled_catalog_matches_it():
    """Every message has a Spanish text, none fuzzy, and the committed .mo says exactly what the .po says
    (`make messages` compiles it; a .po edited without compiling fails here)."""
    po_path = LOCALE / "es" / "LC_MESSAGES" / "django.po"
    with po_path.open("rb") as source:
        catalog = read_po(source)
    with po_path.with_suffix(".mo").open("rb") as compiled:
        mo = gettext.GNUTranslations(compiled)
    missing, stale = [], []
    for message in catalog:
        if not message.id:
            continue
        texts = message.string if isinstance(message.string, tuple) else (message.string,)
        if message.fuzzy or not all(texts):
            missing.append(message.id)
            continue
        singular = message.id[0] if isinstance(message.id, tuple) else message.id
        key = f"{message.context}\x04{singular}" if message.context else singular
        if isinstance(message.id, tuple):
            shown = (mo.ngettext(key, message.id[1], 1), mo.ngettext(key, message.id[1], 2))
            expected = tuple(texts[:2])
        else:
            shown, expected = mo.gettext(key), texts[0]
        if shown != expected:
            stale.append(singular)
    assert not missing, f"Not translated to Spanish: {missing}"
    assert not stale, f"locale/es/LC_MESSAGES/django.mo is older than the .po (run make messages): {stale}"
