"""/admin/settings/: staff with the permission see every connection's settings and live status; no secret, ever."""

from __future__ import annotations

import re
import socket
import time

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from energypay import connections, health
from energypay.accounts.models import User
from tests.logins import login_with_second_factor

URL = "/admin/settings/"

# Random-looking, so that no 5-character piece of them can occur in a page by chance.
SECRETS = {
    "SECRET_KEY": "sk-Q7vXk2mZp9LwR4tYb8NcJ3hGd6FsA1eU",
    "SECRET_KEY_FALLBACK": "sk-Bv4Nq7Wm2Zx9Kt6Rp3Hc8Jd5",
    "WALLET_MASTER_KEY_TEXT": "tprv8ZgxMBicQKsPdQ7vXk2mZp9LwR4tYb8NcJ3hGd6FsA1eUzz",
    "ARC_API_KEY": "mainnet_Vt5Rq8Lm2Xz7Kp4Wn9Bc6Jh3",
    "WOC_API_KEY": "woc_Hy4Tg7Ub2Ne9Mk5Pq8Zr3Ls6",
    "COINGECKO_API_KEY": "CG-Wd3Fh8Jk2Lp5Qr9St4Uv7X",
    "EMAIL_HOST_PASSWORD": "smtp-Gq6Ht9Kx3Mz8Pb2Rc5Vn7W",
    "DB_PASSWORD": "dbpw-Yk8Rm3Tq6Wz2Xp9Lc4Nh7J",
    "BROKER_PASSWORD": "brk-Fz7Hp2Kq9Lm4Rx6Tb3Wc8N",
    "CACHE_PASSWORD": "rds-Jn5Qw8Zt3Mv6Pk2Xh9Ld4B",
    "NODE_PASSWORD": "rpc-Pm9Vx4Kc7Tq2Wn6Hz3Lb8R",
}


def pieces(secret: str, size: int = 5):
    """Every run of ``size`` characters of the secret: each includes something before its last 4."""
    return {secret[i : i + size] for i in range(len(secret) - size + 1)}


@pytest.fixture(autouse=True)
def _fresh_memo():
    health.memo.clear()
    yield
    health.memo.clear()


@pytest.fixture
def secrets_set(settings):
    # The old key as a fallback keeps the staff session signed with it valid.
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY, SECRETS["SECRET_KEY_FALLBACK"]]
    settings.SECRET_KEY = SECRETS["SECRET_KEY"]
    settings.ARC_API_KEY = SECRETS["ARC_API_KEY"]
    settings.WOC_API_KEY = SECRETS["WOC_API_KEY"]
    settings.COINGECKO_API_KEY = SECRETS["COINGECKO_API_KEY"]
    settings.PRICE_SOURCE = "coingecko"
    settings.EMAIL_HOST_PASSWORD = SECRETS["EMAIL_HOST_PASSWORD"]
    settings.EMAIL_HOST_USER = "mailer"
    settings.BSV_NODE_RPC_URL = f"http://energypay:{SECRETS['NODE_PASSWORD']}@127.0.0.1:18332"
    # Shown only: the page and its checks run against these settings as they are (the broker and cache
    # are not reachable with these passwords, which is fine: their failure must not leak them either).
    settings.CELERY_BROKER_URL = f"redis://:{SECRETS['BROKER_PASSWORD']}@127.0.0.1:1/11"
    settings.CACHE_URL = f"redis://default:{SECRETS['CACHE_PASSWORD']}@127.0.0.1:6379/10"
    settings.DATABASES["default"]["PASSWORD"] = SECRETS["DB_PASSWORD"]
    yield settings
    settings.DATABASES["default"]["PASSWORD"] = ""


def test_staff_find_it_from_the_admin_index(staff_client):
    assert f'href="{URL}"' in staff_client.get("/admin/").content.decode()


def test_households_and_staff_without_the_permission_are_refused(household_client, db):
    assert household_client.get(URL).status_code == 302  # to the admin's login
    clerk = User.objects.create_user("clerk@example.com", "pw-unused-123", is_staff=True)
    browser = login_with_second_factor(Client(), clerk)
    assert browser.get(URL).status_code == 403
    assert browser.post(f"{URL}test/database/").status_code == 403
    assert 'href="/admin/settings/"' not in browser.get("/admin/").content.decode()
    clerk.user_permissions.add(Permission.objects.get(codename="view_connections"))
    assert browser.get(URL).status_code == 200


