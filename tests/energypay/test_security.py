"""Every URL, every persona; CSRF on every form; replayed payments; secrets nowhere they could be read.

The URL list comes from the resolver, so a URL added tomorrow is in the matrix at once: it fails
here until this file knows what it is (a household page, a public page, the API; anything under
/admin/ is treated as staff-only automatically) and how to fill its path parameters.

Personas: anonymous, a meter token sent as ``Authorization: Bearer`` (it authenticates the ingest
API only), another household, staff (no household of its own), and the household that owns the data.
"""

from __future__ import annotations

import base64
import logging
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from bsv import PrivateKey
from bsv.constants import Network
from bsv.hd.bip32 import ckd, master_xprv_from_seed
from django.apps import apps
from django.conf import settings
from django.contrib import admin
from django.contrib.contenttypes.models import ContentType
from django.core import mail
from django.core.exceptions import FieldError
from django.db import DatabaseError, connection
from django.db.models import Model
from django.http import HttpResponse
from django.shortcuts import resolve_url
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.urls.resolvers import RegexPattern, RoutePattern
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django_otp.plugins.otp_totp.models import TOTPDevice

from alarms.models import AlarmRule
from energypay.accounts import tokens
from energypay.accounts.models import PersonalAccessToken
from energypay.webhooks.delivery import deliver_due
from energypay.webhooks.events import EVENT_TYPES
from energypay.webhooks.models import WebhookEndpoint
from meters.ingest import ingest_readings
from meters.models import Household, Meter, TariffVersion
from meters.schema import ReadingIn
from payments import keys, passes
from payments.broadcast import send_one
from payments.models import CommunityPass, LedgerTransaction, PriceQuote, Settlement, Wallet, Withdrawal
from payments.networks.local import LocalLedger
from payments.settlement import settle_household
from payments.statements.issuing import issue_households
from payments.statements.models import Statement
from payments.wallets import open_wallet
from tests.energypay.test_openapi import assert_conforms, funded_coin, pay, payment_header
from tests.logins import login_with_second_factor

NOW = datetime(2026, 11, 22, 14, 7, tzinfo=UTC)
PERIOD_END = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

# --- what each URL is --------------------------------------------------------------------------------
# Household pages: the methods each takes. Object pages (with <pk>) belong to one household.
HOUSEHOLD_PAGES: dict[str, tuple[str, ...]] = {
    "dashboard": ("GET",),
    "dashboard-comparison": ("GET",),
    "usage-csv": ("GET",),
    "settlement-list": ("GET",),
    "settlement-detail": ("GET",),
    "settlement-state": ("GET",),
    "settlements-csv": ("GET",),
    "wallet": ("GET",),
    "wallet-qr": ("GET",),
    "top-up": ("GET",),
    "notifications": ("GET",),
    "notification-preferences": ("POST",),
    "community": ("GET",),
    "community-unlock": ("POST",),
    "alarm-list": ("GET",),
    "alarm-create": ("GET", "POST"),
    "alarm-detail": ("GET",),
    "alarm-edit": ("GET", "POST"),
    "alarm-pause": ("POST",),
    "alarm-resume": ("POST",),
    "alarm-mute": ("POST",),
    "alarm-delete": ("POST",),
    "statement-list": ("GET",),
    "statement-detail": ("GET",),
    "statement-pdf": ("GET",),
    "statement-csv": ("GET",),
    "statement-json": ("GET",),
    "access-tokens": ("GET", "POST"),
    "access-token-revoke": ("POST",),
    "account-close": ("GET",),
    "account-close-confirm": ("POST",),
    "withdrawal-preview": ("POST",),
    "withdrawal-confirm": ("POST",),
    "withdrawal-detail": ("GET",),
}
# Pages anyone may open: sign-in, password reset, the load balancer's health check.
PUBLIC_PAGES: dict[str, tuple[str, ...]] = {
    "login": ("GET", "POST"),
    "logout": ("POST",),
    "password_reset": ("GET", "POST"),
    "password_reset_done": ("GET",),
    "password_reset_confirm": ("GET",),
    "password_reset_complete": ("GET",),
    # The language switch: a cookie for anyone, and the household's own choice for its login only.
    "set_language": ("POST",),
    "healthz": ("GET",),
    "favicon": ("GET",),  # a redirect to the static icon
    "api-docs": ("GET",),
    "api-openapi": ("GET",),
}
# Outside /admin/ but for staff only (or a bearer token of their own): GET answers staff, 401 the rest.
STAFF_PAGES: dict[str, tuple[str, ...]] = {"metrics": ("GET",)}
# The machine API (docs/openapi.yaml).
API: dict[str, tuple[str, ...]] = {
    "api-readings": ("POST",),
    "api-community": ("GET",),
    "api-arc-callback": ("POST",),
    # A household's personal access token only: sessions and meter tokens are 401.
    "api-me-usage": ("GET",),
    "api-me-balance": ("GET",),
    "api-me-settlements": ("GET",),
}
# Views that take a request without a CSRF token: they authenticate with a bearer token, never a cookie (the
# meter API and ARC's callbacks; the household read API, which answers a POST 405 anyway).
CSRF_EXEMPT = {"api-readings", "api-arc-callback", "api-me-usage", "api-me-balance", "api-me-settlements"}
# Regex routes (Django admin's) filled as a whole, by their group names.
REGEX_FILLS = {("app_label",): "meters/", ("url",): "no-such-admin-page/"}


