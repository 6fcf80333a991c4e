"""Every household page, the login pages and the staff status page, in Chromium, for people who read
them differently: axe-core finds no serious or critical violation in light or dark colours, nothing
scrolls sideways on a 360 px phone, a keyboard reaches and works every control and shows where it is.

Also leaves a screenshot of every page in Spanish and English at 360 and 1280 px (and in dark colours
on a phone) in var/screenshots/, for a person to look at; nothing compares them.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import pytest
from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core.management import call_command
from django.db import OperationalError, connections
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from alarms.models import AlarmRule
from meters.models import Household
from payments import passes
from payments.broadcast import send_one
from payments.models import CommunityPass, Settlement, Withdrawal
from payments.networks import get_network
from payments.statements.models import Statement
from tests.e2e.conftest import _serve_chart_js
from tests.e2e.test_csp import current_totp
from tests.payments.statements.billkit import statement_with_bill

HOUSEHOLD = "demo@example.com"
UNLOCKED = "demo2@example.com"  # the second demo household, with the community comparison paid for
STAFF = "staff@example.com"
PASSWORD = "demo"
DAYS = 40  # of history: last month's statements are issued whatever today's date


@dataclass(frozen=True)
class Page:
    name: str
    # May name {settlement}, {statement}, {statement_2_0td}, {alarm}, {withdrawal} (the demo household's) and {reset}
    # (a password reset link's uid/token): filled in from the demo data.
    path: str
    who: str | None = HOUSEHOLD  # the login that opens it; None: nobody logged in


# Every page a household (or a person about to log in) sees, and the staff status page. One list: a new
# page joins every check below by a line here.
PAGES = [
    Page("dashboard", "/"),
    Page("dashboard-month-kwh", "/?range=month&unit=kwh"),
    Page("settlements", "/payments/"),
    Page("settlement", "/payments/{settlement}/"),
    Page("wallet", "/wallet/"),
    Page("top-up", "/wallet/top-up/"),
    Page("top-up-7-days", "/wallet/top-up/?days=7"),
    Page("notifications", "/notifications/"),
    Page("comparison", "/comparison"),
    Page("usage-csv-refused", "/usage.csv?start=2026-11-10&end=2026-11-09"),
    Page("payments-csv-refused", "/payments.csv?start=x"),
    Page("statements", "/statements/"),
    Page("statement", "/statements/{statement}/"),
    Page("statement-2.0td", "/statements/{statement_2_0td}/"),  # the Spanish bill's sections (docs/spain.md)
    Page("community", "/community/"),
    Page("community-unlocked", "/community/", who=UNLOCKED),
    Page("alarms", "/alarms/"),
    Page("alarm-new", "/alarms/new"),
    Page("alarm-edit", "/alarms/{alarm}/edit"),
    Page("api-tokens", "/settings/tokens/"),
    Page("account-close", "/account/close/"),
    Page("withdrawal", "/account/withdrawals/{withdrawal}/"),
    Page("login", "/login/", who=None),
    Page("password-reset", "/password-reset/", who=None),
    Page("password-reset-sent", "/password-reset/sent/", who=None),
    Page("password-reset-confirm", "/password-reset/{reset}/", who=None),
    Page("password-reset-done", "/password-reset/done/", who=None),
    Page("status", "/admin/status/", who=STAFF),
]
WIDTHS = {"phone": 360, "desktop": 1280}
LANGUAGES = {"es": "es-ES", "en": "en-GB"}  # the browser's locale: what a visitor not logged in is shown
BLOCKING = ("serious", "critical")

# Opens what is folded, runs axe in the page and returns its serious and critical findings, one line per element.
RUN_AXE = """
async (impacts) => {
  document.querySelectorAll("details").forEach((details) => { details.open = true; });  // the chart's table too
  const results = await axe.run(document, {resultTypes: ["violations"]});
  return results.violations
    .filter((violation) => impacts.includes(violation.impact))
    .flatMap((violation) => violation.nodes.map((node) =>
      `${violation.id} (${violation.impact}): ${violation.help} at ${node.target.join(" ")}: ${node.failureSummary}`));
}
"""


@pytest.fixture
def ids(transactional_db) -> dict[str, object]:
    """The demo data (with last month's statements) and the objects the pages show."""
    call_command("seed_demo", households=5, days=DAYS, stdout=open(os.devnull, "w"))  # noqa: SIM115
    household = Household.objects.get(user__email=HOUSEHOLD)
    user = household.user
    rule = AlarmRule.objects.create(household=household, kind="daily_cost", threshold="3.50")
    withdrawal = Withdrawal.objects.create(  # a row as the books keep it; no coin of the wallet moves
        household=household,
        source=Withdrawal.Source.STAFF,
        address="mqZyxwvutTargetWithdrawalAddr1",
        satoshis=1_000,
        fee_satoshis=20,
        txid="cd" * 32,
        raw_tx="00",
        request_key="k" * 64,
        state=Withdrawal.State.CONFIRMED,
    )
    unlocked = Household.objects.get(user__email=UNLOCKED)
    send_one(CommunityPass, passes.buy_pass(unlocked, timezone.now()).community_pass.pk, get_network())
    return {
        "settlement": Settlement.objects.filter(household=household).order_by("-pk").values_list("pk", flat=True)[0],
        "statement": Statement.objects.filter(household=household).values_list("pk", flat=True)[0],
        # A 2.0TD supply's statement: until the demo household is on 2.0TD, a copy of its own carrying a bill.
        "statement_2_0td": statement_with_bill(household).pk,
        "alarm": rule.pk,
        "withdrawal": withdrawal.pk,
        "reset": f"{urlsafe_base64_encode(force_bytes(user.pk))}/{default_token_generator.make_token(user)}",
    }


def _write_when_unlocked(write, tries: int = 50) -> None:
    """SQLite's shared in-memory test database answers "table is locked" (not "busy", so without its
    timeout) while the live server's thread finishes a request: try again shortly. PostgreSQL never does."""
    for _ in range(tries - 1):
        try:
            write()
            return
        except OperationalError as error:
            if "locked" not in str(error):
                raise
            time.sleep(0.1)
    write()


class Visitor:
    """Browser tabs, one per login and language, logged in once; each page visited checked for script errors."""

    def __init__(self, browser, live_server, chart_js, axe_core: str, ids: dict[str, object]) -> None:
        self.browser, self.base, self.chart_js, self.axe_core = browser, live_server.url, chart_js, axe_core
        self.ids = ids
        self.tabs: dict[tuple[str | None, str], object] = {}
        self.contexts: list = []
        self.errors: list[str] = []

    def open(self, page: Page, *, language: str, width: int, scheme: str = "light"):
        tab = self.tab(page.who, language)
        if page.who not in (None, STAFF):  # a household's pages speak its own language, whatever the browser's
            tab.goto("about:blank")  # the last page's polls stop before its household row is written
            _write_when_unlocked(lambda: Household.objects.filter(user__email=page.who).update(language=language))
        tab.set_viewport_size({"width": width, "height": 900})
        tab.emulate_media(color_scheme=scheme)
        tab.goto(self.base + page.path.format(**self.ids))
        tab.wait_for_load_state("networkidle")
        if page.who != STAFF:  # the admin speaks English only
            assert tab.locator("html").get_attribute("lang") == language, page.name
        return tab

    def violations(self, tab) -> list[str]:
        if not tab.evaluate("typeof window.axe === 'object'"):
            # Through the DevTools protocol, which the page's Content-Security-Policy does not govern.
            tab.evaluate(self.axe_core)
        return tab.evaluate(RUN_AXE, list(BLOCKING))

    def tab(self, who: str | None, language: str):
        if who == STAFF:
            language = "en"  # the admin speaks English only; and its second factor's code works once
        if (who, language) not in self.tabs:
            context = self.browser.new_context(locale=LANGUAGES[language])
            context.route(settings.CHART_JS_URL, lambda route: _serve_chart_js(route, self.chart_js))
            self.contexts.append(context)
            tab = context.new_page()
            tab.on("pageerror", lambda error: self.errors.append(f"{tab.url}: {error}"))
            if who == STAFF:
                self.staff_log_in(tab)
            elif who is not None:
                self.log_in(tab, who)
            self.tabs[(who, language)] = tab
        return self.tabs[(who, language)]

    def log_in(self, tab, email: str) -> None:
        tab.goto(self.base + "/login/")
        tab.fill("input[name=username]", email)
        tab.fill("input[name=password]", PASSWORD)
        tab.click("button[type=submit]")
        tab.wait_for_url(self.base + "/")

    def staff_log_in(self, tab) -> None:
        tab.goto(self.base + "/admin/login/")
        tab.fill("input[name=username]", STAFF)
        tab.fill("input[name=password]", PASSWORD)
        tab.click("input[type=submit]")
        tab.fill("input[name=code]", current_totp(STAFF))  # the admin's second factor
        tab.click("input[type=submit][value=Verify]")
        tab.wait_for_url(self.base + "/admin/")

    def close(self) -> None:
        connections.close_all()  # Playwright's greenlet has database connections of its own
        for context in self.contexts:
            context.close()


@pytest.fixture
def visitor(browser, live_server, chart_js, axe_core, ids):
    visitor = Visitor(browser, live_server, chart_js, axe_core, ids)
    yield visitor
    visitor.close()
    assert visitor.errors == [], f"JavaScript errors on the pages: {visitor.errors}"


@pytest.mark.timeout(600)
def test_axe_finds_no_serious_or_critical_violation_on_any_page_in_light_or_dark_colours(visitor):
    found = []
    for page in PAGES:
        for language, width, scheme in (("en", 1280, "light"), ("es", 360, "dark")):
            tab = visitor.open(page, language=language, width=width, scheme=scheme)
            found += [f"{page.name} ({language}, {width} px, {scheme}): {line}" for line in visitor.violations(tab)]
    assert found == [], "\n".join(found)


@pytest.mark.timeout(600)
def test_no_page_scrolls_sideways_on_a_phone_and_each_leaves_screenshots_in_both_languages(visitor):
    folder = settings.VAR_DIR / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    too_wide = []
    for language in LANGUAGES:
        for page in PAGES:
            for width_name, width in WIDTHS.items():
                tab = visitor.open(page, language=language, width=width)
                tab.screenshot(path=str(folder / f"{page.name}-{language}-{width_name}.png"), full_page=True)
                scroll_width = tab.evaluate("document.documentElement.scrollWidth")
                if scroll_width > width:
                    too_wide.append(f"{page.name} ({language}): {scroll_width} px wide at {width} px")
            tab = visitor.open(page, language=language, width=WIDTHS["phone"], scheme="dark")
            tab.screenshot(path=str(folder / f"{page.name}-{language}-phone-dark.png"), full_page=True)
    assert too_wide == [], "\n".join(too_wide)


def test_the_keyboard_skips_to_the_content_and_shows_where_it_is(visitor):
    tab = visitor.open(PAGES[0], language="es", width=360)
    assert tab.locator(".skip-link").bounding_box()["y"] < 0  # off screen until focused
    tab.keyboard.press("Tab")
    skip = tab.locator(":focus")
    assert skip.inner_text() == "Saltar al contenido"
    assert skip.bounding_box()["y"] >= 0
    assert outline_of(tab) != "none"
    tab.keyboard.press("Enter")
    assert tab.evaluate("document.activeElement.id") == "main"

    # From the content on, Tab reaches the chart's switches, and Enter works them (htmx, no mouse).
    for _ in range(40):
        tab.keyboard.press("Tab")
        if tab.evaluate("document.activeElement.dataset.range") == "week":
            break
    assert outline_of(tab) != "none"
    tab.keyboard.press("Enter")
    tab.wait_for_selector("a[data-range=week][aria-current=true]")


def test_the_chart_names_its_table_for_screen_readers(visitor):
    tab = visitor.open(PAGES[0], language="en", width=1280)
    canvas = tab.locator("#usage-chart")
    table = tab.locator("#" + canvas.get_attribute("aria-details"))
    assert table.locator("table caption").count() == 1
    assert table.locator("tbody tr").count() > 0


def outline_of(tab) -> str:
    """The focused element's outline, as the browser draws it (':focus-visible' rules included)."""
    return tab.evaluate("getComputedStyle(document.activeElement).outlineStyle")