def test_the_page_shows_every_connection_with_its_live_status(staff_client):
    response = staff_client.get(URL)
    assert response.status_code == 200
    html = response.content.decode()
    for name in ["database", "broker", "cache", "email", "network", "arc", "node", "price"]:
        assert f'id="connection-{name}"' in html, name
    start = html.index('id="connection-database"')
    row = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html[start : html.index("</tr>", start)]))
    assert " ok (" in row and " ms)" in row


def test_no_secret_is_in_the_page_source_not_even_in_part(staff_client, secrets_set, monkeypatch):
    monkeypatch.setattr("payments.keys.settings.WALLET_MASTER_KEY", SECRETS["WALLET_MASTER_KEY_TEXT"], raising=False)
    secrets_set.WALLET_MASTER_KEY = SECRETS["WALLET_MASTER_KEY_TEXT"]
    responses = [staff_client.get(URL)]
    for test_name in ["broker", "cache", "email", "node", "arc", "network", "database", "price"]:
        responses.append(staff_client.post(f"{URL}test/{test_name}/", HTTP_HX_REQUEST="true"))
        responses.append(staff_client.post(f"{URL}test/{test_name}/"))
    assert {response.status_code for response in responses} == {200}
    html = "".join(response.content.decode() for response in responses)
    for label, secret in SECRETS.items():
        leaked = [piece for piece in pieces(secret) if piece in html]
        assert not leaked, f"{label}: {leaked}"
    # API keys show their last 4 characters, so staff can tell which key is set.
    assert "••••••••" + SECRETS["ARC_API_KEY"][-4:] in html
    assert "redis://:****@127.0.0.1:1/11" in html  # the broker URL with its password masked


def test_the_test_button_answers_the_row_for_htmx_and_needs_csrf(staff_client, staff_user):
    response = staff_client.post(f"{URL}test/database/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = response.content.decode()
    assert body.strip().startswith('<tr id="connection-database"') and "tested" in body
    assert "<html" not in body
    assert response["Vary"] and "HX-Request" in response["Vary"]
    strict = login_with_second_factor(Client(enforce_csrf_checks=True), staff_user)
    assert strict.post(f"{URL}test/database/").status_code == 403
    assert staff_client.get(f"{URL}test/database/").status_code == 405
    assert staff_client.post(f"{URL}test/nothing/").status_code == 404


def test_a_mail_server_that_hangs_fails_within_the_timeout(staff_client, settings):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)  # accepts the connection, never says a word: an SMTP server that hangs
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_USE_TLS = "127.0.0.1", listener.getsockname()[1], False
    settings.HEALTH_TIMEOUT_SECONDS = 1
    try:
        started = time.monotonic()
        response = staff_client.post(f"{URL}test/email/", HTTP_HX_REQUEST="true")
        took = time.monotonic() - started
    finally:
        listener.close()
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))
    assert " fail " in text
    assert took < 3  # the timeout (1 s) and a little: no request waits on a silent server


def test_a_broker_that_is_down_shows_as_failed_without_its_password(staff_client, monkeypatch):
    from energypay.celery import app

    monkeypatch.setattr(app.conf, "broker_url", "redis://:broker-Zq8Wm3Xv6Tk@127.0.0.1:1/0")
    body = staff_client.post(f"{URL}test/broker/", HTTP_HX_REQUEST="true").content.decode()
    assert "fail" in body and "OperationalError" in body
    assert "Zq8Wm" not in body


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgres://app:s3cr3t-pass@db:5432/energypay", "postgres://app:****@db:5432/energypay"),
        ("redis://:pw-long-enough@cache:6379/0", "redis://:****@cache:6379/0"),
        ("http://energypay:energypay@127.0.0.1:18332", "http://energypay:****@127.0.0.1:18332"),
        ("https://arc.example/v1?api_key=abcdef123456&x=1", "https://arc.example/v1?api_key=****&x=1"),
        ("filesystem://", "filesystem://"),
    ],
)
def test_urls_are_shown_without_their_credentials(url, shown):
    assert connections.mask_url(url) == shown


def test_keys_show_their_last_four_characters_and_short_ones_nothing():
    assert connections.mask("abcdefghijklmnop") == "••••••••mnop"
    assert connections.mask("short-key") == "set (hidden)"
    assert connections.mask("") == "not set"
