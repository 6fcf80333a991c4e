"""Response headers: a strict Content-Security-Policy, no caching of logged-in answers, JSON 431 on /api/.

Pages are checked by parsing them: under the policy nothing inline may run or style, so every
<script> has a src (or is json_script data), and no element carries a style or an on* attribute.
The browser check of the same policy is tests/e2e/test_csp.py.
"""

from __future__ import annotations

import json
import re
import runpy
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.urls import reverse

from tests.energypay.test_deploy_settings import (  # noqa: F401 (household_objects is a fixture)
    admin_pages,
    household_objects,
    household_urls,
)

ROOT = Path(__file__).resolve().parents[2]
COMMUNITY = "/api/v1/community"


def policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    directives = (part.strip().split() for part in header.split(";") if part.strip())
    return {name: values for name, *values in directives}


class InlineCode(HTMLParser):
    """What a page has that a strict policy refuses: inline scripts, <style>, style and on* attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []
        self.scripts: list[dict[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = {key: value or "" for key, value in attrs}
        if tag == "script":
            self.scripts.append(named)
            if not named.get("src") and named.get("type") != "application/json":
                self.problems.append(f"inline <script {named}>")
        if tag == "style":
            self.problems.append("<style> element")
        for key in named:
            if key == "style" or key.startswith("on"):
                self.problems.append(f"<{tag} {key}={named[key][:60]!r}>")


def inline_code(html: str) -> InlineCode:
    page = InlineCode()
    page.feed(html)
    return page


# --- Content-Security-Policy ---------------------------------------------------------------------


def test_the_policy_allows_this_site_and_the_pinned_chart_file_and_nothing_inline(household_client):
    directives = policy(household_client.get(reverse("dashboard")))
    assert directives["default-src"] == ["'self'"]
    assert directives["script-src"] == ["'self'", settings.CHART_JS_URL]
    assert directives["style-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["base-uri"] == ["'none'"]
    everything = " ".join(value for values in directives.values() for value in values)
    assert "unsafe-inline" not in everything and "unsafe-eval" not in everything and "*" not in everything


def test_the_chart_script_is_the_pinned_file_with_its_integrity_hash(household_client):
    page = inline_code(household_client.get(reverse("dashboard")).content.decode())
    remote = [script for script in page.scripts if script.get("src", "").startswith("https://")]
    pinned = {"src": settings.CHART_JS_URL, "integrity": settings.CHART_JS_INTEGRITY, "crossorigin": "anonymous"}
    assert remote == [pinned | {"defer": ""}]


def test_htmx_is_told_not_to_add_inline_styles_or_evaluate_attributes(household_client):
    html = household_client.get(reverse("dashboard")).content.decode()
    config = re.search(r"<meta name=\"htmx-config\" content='([^']*)'>", html)
    assert json.loads(config.group(1)) == {
        "includeIndicatorStyles": False,  # no inline <style>
        "allowEval": False,  # no eval of attribute text
        "attributesToSettle": ["class", "width", "height"],  # no setAttribute("style") after a swap
    }


def test_no_household_page_has_inline_script_or_style(household_client, household_objects):  # noqa: F811
    ids = {
        name: household_objects[name].pk for name in ("settlement", "alarm", "statement", "access-token", "withdrawal")
    }
    checked = []
    for route, pattern in household_urls():
        if "<" in route.replace("<int:pk>", ""):
            continue
        owner = next((name for name in ids if (pattern.name or "").startswith(name)), None)
        kwargs = {"pk": ids[owner]} if "<int:pk>" in route and owner else {}
        url = reverse(pattern.name, kwargs=kwargs) if pattern.name else "/" + route
        response = household_client.get(url)
        if response.status_code != 200 or "text/html" not in response.get("Content-Type", ""):
            continue
        assert "Content-Security-Policy" in response, url
        assert inline_code(response.content.decode()).problems == [], url
        checked.append(pattern.name)
    assert {"dashboard", "settlement-list", "settlement-detail", "wallet", "community", "alarm-list"} <= set(checked)


def test_the_unlocked_community_page_draws_its_chart_from_a_static_file(household_client, household):
    from payments.models import CommunityPass

    CommunityPass.objects.create(
        household=household,
        source=CommunityPass.Source.WALLET,
        txid="cd" * 32,
        raw_tx="00",
        satoshis=settings.COMMUNITY_PRICE_SATS,
        fee_satoshis=1,
        state=CommunityPass.State.CONFIRMED,
        valid_until=datetime.now(UTC) + timedelta(days=30),
    )
    response = household_client.get(reverse("community"))
    page = inline_code(response.content.decode())
    assert page.problems == []
    sources = [script.get("src", "") for script in page.scripts]
    assert any(src.endswith("js/community-chart.js") for src in sources), sources
    assert {"type": "application/json", "id": "community-chart-data"} in page.scripts


def test_the_login_page_and_the_admin_have_no_inline_script_or_style(client, staff_client, household_objects):  # noqa: F811
    for url in ("/login/", reverse("password_reset"), "/admin/login/"):
        response = client.get(url)
        assert "Content-Security-Policy" in response, url
        assert inline_code(response.content.decode()).problems == [], url
    for url in admin_pages():
        response = staff_client.get(url)
        if response.status_code == 200:
            assert inline_code(response.content.decode()).problems == [], url


# --- Cache-Control -------------------------------------------------------------------------------


def directives_of(response) -> set[str]:
    return {part.strip().split("=")[0] for part in response.get("Cache-Control", "").split(",") if part.strip()}


@pytest.mark.parametrize(
    "url",
    [
        "/",
        "/?range=week&unit=kwh",
        "/payments/",
        "/wallet/",
        "/community/",
        "/alarms/",
        "/usage.csv?start=2026-11-01&end=2026-11-02",
        "/payments.csv?start=2026-11-01&end=2026-11-02",
    ],
)
def test_every_household_answer_is_private_and_never_stored(household_client, url):
    response = household_client.get(url)
    assert response.status_code == 200, url
    assert {"private", "no-store"} <= directives_of(response), response.get("Cache-Control")


def test_htmx_fragments_are_never_stored_either(household_client):
    response = household_client.get("/?range=month", headers={"HX-Request": "true"})
    assert {"private", "no-store"} <= directives_of(response)


def test_admin_pages_are_private_and_never_stored(staff_client):
    for url in ("/admin/", reverse("admin-status"), reverse("admin:meters_household_changelist")):
        response = staff_client.get(url)
        assert {"private", "no-store"} <= directives_of(response), url


def test_a_redirect_for_a_logged_in_user_is_private_too(household_client):
    response = household_client.get("/login/")  # a logged-in household is sent on to its dashboard
    assert response.status_code == 302
    assert {"private", "no-store"} <= directives_of(response)


def test_the_login_answer_itself_is_private_though_the_browser_came_without_a_session(client, household):
    household.user.set_password("correct horse battery")
    household.user.save()
    response = client.post(reverse("login"), {"username": household.user.email, "password": "correct horse battery"})
    assert response.status_code == 302 and "_auth_user_id" in client.session
    assert {"private", "no-store"} <= directives_of(response)


def test_a_request_without_a_session_cookie_never_loads_its_user():
    """A meter's ingest request sends no cookie: it is anonymous without looking up a session or a user."""
    from django.contrib.sessions.backends.db import SessionStore
    from django.http import HttpResponse
    from django.test import RequestFactory
    from django.utils.functional import SimpleLazyObject

    from energypay.middleware import private_no_store

    request = RequestFactory().post("/api/v1/readings", content_type="application/json")
    request.session = SessionStore()
    request.user = SimpleLazyObject(lambda: pytest.fail("request.user was loaded"))
    response = private_no_store(lambda request: HttpResponse())(request)
    assert "no-store" not in directives_of(response)


