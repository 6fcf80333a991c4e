"""Production hardening: `check --deploy` is clean, every form carries CSRF, the admin is for staff only."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path

import pytest
from bsv.constants import Network
from bsv.hd.bip32 import master_xprv_from_seed
from django.contrib import admin
from django.contrib.auth.tokens import default_token_generator
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from alarms.models import AlarmRule
from energypay.accounts import tokens
from lib.periods import add_months, first_of_month, local_date
from meters.models import HourlyUsage, Household, Meter
from payments.models import PriceQuote, Settlement, SettlementLine
from payments.statements.issuing import issue_households
from payments.statements.models import Statement
from tests.energypay.test_security import withdrawal_of

ROOT = Path(__file__).resolve().parents[2]


# --- manage.py check --deploy ------------------------------------------------------------------


def production_environment(**overrides: str) -> dict[str, str]:
    """What a production deployment sets (README, "Production"), on the test network."""
    master = master_xprv_from_seed(secrets.token_bytes(64), Network.TESTNET)
    environ = {key: value for key, value in os.environ.items() if not key.startswith(("SECURE_", "SESSION_", "CSRF_"))}
    environ.update(
        DEBUG="false",
        SECRET_KEY=secrets.token_urlsafe(50),
        ALLOWED_HOSTS="energypay.example",
        CSRF_TRUSTED_ORIGINS="https://energypay.example",
        WALLET_MASTER_KEY=str(master),
        BSV_NETWORK="testnet",
        UTILITY_ADDRESS=master.ckd(0).address(),
        SECURE_HSTS_PRELOAD="true",
        SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto: https",
    )
    environ.update(overrides)
    return environ


def manage(*args: str, **overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=production_environment(**overrides),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_pass_check_deploy_without_a_single_warning():
    result = manage("check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stderr + result.stdout
    assert "no issues (0 silenced)" in result.stdout


def test_a_short_secret_key_fails_check_deploy():
    result = manage("check", "--deploy", "--fail-level", "WARNING", SECRET_KEY="too-short-a-key")
    assert result.returncode != 0
    assert "security.W009" in result.stderr


def test_production_defaults_are_secure_and_proxy_header_is_read():
    code = (
        "from django.conf import settings as s; print(s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS,"
        " s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_PROXY_SSL_HEADER, s.SECURE_REDIRECT_EXEMPT)"
    )
    result = manage("shell", "-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == (
        "True 31536000 True True ('HTTP_X_FORWARDED_PROTO', 'https') ['^healthz$']"
    )


def test_production_pages_carry_the_content_security_policy_and_nosniff():
    code = (
        "from django.test import Client;"
        " r = Client().get('/login/', secure=True, HTTP_HOST='energypay.example');"
        " print(r.status_code, '|', r['Content-Security-Policy'], '|', r['X-Content-Type-Options'])"
    )
    result = manage("shell", "-c", code)
    assert result.returncode == 0, result.stderr
    status, policy, nosniff = (part.strip() for part in result.stdout.strip().splitlines()[-1].split("|"))
    assert (status, nosniff) == ("200", "nosniff")
    assert "default-src 'self'" in policy and "script-src 'self' https://cdn.jsdelivr.net/" in policy
    assert "unsafe-inline" not in policy


def test_a_malformed_proxy_header_refuses_to_start():
    result = manage("check", SECURE_PROXY_SSL_HEADER="https")
    assert result.returncode != 0
    assert "SECURE_PROXY_SSL_HEADER='https' is not valid" in result.stderr


# --- CSRF on every form ------------------------------------------------------------------------


class Forms(HTMLParser):
    """Each POST form (with whether it carries the CSRF token), htmx writes, and the body's hx-headers."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, bool]] = []
        self.htmx_writes: list[str] = []
        self.body_headers = ""
        self._open: list[list] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = {key: value or "" for key, value in attrs}
        if tag == "body":
            self.body_headers = named.get("hx-headers", "")
        if tag == "form":
            self._open.append([named.get("action", "") or "(this page)", named.get("method", "get").lower(), False])
        if tag == "input" and named.get("name") == "csrfmiddlewaretoken" and self._open:
            self._open[-1][2] = bool(named.get("value"))
        for verb in ("hx-post", "hx-put", "hx-patch", "hx-delete"):
            if verb in named:
                self.htmx_writes.append(f"<{tag} {verb}={named[verb]}>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self._open:
            action, method, token = self._open.pop()
            if method == "post":
                self.forms.append((action, token))


def assert_csrf_everywhere(url: str, html: str) -> int:
    page = Forms()
    page.feed(html)
    for action, token in page.forms:
        assert token, f"{url}: the POST form to {action} has no csrfmiddlewaretoken"
    if page.htmx_writes:
        assert "X-CSRFToken" in page.body_headers, f"{url}: {page.htmx_writes} without hx-headers on <body>"
    return len(page.forms) + len(page.htmx_writes)


def household_urls(resolver: URLResolver | None = None, prefix: str = "") -> list[tuple[str, URLPattern]]:
    """Every URL pattern of the site outside the admin and the machine APIs, with its route."""
    found = []
    for entry in (resolver or get_resolver()).url_patterns:
        route = prefix + str(entry.pattern)
        if route.startswith(("admin/", "api/")):
            continue
        if isinstance(entry, URLResolver):
            found += household_urls(entry, route)
        else:
            found.append((route, entry))
    return found


@pytest.fixture
def household_objects(household, make_meter):
    """One of everything a household page can show: a meter, a paid hour, a settlement, an alarm."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    meter, _ = make_meter(household)
    quote = PriceQuote.objects.create(source="fixed", bsv_eur=Decimal("30"), fetched_at=now)
    line = HourlyUsage.objects.create(
        household=household,
        meter=meter,
        hour_start=now - timedelta(hours=2),
        kwh=Decimal("1"),
        rate=Decimal("0.25"),
        cost_eur=Decimal("0.25"),
        settled_at=now,
    )
    settlement = Settlement.objects.create(
        household=household,
        period_start=line.hour_start,
        period_end=now - timedelta(hours=1),
        kwh=line.kwh,
        eur=line.cost_eur,
        quote=quote,
        satoshis=833_334,
        fee_satoshis=30,
        txid="ab" * 32,
        raw_tx="00",
        state=Settlement.State.CONFIRMED,
    )
    SettlementLine.objects.create(settlement=settlement, usage=line, household_id=line.household_id, eur=line.cost_eur)
    rule = AlarmRule.objects.create(household=household, kind=AlarmRule.Kind.choices[0][0], threshold=Decimal("1"))
    # Last month's statement: the household's contract began before it.
    Household.objects.filter(pk=household.pk).update(created_at=now - timedelta(days=400))
    last_month = add_months(first_of_month(local_date(now, household.timezone)), -1)
    issue_households([household.pk], last_month, now=now)
    statement = Statement.objects.get(household=household)
    token = tokens.issue(household.user, "Home Assistant", now)[0]
    withdrawal = withdrawal_of(household)
    return {
        "settlement": settlement,
        "alarm": rule,
        "meter": meter,
        "statement": statement,
        "access-token": token,
        "withdrawal": withdrawal,
    }


def test_every_household_page_form_carries_the_csrf_token(household_client, household_objects):
    ids = {
        name: household_objects[name].pk for name in ("settlement", "alarm", "statement", "access-token", "withdrawal")
    }
    checked, forms = [], 0
    for route, pattern in household_urls():
        kwargs = {}
        if "<" in route.replace("<int:pk>", ""):
            continue  # password reset links: test_login_and_password_reset_forms_carry_the_csrf_token
        if "<int:pk>" in route:
            owner = next((name for name in ids if (pattern.name or "").startswith(name)), None)
            assert owner, f"{route}: a household page whose object this test cannot make"
            kwargs = {"pk": ids[owner]}
        url = reverse(pattern.name, kwargs=kwargs) if pattern.name else "/" + route
        response = household_client.get(url)
        if response.status_code != 200 or "text/html" not in response.get("Content-Type", ""):
            continue  # POST-only actions, CSV, QR codes, redirects
        forms += assert_csrf_everywhere(url, response.content.decode())
        checked.append(pattern.name)
    assert {"dashboard", "settlement-list", "settlement-detail", "wallet", "community", "alarm-list"} <= set(checked)
    assert forms >= 5  # logout on every page at least: the parser found the forms


def test_login_and_password_reset_forms_carry_the_csrf_token(client, household):
    uid = urlsafe_base64_encode(force_bytes(household.user.pk))
    token = default_token_generator.make_token(household.user)
    confirm = client.get(reverse("password_reset_confirm", args=[uid, token]), follow=True)
    assert "new_password1" in confirm.content.decode()
    for url in ("/login/", reverse("password_reset"), "/admin/login/"):
        assert assert_csrf_everywhere(url, client.get(url).content.decode()) >= 1
    assert assert_csrf_everywhere("password reset confirm", confirm.content.decode()) >= 1


def admin_pages() -> list[str]:
    """The admin's index and status page, and every registered model's list, add and (first row's) change page."""
    pages = ["/admin/", reverse("admin-status")]
    for model in admin.site._registry:
        info = (model._meta.app_label, model._meta.model_name)
        pages.append(reverse("admin:{}_{}_changelist".format(*info)))
        pages.append(reverse("admin:{}_{}_add".format(*info)))
        first = model._default_manager.order_by().first()
        if first is not None:
            pages.append(reverse("admin:{}_{}_change".format(*info), args=[first.pk]))
    return pages


def test_every_admin_page_form_carries_the_csrf_token(staff_client, household_objects):
    forms = 0
    for url in admin_pages():
        response = staff_client.get(url)
        assert response.status_code in {200, 403}, f"{url}: {response.status_code}"  # 403: adding is not allowed
        if response.status_code == 200:
            forms += assert_csrf_everywhere(url, response.content.decode())
    assert forms >= len(admin.site._registry)  # each changelist has its actions form, at least


# --- The admin is for staff ----------------------------------------------------------------------


def test_a_household_is_shown_the_admin_login_never_the_admin(household_client, household_objects):
    index = household_client.get("/admin/", follow=True)
    assert index.redirect_chain[0][0] == "/admin/login/?next=/admin/"
    page = index.content.decode()
    assert 'name="password"' in page and "Site administration" not in page
    for url in (reverse("admin:meters_meter_changelist"), reverse("admin-status")):
        assert household_client.get(url)["Location"].startswith("/admin/login/")
    meter = household_objects["meter"]
    assert (
        household_client.post(reverse("admin:meters_meter_delete", args=[meter.pk]), {"post": "yes"}).status_code == 302
    )
    assert Meter.objects.filter(pk=meter.pk).exists()