class NoRule(Exception):
    pass


@dataclass(frozen=True)
class Route:
    name: str | None  # with its namespace: "admin:meters_meter_change"
    patterns: tuple[Any, ...]  # from the root to the leaf
    callback: Callable

    @property
    def route(self) -> str:
        return "".join(str(pattern) for pattern in self.patterns)

    @property
    def label(self) -> str:
        return f"{self.name or '(unnamed)'} /{self.route}"

    @property
    def kind(self) -> str:
        if self.name in HOUSEHOLD_PAGES:
            return "household"
        if self.name in PUBLIC_PAGES:
            return "public"
        if self.name in API:
            return "api"
        if self.name in STAFF_PAGES:
            return "staff"
        if (self.name or "").startswith("admin:") or self.route.startswith("admin/"):
            return "admin"  # anything under /admin/ is for staff only
        raise NoRule(
            f"URL {self.label} is not in the security matrix: add its name to HOUSEHOLD_PAGES, PUBLIC_PAGES or "
            "API in tests/energypay/test_security.py (anything under /admin/ is staff-only automatically)"
        )

    @property
    def methods(self) -> tuple[str, ...]:
        return {**HOUSEHOLD_PAGES, **PUBLIC_PAGES, **API, **STAFF_PAGES}.get(self.name, ("GET", "POST"))

    @property
    def is_object_page(self) -> bool:
        return "pk" in self.parameters

    @property
    def parameters(self) -> list[str]:
        names = []
        for pattern in self.patterns:
            if isinstance(pattern, RoutePattern):
                names += list(pattern.converters)
            elif isinstance(pattern, RegexPattern):
                names += list(pattern.regex.groupindex)
        return names


def all_routes() -> list[Route]:
    def walk(patterns: list, parents: tuple, namespace: str) -> Iterator[Route]:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
                yield from walk(entry.url_patterns, (*parents, entry.pattern), inner)
            elif isinstance(entry, URLPattern):
                name = f"{namespace}{entry.name}" if entry.name else None
                yield Route(name, (*parents, entry.pattern), entry.callback)

    return list(walk(get_resolver().url_patterns, (), ""))


# --- the data the matrix probes ----------------------------------------------------------------------


@dataclass
class World:
    household: Household
    other: Household
    staff: Any
    meter: Meter
    token: str
    wallet: Wallet
    settlement: Settlement
    community_pass: CommunityPass
    rule: AlarmRule
    statement: Statement
    withdrawal: Withdrawal
    ledger: LocalLedger
    tariff_version: TariffVersion
    clients: dict[str, Client] = field(default_factory=dict)

    def markers(self) -> dict[str, str]:
        """Strings that identify the household's data; no other persona may ever see one."""
        return {
            "settlement txid": self.settlement.txid,
            "pass txid": self.community_pass.txid,
            "wallet address": self.wallet.address,
            "household name": self.household.name,
            "e-mail": self.household.user.email,
            "meter serial": self.meter.serial,
            "withdrawal address": self.withdrawal.address,
        }

    def object_of(self, model: type[Model]) -> Model | None:
        """The household's own object of ``model`` where it has one, else any."""
        if model is Household:
            return self.household
        if model is type(self.household.user):
            return self.household.user
        for lookup in ("household", "meter__household", "wallet__household", "settlement__household"):
            try:
                found = model.objects.filter(**{lookup: self.household}).order_by("pk").first()
            except FieldError:
                continue
            if found is not None:
                return found
        return model.objects.order_by("pk").first()

    def fill(self, route: Route, parameter: str) -> str:
        name = route.name or ""
        if parameter == "pk" and name.startswith("settlement-"):
            return str(self.settlement.pk)
        if parameter == "pk" and name.startswith("alarm-"):
            return str(self.rule.pk)
        if parameter == "pk" and name.startswith("withdrawal-"):
            return str(self.withdrawal.pk)
        if parameter == "pk" and (name.startswith("statement-") or name == "admin:statements_statement_pdf"):
            return str(self.statement.pk)
        if parameter == "pk" and name == "access-token-revoke":
            return str(PersonalAccessToken.objects.filter(user=self.household.user).order_by("pk").first().pk)
        if parameter == "pk" and name == "admin:meters_tariffversion_import_prices":
            return str(self.tariff_version.pk)
        if parameter == "pk" and name == "admin:onboarding_importbatch_tokens":
            return "0"  # no import in this world: staff get 404, everyone else the admin's login or 403
        if parameter == "name" and name == "admin-settings-test":
            return "database"
        if name == "admin:view_on_site":
            if parameter == "content_type_id":
                return str(ContentType.objects.get_for_model(Household).pk)
            return str(self.household.pk)
        if parameter == "object_id" and route.route.startswith("admin/"):
            app_label, model_name = route.route.split("/")[1:3]
            found = self.object_of(apps.get_model(app_label, model_name))
            return str(found.pk) if found else "0"
        if parameter == "pk" and name.startswith("admin:otp_totp_totpdevice_"):
            device = TOTPDevice.objects.order_by("pk").first()  # the staff's own, where the persona has one
            return str(device.pk) if device else "0"
        if parameter == "id" and name == "admin:auth_user_password_change":
            return str(self.household.user.pk)
        if parameter == "uidb64":
            return urlsafe_base64_encode(force_bytes(self.household.user.pk))
        if parameter == "token" and name == "password_reset_confirm":
            return "no-such-token"
        raise NoRule(
            f"URL {route.label}: no fill rule for <{parameter}>; add one to World.fill in "
            "tests/energypay/test_security.py (an id of the target household's object, so another household "
            "gets a 404)"
        )

    def path(self, route: Route) -> str:
        parts = []
        for pattern in route.patterns:
            if isinstance(pattern, RoutePattern):
                parts.append(re.sub(r"<(?:[^>:]+:)?([^>]+)>", lambda m: self.fill(route, m.group(1)), str(pattern)))
            elif pattern.regex.groupindex:
                groups = tuple(sorted(pattern.regex.groupindex))
                if groups not in REGEX_FILLS:
                    raise NoRule(f"URL {route.label}: add a whole-path fill for {groups} to REGEX_FILLS")
                parts.append(REGEX_FILLS[groups])
            else:
                parts.append(str(pattern).lstrip("^").rstrip("$"))
        return "/" + "".join(parts)