def test_anonymous_answers_keep_what_their_view_decided(client, db):
    reset = client.get(reverse("password_reset"))
    assert reset.status_code == 200 and "no-store" not in directives_of(reset)


# --- Header sizes on /api/ -----------------------------------------------------------------------


def test_an_x_payment_over_the_documented_size_is_a_json_431(client, db):
    response = client.get(COMMUNITY, headers={"X-PAYMENT": "A" * (settings.API_MAX_PAYMENT_HEADER_BYTES + 4)})
    assert response.status_code == 431
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "error": {
            "code": "headers_too_large",
            "message": f"X-PAYMENT is over {settings.API_MAX_PAYMENT_HEADER_BYTES} bytes",
        }
    }


def test_an_x_payment_of_exactly_the_documented_size_reaches_the_payment_check(client, db):
    response = client.get(COMMUNITY, headers={"X-PAYMENT": "A" * settings.API_MAX_PAYMENT_HEADER_BYTES})
    assert response.status_code == 402
    assert "does not decode to JSON" in response.json()["error"]


def test_headers_over_the_documented_total_are_a_json_431(client, db):
    headers = {f"X-Filler-{n}": "x" * 1000 for n in range(settings.API_MAX_HEADER_BYTES // 1000 + 1)}
    response = client.post(reverse("api-readings"), "{}", content_type="application/json", headers=headers)
    assert response.status_code == 431
    assert response.json() == {
        "error": {
            "code": "headers_too_large",
            "message": f"the request headers are over {settings.API_MAX_HEADER_BYTES} bytes in all",
        }
    }


def test_pages_outside_the_api_are_not_refused_for_their_headers(client, db):
    response = client.get("/login/", headers={"X-PAYMENT": "A" * (settings.API_MAX_PAYMENT_HEADER_BYTES + 4)})
    assert response.status_code == 200


# --- The lean lane: /api/ routes served past the middleware they do not use ------------------------


def test_the_ingest_answer_carries_the_api_headers_and_no_page_policy(client, db):
    response = client.post(reverse("api-readings"), "{}", content_type="application/json")
    assert response.status_code == 401  # no token: answered by the view itself, past sessions and CSRF
    assert response["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Content-Length"] == str(len(response.content))
    # SecurityMiddleware sits above the lane: its headers stay.
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert "Set-Cookie" not in response and "Vary" not in response


def test_over_https_the_ingest_answer_carries_hsts(client, db, settings):
    settings.SECURE_HSTS_SECONDS = 31_536_000
    response = client.post(reverse("api-readings"), "{}", content_type="application/json", secure=True)
    assert response["Strict-Transport-Security"].startswith("max-age=31536000")


def test_plain_http_to_the_ingest_route_is_still_redirected_when_https_is_required(client, db, settings):
    settings.SECURE_SSL_REDIRECT = True
    response = client.post(reverse("api-readings"), "{}", content_type="application/json")
    assert response.status_code == 301 and response["Location"].startswith("https://")


def test_the_lane_skips_the_session_and_user_middleware_for_its_routes_only(client, db, monkeypatch):
    """Sessions, CSRF, authentication, messages and the page policy never run for ingest; they still do elsewhere."""
    from django.contrib.sessions import middleware as sessions

    seen = []
    real = sessions.SessionMiddleware.process_request

    def spying(self, request):
        seen.append(request.path)
        return real(self, request)

    monkeypatch.setattr(sessions.SessionMiddleware, "process_request", spying)
    client.post(reverse("api-readings"), "{}", content_type="application/json")
    community = client.get(COMMUNITY)
    assert seen == [COMMUNITY]
    assert "script-src" in community["Content-Security-Policy"]  # the site's policy, from the full stack


def test_every_lean_route_names_a_url(settings):
    from energypay.middleware import _lean_views

    assert list(_lean_views()) == [reverse(name) for name in settings.LEAN_API_ROUTES]


# --- gunicorn.conf.py ----------------------------------------------------------------------------


def gunicorn_settings() -> dict:
    return runpy.run_path(str(ROOT / "gunicorn.conf.py"), init_globals={})


def test_gunicorn_lets_the_documented_headers_through_to_the_application():
    conf = gunicorn_settings()
    # "X-PAYMENT: " + value + CRLF on one line, and a margin so that the app sees (and answers) larger ones.
    assert conf["limit_request_field_size"] > settings.API_MAX_PAYMENT_HEADER_BYTES + len("X-PAYMENT: \r\n")
    assert conf["limit_request_fields"] * conf["limit_request_field_size"] > settings.API_MAX_HEADER_BYTES
    assert conf["timeout"] == 30 and conf["worker_class"] == "sync" and conf["workers"] >= 1


def test_gunicorn_takes_its_worker_count_from_the_environment(monkeypatch):
    monkeypatch.setenv("GUNICORN_WORKERS", "3")
    assert gunicorn_settings()["workers"] == 3
    monkeypatch.setenv("GUNICORN_WORKERS", "many")
    with pytest.raises(SystemExit, match="GUNICORN_WORKERS='many' is not a whole number"):
        gunicorn_settings()


def test_gunicorns_access_line_shows_its_fields_redacted_and_escaped():
    atoms = gunicorn_settings()["RedactedAtoms"](
        {"r": "GET /password-reset/MQ/cz5kyq-0f3e/ HTTP/1.1", "a": 'agent "7"'}
    )
    line = '"%(r)s" "%(a)s" %(m)s' % atoms  # noqa: UP031 (as logging formats gunicorn's access line)
    assert line == '"GET /password-reset/MQ/[REDACTED]/ HTTP/1.1" "agent \\"7\\"" -'


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class Served:
    url: str
    access_log: Path


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory):
    """The real server with the shipped gunicorn.conf.py, one worker, on a free port."""
    var = tmp_path_factory.mktemp("var")
    port = free_port()
    environ = {
        "PATH": "/usr/bin:/bin",
        "DJANGO_SETTINGS_MODULE": "energypay.settings",
        "ENERGYPAY_VAR_DIR": str(var),
        "DATABASE_URL": f"sqlite:///{var / 'db.sqlite3'}",  # an oversized or junk payment never reads it
        "GUNICORN_BIND": f"127.0.0.1:{port}",
        "GUNICORN_WORKERS": "1",
        "GUNICORN_ACCESS_LOG": str(var / "access.log"),
    }
    log = (var / "gunicorn.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "energypay.wsgi:application"],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                requests.get(base + "/login/", timeout=30)  # the first request loads the URLconf: slow
                break
            except requests.ConnectionError:
                if server.poll() is not None:
                    pytest.fail((var / "gunicorn.log").read_text()[-2000:])
                time.sleep(0.1)
        yield Served(base, var / "access.log")
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


@pytest.mark.timeout(180)
def test_behind_gunicorn_a_9_kb_payment_reaches_the_application(gunicorn):
    # gunicorn's default (8190 bytes a line) answered this with its own HTML 400 page.
    response = requests.get(gunicorn.url + COMMUNITY, headers={"X-PAYMENT": "A" * 9000}, timeout=30)
    assert response.status_code == 402
    assert "does not decode to JSON" in response.json()["error"]


@pytest.mark.timeout(180)
def test_behind_gunicorn_an_oversized_payment_gets_the_json_431(gunicorn):
    response = requests.get(
        gunicorn.url + COMMUNITY,
        headers={"X-PAYMENT": "A" * (settings.API_MAX_PAYMENT_HEADER_BYTES + 1000)},
        timeout=30,
    )
    assert response.status_code == 431
    assert json.loads(response.text) == {
        "error": {
            "code": "headers_too_large",
            "message": f"X-PAYMENT is over {settings.API_MAX_PAYMENT_HEADER_BYTES} bytes",
        }
    }


@pytest.mark.timeout(180)
def test_behind_gunicorn_the_access_log_never_shows_a_password_reset_token(gunicorn):
    # The link in a reset mail carries the token in its path; gunicorn's access log wrote it in full.
    token = "cz5kyq-0f3e9a1b2c3d4e5f60718293a4b5c6d7"
    requests.get(f"{gunicorn.url}/password-reset/MQ/{token}/", timeout=30, allow_redirects=False)
    for _ in range(50):  # the worker writes the line after answering
        if "/password-reset/MQ/" in gunicorn.access_log.read_text():
            break
        time.sleep(0.1)
    logged = gunicorn.access_log.read_text()
    assert "/password-reset/MQ/[REDACTED]" in logged
    assert token not in logged