def send_readings(meter: Meter, *readings: tuple[str, str]) -> None:
    items = [(i, ReadingIn(timestamp=f"2026-11-22T{t}:00Z", energy_kwh=kwh)) for i, (t, kwh) in enumerate(readings)]
    assert ingest_readings(meter.pk, items, timezone.now()).rejected == []


def build_world(make_household, make_meter, staff_user) -> World:
    """A household with everything a page can show: a settlement on the ledger, a community pass, an alarm."""
    household = make_household("target-home@example.com")
    household.name = "Zyxwvut Target Home"
    household.save(update_fields=["name"])
    other = make_household("other-home@example.com")
    meter, token = make_meter(household)
    ledger = LocalLedger()
    PriceQuote.objects.create(source="fixed", bsv_eur=Decimal("30"), fetched_at=NOW - timedelta(minutes=1))
    wallet = open_wallet(household)
    open_wallet(other)
    ledger.fund(wallet.address, 10_000_000)
    ledger.fund(wallet.address, 1_000_000)
    ledger.mine()  # deposits are spent once confirmed
    wallet.sync_coins(ledger)
    send_readings(meter, ("10:00", "100"), ("11:00", "101"), ("12:00", "102"))
    result = settle_household(household.pk, PERIOD_END, timezone.now())
    assert send_one(Settlement, result.settlement_id, ledger)
    purchase = passes.buy_pass(household, timezone.now())
    send_one(CommunityPass, purchase.community_pass.pk, ledger)
    rule = AlarmRule.objects.create(household=household, kind="hourly_cost", threshold=Decimal("0.100"))
    rule.record(True, Decimal("0.25"), timezone.now())
    AlarmRule.objects.create(household=other, kind="daily_cost", threshold=Decimal("5"))
    tokens.issue(household.user, "Home Assistant", timezone.now())  # revoked only by its own household
    # October's statement (the household's contract began before it), with its page, PDF, CSV and JSON.
    Household.objects.filter(pk=household.pk).update(created_at=datetime(2026, 1, 1, tzinfo=UTC))
    issue_households([household.pk], date(2026, 10, 1), now=timezone.now())
    world = World(
        household=household,
        other=other,
        staff=staff_user,
        meter=meter,
        token=token,
        wallet=wallet,
        settlement=Settlement.objects.get(pk=result.settlement_id),
        community_pass=CommunityPass.objects.get(pk=purchase.community_pass.pk),
        rule=rule,
        statement=Statement.objects.get(household=household),
        withdrawal=withdrawal_of(household),
        ledger=ledger,
        tariff_version=TariffVersion.objects.filter(tariff=household.tariff).first(),
    )
    assert world.settlement.txid and world.community_pass.state in CommunityPass.ACCEPTED
    return world


def withdrawal_of(household: Household) -> Withdrawal:
    """A withdrawal shown on the household's pages (a row as the books keep it; no coin of the wallet moves)."""
    return Withdrawal.objects.create(
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


def persona_client(world: World, persona: str, **options: Any) -> Client:
    if persona == "meter token":
        return Client(HTTP_AUTHORIZATION=f"Bearer {world.token}", **options)
    browser = Client(**options)
    user = {"other household": world.other.user, "owner": world.household.user}.get(persona)
    if user is not None:
        browser.force_login(user)
    if persona == "staff":
        login_with_second_factor(browser, world.staff)
    return browser


pytestmark = pytest.mark.time_machine(NOW, tick=False)


@pytest.fixture
def world(make_household, make_meter, staff_user) -> World:
    return build_world(make_household, make_meter, staff_user)


# --- the matrix ---------------------------------------------------------------------------------------


def content_of(response: HttpResponse) -> str:
    body = b"".join(response.streaming_content) if response.streaming else response.content
    return body.decode("utf-8", "replace") + " " + response.get("Location", "")


def redirects_to(response: HttpResponse, url: str) -> bool:
    return response.status_code == 302 and response["Location"].split("?")[0] == url


def expectation(route: Route, persona: str, method: str) -> Callable[[HttpResponse], str | None]:
    """What ``persona`` must get from ``method route``: a check that returns a problem, or None."""
    login, admin_login, admin_index = resolve_url(settings.LOGIN_URL), reverse("admin:login"), reverse("admin:index")
    signed_in_elsewhere = persona in ("other household", "staff", "owner")  # a session, not a meter token

    def status(*allowed: int) -> Callable[[HttpResponse], str | None]:
        return lambda r: None if r.status_code in allowed else f"status {r.status_code}, expected one of {allowed}"

    def redirect(url: str) -> Callable[[HttpResponse], str | None]:
        return lambda r: None if redirects_to(r, url) else f"{r.status_code} {r.get('Location')}, expected -> {url}"

    if route.kind == "household":
        if method not in route.methods:
            # 405, or the persona's own refusal first where household_required is the outer decorator.
            refusal = {"anonymous": redirect(login), "meter token": redirect(login), "staff": redirect(admin_index)}
            other = refusal.get(persona)
            return lambda r: None if r.status_code == 405 or (other and other(r) is None) else f"{r.status_code}"
        if persona in ("anonymous", "meter token"):
            return redirect(login)
        if persona == "staff":
            return redirect(admin_index)
        if persona == "other household":
            return status(404) if route.is_object_page else status(200, 302, 400)
        # The owner's own page; a redirect stays among its own pages (alarm-detail -> the list, at the rule).
        return lambda r: (
            None
            if r.status_code in ((200, 302) if method == "GET" else (200, 302, 400))
            and not (r.status_code == 302 and r["Location"].split("?")[0] in (login, admin_index, admin_login))
            else f"{r.status_code} {r.get('Location', '')}"
        )
    if route.kind == "public":
        if route.name == "healthz":
            return status(200, 503) if method == "GET" else status(405)
        if route.name == "logout" and method == "GET":
            return status(405)
        if route.name == "login" and signed_in_elsewhere and method == "GET":
            return status(302)  # already signed in: on to the dashboard
        return status(200, 302, 405)
    if route.kind == "staff":
        if method not in route.methods:
            return status(405)
        return status(200) if persona == "staff" else status(401)
    if route.kind == "api":
        path_method = route.methods[0]
        if method != path_method:
            return status(405)
        if route.name == "api-community":
            return status(402)  # cookies and meter tokens pay nothing
        if route.name == "api-arc-callback":
            return status(401)  # only ARC holds the callback token
        if route.name.startswith("api-me-"):
            return status(401)  # sessions and meter tokens read no household's data
        return status(200) if persona == "meter token" else status(401)  # sessions do not authenticate meters
    # admin
    if persona == "staff":
        return lambda r: (
            f"staff got {r.status_code} {r.get('Location', '')}"
            if r.status_code >= 500 or redirects_to(r, admin_login)
            else None
        )
    if route.name == "admin:login":
        return status(200, 302)  # the sign-in form (a non-staff user is told it lacks access)
    if route.name == "admin:logout":  # non-staff are sent away before the method is looked at
        return lambda r: (
            None
            if r.status_code == 405 or redirects_to(r, admin_index) or redirects_to(r, admin_login)
            else f"{r.status_code} {r.get('Location', '')}"
        )
    return redirect(admin_login)


PERSONAS = ["anonymous", "meter token", "other household", "staff", "owner"]


def target_state(world: World) -> dict[str, Any]:
    household = world.household
    return {
        "rules": list(AlarmRule.objects.filter(household=household).values_list("pk", "paused", "muted_until")),
        "passes": list(CommunityPass.objects.filter(household=household).values_list("pk", "state")),
        "settlements": list(Settlement.objects.filter(household=household).values_list("pk", "state")),
        "coins": list(world.wallet.utxos.order_by("pk").values_list("pk", "state")),
        "meter": Meter.objects.filter(pk=world.meter.pk).values_list("token_hash", "is_active").get(),
        "user": type(household.user).objects.filter(pk=household.user.pk).values_list("password", "email").get(),
        "tokens": list(PersonalAccessToken.objects.filter(user=household.user).values_list("pk", "revoked_at")),
    }


def requests_for(world: World) -> list[tuple[Route, str, str]]:
    """(route, method, path) for every URL and method; unknown URLs or parameters fail with what to add."""
    planned, missing = [], []
    for route in all_routes():
        try:
            route.kind  # noqa: B018 (raises NoRule for a URL the matrix does not know)
            path = world.path(route)
        except NoRule as error:
            missing.append(str(error))
            continue
        planned += [(route, method, path) for method in ("GET", "POST")]
    assert not missing, "\n".join(missing)
    # The owner's POSTs change its own data: GETs first, deletions last.
    return sorted(planned, key=lambda item: (item[1] == "POST", (item[0].name or "").endswith("delete")))


@pytest.mark.parametrize("persona", PERSONAS)
def test_every_url_answers_each_persona_as_it_should_and_shows_nobody_the_households_data(world, persona):
    browser = persona_client(world, persona)
    markers, before = world.markers(), target_state(world)
    problems, seen_by_owner = [], ""
    for route, method, path in requests_for(world):
        if persona == "staff" and route.kind == "admin" and method == "POST":
            continue  # staff POSTs to the admin change data; the CSRF test sends them without a token
        if route.name in ("logout", "admin:logout") and method == "POST":
            response = persona_client(world, persona).post(path)  # signs out a browser of its own
        else:
            body = {"data": "{}", "content_type": "application/json"}  # ingest answers anything else 415
            response = browser.generic(method, path, **(body if route.kind == "api" else {}))
        if response.status_code >= 500 and not (route.name == "healthz" and response.status_code == 503):
            problems.append(f"{method} {path}: {response.status_code}")
            continue
        problem = expectation(route, persona, method)(response)
        if problem:
            problems.append(f"{method} {path} ({route.kind}): {problem}")
        if route.kind == "api" and method in route.methods:
            assert_conforms(response, path, method)
        text = content_of(response)
        if persona == "owner":
            seen_by_owner += text
        elif not (persona == "staff" and route.kind == "admin"):
            problems += [
                f"{method} {path}: shows the household's {what}" for what, value in markers.items() if value in text
            ]
    assert not problems, f"{persona}:\n" + "\n".join(problems)
    if persona != "owner":  # nobody else's request changed the household's data
        assert target_state(world) == before
    if persona == "owner":  # the markers are real: the household itself sees them
        assert world.settlement.txid in seen_by_owner and world.wallet.address in seen_by_owner


def test_an_unknown_url_fails_the_matrix_with_what_to_add(world, monkeypatch):
    stranger = Route("brand-new-page", (RoutePattern("brand-new/<int:pk>/"),), lambda request: None)
    with pytest.raises(NoRule, match="add its name to HOUSEHOLD_PAGES"):
        _ = stranger.kind
    monkeypatch.setitem(HOUSEHOLD_PAGES, "brand-new-page", ("GET",))
    with pytest.raises(NoRule, match="no fill rule for <pk>"):
        world.path(stranger)


def test_only_the_bearer_token_apis_take_a_post_without_a_csrf_token():
    exempt = {route.name or route.route for route in all_routes() if getattr(route.callback, "csrf_exempt", False)}
    assert exempt == CSRF_EXEMPT


@pytest.mark.parametrize("persona", ["owner", "staff"])
def test_a_post_without_a_csrf_token_is_refused_everywhere(world, persona):
    """A signed-in browser lured into posting from another site: 403 on every URL, nothing changed."""
    browser = persona_client(world, persona, enforce_csrf_checks=True)
    rules_before = list(AlarmRule.objects.values_list("pk", "paused", "muted_until").order_by("pk"))
    passes_before = CommunityPass.objects.count()
    failures = []
    for route in all_routes():
        if route.name in CSRF_EXEMPT or (persona == "owner") == (route.kind == "admin"):
            continue
        path = world.path(route)
        response = browser.post(path, {"for": "1h", "action": "issue_new_token", "_selected_action": world.meter.pk})
        if response.status_code != 403:
            failures.append(f"POST {path}: {response.status_code}")
    assert not failures, "\n".join(failures)
    assert list(AlarmRule.objects.values_list("pk", "paused", "muted_until").order_by("pk")) == rules_before
    assert CommunityPass.objects.count() == passes_before
    assert Meter.objects.get(pk=world.meter.pk).token_hash == world.meter.token_hash


def test_the_same_post_with_the_csrf_token_goes_through(world):
    """The 403s above are the CSRF check, not some other refusal."""
    browser = persona_client(world, "owner", enforce_csrf_checks=True)
    browser.get(reverse("alarm-list"))
    token = browser.cookies["csrftoken"].value
    response = browser.post(reverse("alarm-pause", args=[world.rule.pk]), HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 302
    world.rule.refresh_from_db()
    assert world.rule.paused


# --- replayed payments ---------------------------------------------------------------------------------

COMMUNITY = "/api/v1/community"


def test_a_replayed_payment_opens_nothing_for_another_client(world, client):
    """The transaction is public once broadcast: whoever reads it on the chain can send the same X-PAYMENT.
    It used to answer 200 to anyone until the access ended (issue 11). Now the first redemption returns
    an access token, the same payment from a second client is refused with the reason and charges nothing,
    and the payer keeps access with its token until the pass ends, not after."""
    key = PrivateKey()
    header = payment_header(pay(funded_coin(world.ledger, key), key, settings.COMMUNITY_PRICE_SATS).hex())
    first = client.get(COMMUNITY, headers={"X-PAYMENT": header})
    assert first.status_code == 200
    token = assert_conforms(first, COMMUNITY, "get")["accessToken"]
    with time_machine.travel(NOW + timedelta(days=1), tick=False):
        replay = Client().get(COMMUNITY, headers={"X-PAYMENT": header})
        kept = Client().get(COMMUNITY, headers={"Authorization": f"Bearer {token}"})
    assert replay.status_code == 402
    assert "payment already redeemed" in assert_conforms(replay, COMMUNITY, "get")["error"]
    assert kept.status_code == 200
    assert kept.json()["accessUntil"] == first.json()["accessUntil"]
    assert CommunityPass.objects.filter(source="x402").count() == 1
    assert LedgerTransaction.objects.filter(is_faucet=False).count() == 3  # settlement, wallet pass, this one
    with time_machine.travel(NOW + timedelta(days=settings.COMMUNITY_ACCESS_DAYS, minutes=1), tick=False):
        late = client.get(COMMUNITY, headers={"X-PAYMENT": header})
        expired = client.get(COMMUNITY, headers={"Authorization": f"Bearer {token}"})
    assert late.status_code == expired.status_code == 402
    assert "already bought access" in assert_conforms(late, COMMUNITY, "get")["error"]
    assert "pass ended" in assert_conforms(expired, COMMUNITY, "get")["error"]


def test_a_households_pass_txid_opens_neither_the_page_nor_the_api_for_anyone_else(world):
    """A household's pass is bound to its login: knowing its (public) txid or transaction gives nothing."""
    other = persona_client(world, "other household")
    page = other.get(reverse("community"), {"txid": world.community_pass.txid})
    assert page.status_code == 200
    assert world.community_pass.txid not in page.content.decode()
    assert 'action="/community/unlock"' in page.content.decode()  # still locked: the unlock form
    for headers in (
        {"Authorization": f"Bearer {world.community_pass.txid}"},
        {"X-PAYMENT": payment_header(world.community_pass.raw_tx)},
    ):
        response = other.get(COMMUNITY, headers=headers)
        assert response.status_code == 402
        assert_conforms(response, COMMUNITY, "get")
    assert not CommunityPass.objects.filter(household=world.other).exists()


@pytest.mark.parametrize("mined", [False, True])
def test_a_settlements_transaction_offered_as_payment_is_refused(world, client, mined):
    """Every settlement pays the utility and is public on the chain: it buys no community access."""
    if mined:
        world.ledger.mine()
    before = CommunityPass.objects.count()
    response = client.get(COMMUNITY, headers={"X-PAYMENT": payment_header(world.settlement.raw_tx)})
    assert response.status_code == 402
    assert "already on the network" in assert_conforms(response, COMMUNITY, "get")["error"]
    assert CommunityPass.objects.count() == before


def test_a_households_pass_payment_offered_over_http_402_is_refused(world, client):
    response = client.get(COMMUNITY, headers={"X-PAYMENT": payment_header(world.community_pass.raw_tx)})
    assert response.status_code == 402
    assert "household's pass" in assert_conforms(response, COMMUNITY, "get")["error"]
    assert CommunityPass.objects.filter(source="x402").count() == 0


# --- secrets ---------------------------------------------------------------------------------------------

SECRET_SETTINGS = {
    "SECRET_KEY": "django-secret-Q7vX2pL9-never-shown",
    "ARC_API_KEY": "arc-api-key-M4kT8wZ1-never-shown",
    "WOC_API_KEY": "woc-api-key-R3nY6cH5-never-shown",
    "EMAIL_HOST_PASSWORD": "smtp-password-J8dF2sA7-never-shown",
    "COINGECKO_API_KEY": "coingecko-key-B5gU9eK3-never-shown",
    "ARC_CALLBACK_TOKEN": "arc-callback-token-W2mP7qZ4-never-shown",
}
EXTENDED_PRIVATE_KEY = re.compile(r"[xt]prv[1-9A-HJ-NP-Za-km-z]{100,}")
WIF_SHAPED = re.compile(r"(?<![1-9A-HJ-NP-Za-km-z])[5KLc9][1-9A-HJ-NP-Za-km-z]{50,51}(?![1-9A-HJ-NP-Za-km-z])")


def _clear_key_caches() -> None:
    # payments.keys caches the master key and what derives from it: a new WALLET_MASTER_KEY needs a fresh start.
    for cached in (keys._master, keys._household_chain, keys._household_chain_public, keys.utility_address):
        cached.cache_clear()


@pytest.fixture
def secret_settings(settings) -> dict[str, str]:
    master = str(master_xprv_from_seed(secrets.token_bytes(64), Network.TESTNET))
    values = {**SECRET_SETTINGS, "WALLET_MASTER_KEY": master}
    for name, value in values.items():
        setattr(settings, name, value)
    settings.UTILITY_ADDRESS = ""  # derived from the master key, as on a local network
    _clear_key_caches()
    yield values
    _clear_key_caches()


def private_keys(master: str) -> dict[str, str]:
    """The master key and every private key derived from it that the app uses: none may ever be shown."""
    root = keys._master()
    assert str(root) == master
    derived = {"master key": master, "household chain": str(keys._household_chain())}
    derived["household account"] = str(ckd(root, keys.HOUSEHOLD_ACCOUNT))
    utility = ckd(root, f"{keys.UTILITY_ACCOUNT}/0/0").private_key()
    derived |= {"utility WIF": utility.wif(), "utility key hex": utility.hex()}
    for wallet in Wallet.objects.all():
        key = keys.household_key(wallet.derivation_index)
        derived |= {f"wallet {wallet.pk} WIF": key.wif(), f"wallet {wallet.pk} key hex": key.hex()}
    return derived


class RawRecords(logging.Handler):
    """Every record as it is logged, before any handler's filter could redact it."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        extra = {k: v for k, v in record.__dict__.items() if k not in logging.makeLogRecord({}).__dict__}
        self.lines.append(f"{record.name} {record.levelname} {text} {extra}")


@contextmanager
def raw_logs(monkeypatch) -> Iterator[RawRecords]:
    """Capture logging as with LOG_LEVEL=DEBUG (the root at DEBUG, LOGGING's own per-logger levels kept),
    each record as the code emits it: redaction in the handlers is a second line of defence, not the first."""
    capture = RawRecords()
    real_call_handlers = logging.Logger.callHandlers

    def call_handlers(self: logging.Logger, record: logging.LogRecord) -> None:
        capture.handle(record)
        real_call_handlers(self, record)

    monkeypatch.setattr(logging.Logger, "callHandlers", call_handlers)
    root, level = logging.getLogger(), logging.getLogger().level
    root.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.setLevel(level)


def admin_pages(world: World) -> list[str]:
    """Every admin page of every registered model: list, add, and the household's object's change/history/delete."""
    pages = [reverse("admin:index")]
    if any(route.name == "admin-status" for route in all_routes()):
        pages.append(reverse("admin-status"))
    for model in admin.site._registry:
        info = (model._meta.app_label, model._meta.model_name)
        prefix = "admin:{}_{}_".format(*info)
        pages += [reverse(prefix + "changelist"), reverse(prefix + "add")]
        pages.append(reverse("admin:app_list", kwargs={"app_label": info[0]}))
        found = world.object_of(model)
        if found is not None:
            pages += [reverse(prefix + page, args=[found.pk]) for page in ("change", "history", "delete")]
    return sorted(set(pages))


def test_secrets_never_reach_pages_admin_logs_mail_or_the_database(
    secret_settings, make_household, make_meter, staff_user, monkeypatch
):
    queries = CaptureQueriesContext(connection)
    outputs: dict[str, str] = {}  # where -> what was shown there

    def show(where: str, response: HttpResponse, *expected: int) -> HttpResponse:
        assert response.status_code in expected if expected else response.status_code < 500, (where, response)
        headers = " ".join(f"{name}: {value}" for name, value in response.items())
        outputs[where] = content_of(response) + " " + headers
        return response

    # A webhook endpoint subscribed to everything: its secret is stored to sign with, and shown nowhere.
    endpoint = WebhookEndpoint(url="https://crm.invalid/hooks", events=sorted(EVENT_TYPES))
    webhook_secret = endpoint.issue_secret()
    endpoint.save()
    with raw_logs(monkeypatch) as logs, queries:
        world = build_world(make_household, make_meter, staff_user)  # ingest, settlement, a wallet pass
        assert deliver_due()  # the alarm that fired, to a receiver that does not resolve: logged, retried
        owner, staff = persona_client(world, "owner"), persona_client(world, "staff")

        # A new meter token, shown once to staff by the admin action; used right away by the meter.
        changelist = reverse("admin:meters_meter_changelist")
        issued = show(
            "token page", staff.post(changelist, {"action": "issue_new_token", "_selected_action": world.meter.pk})
        )
        [token] = set(re.findall(r"mtr_[A-Za-z0-9_\-]{20,}", issued.content.decode()))
        del outputs["token page"]  # the one place the new token may appear
        meter = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
        readings = "/api/v1/readings"
        reading = {"timestamp": "2026-11-22T13:00:00Z", "energy_kwh": 103}
        show("ingest", meter.post(readings, reading, "application/json"), 200)
        show("ingest bad", meter.post(readings, "{not json", "application/json"), 400)
        show("ingest old token", persona_client(world, "meter token").post(readings, "{}", "application/json"), 401)
        with monkeypatch.context() as patch:
            patch.setattr("meters.api.fastpath.ingest", lambda *args: None)  # the Python path's turn
            patch.setattr("meters.api.ingest_locked", _database_gone)
            show("ingest 503", meter.post(readings, reading, "application/json"), 503)
        with monkeypatch.context() as patch:  # the PostgreSQL fast path fails the same way
            patch.setattr("meters.api.fastpath.ingest", _database_gone)
            show("ingest fast path 503", meter.post(readings, reading, "application/json"), 503)

        # The household's own flows: unlock (already open), a paid x402 request, a password reset mail.
        show("unlock", owner.post(reverse("community-unlock")), 302)
        key = PrivateKey()
        header = payment_header(pay(funded_coin(world.ledger, key), key, settings.COMMUNITY_PRICE_SATS).hex())
        paid = show("x402", Client().get(COMMUNITY, headers={"X-PAYMENT": header}), 200)
        access_token = paid.json()["accessToken"]
        del outputs["x402"]  # the one answer that shows the new access token (to the payer)
        bearer = Client(HTTP_AUTHORIZATION=f"Bearer {access_token}")
        show("x402 token", bearer.get(COMMUNITY), 200)
        show("x402 token with a payment", bearer.get(COMMUNITY, headers={"X-PAYMENT": header}), 200)
        show("x402 replay", Client().get(COMMUNITY, headers={"X-PAYMENT": header}), 402)
        show("x402 refused", Client().get(COMMUNITY, headers={"X-PAYMENT": base64.b64encode(b"{}").decode()}), 402)
        with monkeypatch.context() as patch:
            patch.setattr("payments.x402.CommunityPass.for_token", _database_gone)
            show("x402 token 503", bearer.get(COMMUNITY), 503)  # logged with its traceback
        show("reset", Client().post(reverse("password_reset"), {"email": world.household.user.email}), 302)

        # ARC calling back with the token the broadcast registered, and someone trying without it.
        arc = Client(HTTP_AUTHORIZATION=f"Bearer {secret_settings['ARC_CALLBACK_TOKEN']}")
        status = {"txid": "ab" * 32, "txStatus": "MINED", "timestamp": timezone.now().isoformat()}
        show("arc callback", arc.post("/api/v1/arc/callback", status, "application/json"), 200)
        show("arc callback replayed", arc.post("/api/v1/arc/callback", status, "application/json"), 401)
        show("arc callback no token", Client().post("/api/v1/arc/callback", status, "application/json"), 401)

        # Every household page as its owner, every admin page as staff, the health check as anyone.
        for route in all_routes():
            if route.kind == "household" and "GET" in route.methods:
                show(route.label, owner.get(world.path(route)))
            if route.name == "healthz":
                show(route.label, Client().get(world.path(route)), 200, 503)  # 503: no beat ticks in tests
        for page in admin_pages(world):
            show(page, staff.get(page))

    private = private_keys(secret_settings["WALLET_MASTER_KEY"])
    forbidden = {**secret_settings, **private}
    forbidden |= {"new meter token": token, "first meter token": world.token, "community access token": access_token}
    forbidden["webhook secret"] = webhook_secret
    places = {
        **outputs,
        "logs": "\n".join(logs.lines),
        "SQL": "\n".join(query["sql"] for query in queries.captured_queries),
        "mail": "\n".join(f"{m.subject}\n{m.body}\n{m.alternatives}" for m in mail.outbox),
    }
    assert len(logs.lines) > 20 and len(queries.captured_queries) > 100 and mail.outbox  # it all really ran
    leaks = [
        f"{what} in {where}" for where, text in places.items() for what, value in forbidden.items() if value in text
    ]
    for where, text in places.items():
        leaks += [f"extended private key in {where}" for _ in EXTENDED_PRIVATE_KEY.findall(text)]
        leaks += [f"WIF private key in {where}: {c[:6]}..." for c in WIF_SHAPED.findall(text) if _is_wif(c)]
    assert not leaks, "\n".join(sorted(set(leaks)))
    # The crawl reached the data: pages show the household's address, and the admin its transactions.
    assert any(world.wallet.address in text for where, text in outputs.items() if where.startswith("wallet "))
    assert any(world.settlement.txid in text for where, text in outputs.items() if where.startswith("/admin/"))


def _database_gone(*args: Any, **kwargs: Any) -> None:
    raise DatabaseError("server closed the connection unexpectedly")


def _is_wif(candidate: str) -> bool:
    try:
        PrivateKey(candidate)
    except Exception:  # bsv-sdk raises several types for what is not a WIF
        return False
    return True


def test_the_leak_checks_can_fail():
    """A WIF, an extended private key and a configured secret in a text are all found."""
    text = f"key {PrivateKey().wif()} and {master_xprv_from_seed(b'x' * 64, Network.TESTNET)}"
    assert [c for c in WIF_SHAPED.findall(text) if _is_wif(c)]
    assert EXTENDED_PRIVATE_KEY.findall(text)
