"""The admin's second factor: a code from an authenticator app (TOTP) or a single-use recovery code, after the password.

Issue 11: before, a staff password alone opened the admin. Households never get asked for a code.
"""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django_otp.oath import totp
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from energypay.accounts.models import User
from energypay.accounts.otp import new_recovery_codes
from tests.energypay.test_deploy_settings import manage

PASSWORD = "correct horse battery"
NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
ADMIN = "/admin/"

pytestmark = [pytest.mark.django_db, pytest.mark.time_machine(NOW, tick=False)]


@pytest.fixture
def staff(staff_user) -> User:
    staff_user.set_password(PASSWORD)
    staff_user.save()
    return staff_user


@pytest.fixture
def app(staff) -> TOTPDevice:
    """The staff member's confirmed authenticator app."""
    return TOTPDevice.objects.create(user=staff, name="Phone", confirmed=True)


def code_of(device: TOTPDevice) -> str:
    return f"{totp(device.bin_key, device.step, device.t0, device.digits):06d}"


def wrong_code_for(device: TOTPDevice) -> str:
    return "000000" if code_of(device) != "000000" else "111111"


def shown_secret(html: str) -> str:
    return re.search(r'<code id="otp-secret">([A-Z2-7 ]+)</code>', html).group(1).replace(" ", "")


def password_step(browser: Client, email: str, *, next_url: str = ADMIN):
    return browser.post(
        f"{reverse('admin:login')}?next={next_url}", {"username": email, "password": PASSWORD, "next": next_url}
    )


def enters_the_admin(browser: Client) -> bool:
    return browser.get(ADMIN).status_code == 200


# --- enrolment ---------------------------------------------------------------------------------------------


def test_staff_without_a_device_is_sent_from_the_password_to_enrolment(staff):
    browser = Client()

    response = password_step(browser, staff.email)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse('admin:otp-enrol')}?next=%2Fadmin%2F"
    assert not enters_the_admin(browser)
    assert browser.get(reverse("admin:login")).url.startswith(reverse("admin:otp-enrol"))


def test_enrolment_shows_the_qr_code_and_the_secret_then_a_right_code_shows_ten_recovery_codes_once(staff):
    browser = Client()
    password_step(browser, staff.email)

    page = browser.get(reverse("admin:otp-enrol"))
    device = TOTPDevice.objects.get(user=staff)
    html = page.content.decode()
    assert page.status_code == 200 and not device.confirmed
    assert "<svg" in html and "<path" in html  # the otpauth URI's QR code, inline: no URL serves the secret
    secret = shown_secret(html)
    assert f"secret={secret}" in device.config_url and "issuer=EnergyPay" in device.config_url
    assert shown_secret(browser.get(reverse("admin:otp-enrol")).content.decode()) == secret  # the same on reload

    done = browser.post(reverse("admin:otp-enrol"), {"code": code_of(device), "next": ADMIN})

    device.refresh_from_db()
    assert device.confirmed
    shown = re.findall(r"<li><code>([a-z2-7]{8})</code></li>", done.content.decode())
    stored = StaticToken.objects.filter(device__user=staff).values_list("token", flat=True)
    assert len(shown) == 10 and sorted(shown) == sorted(stored)
    assert "no-store" in done["Cache-Control"]
    assert enters_the_admin(browser)
    again = browser.get(reverse("admin:otp-enrol"))  # enrolled: the codes are never shown again
    assert again.status_code == 302 and not any(code in again.content.decode() for code in shown)


def test_enrolment_refuses_a_wrong_code_and_the_admin_stays_shut(staff):
    browser = Client()
    password_step(browser, staff.email)
    browser.get(reverse("admin:otp-enrol"))
    device = TOTPDevice.objects.get(user=staff)

    response = browser.post(reverse("admin:otp-enrol"), {"code": wrong_code_for(device)})

    assert response.status_code == 200 and "That code is not valid" in response.content.decode()
    device.refresh_from_db()
    assert not device.confirmed and not StaticDevice.objects.filter(user=staff).exists()
    assert not enters_the_admin(browser)


def test_a_password_alone_cannot_enrol_another_device_for_staff_who_have_one(staff, app):
    browser = Client()
    password_step(browser, staff.email)

    response = browser.get(reverse("admin:otp-enrol"))

    assert response.status_code == 302 and response["Location"].startswith(reverse("admin:otp-verify"))
    assert list(TOTPDevice.objects.filter(user=staff)) == [app]


# --- the code after the password ---------------------------------------------------------------------------


def test_the_admin_login_asks_for_the_code_after_the_password(staff, app):
    browser = Client()

    response = password_step(browser, staff.email)

    assert response["Location"] == f"{reverse('admin:otp-verify')}?next=%2Fadmin%2F"
    assert not enters_the_admin(browser)
    code_page = browser.get(response["Location"]).content.decode()
    assert 'name="code"' in code_page
    # Nothing of the admin yet: no app list, no sidebar of models to click.
    assert "nav-sidebar" not in code_page and reverse("admin:meters_meter_changelist") not in code_page


def test_a_wrong_code_is_refused_and_the_right_one_enters(staff, app, time_machine):
    browser = Client()
    password_step(browser, staff.email)

    refused = browser.post(reverse("admin:otp-verify"), {"code": wrong_code_for(app), "next": ADMIN})
    assert refused.status_code == 200 and "That code is not valid" in refused.content.decode()
    assert not enters_the_admin(browser)

    time_machine.shift(timedelta(seconds=2))  # django-otp makes the next try wait a second after a wrong code
    entered = browser.post(reverse("admin:otp-verify"), {"code": code_of(app), "next": "/admin/meters/"})
    assert entered.status_code == 302 and entered["Location"] == "/admin/meters/"
    assert enters_the_admin(browser)


def test_after_wrong_codes_even_the_right_one_waits_longer_each_time(staff, app, time_machine):
    """Guessing six digits is slowed down: django-otp waits 1 s after a wrong code, then 2 s, 4 s, ..."""
    browser = Client()
    password_step(browser, staff.email)
    for seconds in (1, 2, 4):
        browser.post(reverse("admin:otp-verify"), {"code": wrong_code_for(app)})
        time_machine.shift(timedelta(seconds=seconds - 0.5))
        early = browser.post(reverse("admin:otp-verify"), {"code": code_of(app)})
        assert early.status_code == 200 and "Too many wrong codes" in early.content.decode()
        time_machine.shift(timedelta(seconds=0.6))
    app.refresh_from_db()
    assert app.throttling_failure_count == 3

    assert browser.post(reverse("admin:otp-verify"), {"code": code_of(app)}).status_code == 302
    assert enters_the_admin(browser)


def test_the_same_code_does_not_open_a_second_session(staff, app):
    first, second = Client(), Client()
    password_step(first, staff.email)
    password_step(second, staff.email)
    code = code_of(app)

    first.post(reverse("admin:otp-verify"), {"code": code})
    replayed = second.post(reverse("admin:otp-verify"), {"code": code})

    assert enters_the_admin(first)
    assert replayed.status_code == 200 and not enters_the_admin(second)


def test_a_recovery_code_enters_once(staff, app, time_machine):
    codes = new_recovery_codes(staff)
    first = Client()
    password_step(first, staff.email)

    entered = first.post(reverse("admin:otp-verify"), {"code": codes[0].upper()})
    assert entered.status_code == 302 and enters_the_admin(first)
    assert codes[0] not in StaticToken.objects.values_list("token", flat=True)

    time_machine.shift(timedelta(minutes=1))
    second = Client()
    password_step(second, staff.email)
    refused = second.post(reverse("admin:otp-verify"), {"code": codes[0]})
    assert refused.status_code == 200 and not enters_the_admin(second)
    time_machine.shift(timedelta(seconds=2))
    assert second.post(reverse("admin:otp-verify"), {"code": codes[1]}).status_code == 302
    assert enters_the_admin(second)


def test_the_code_page_never_sends_anyone_to_another_site(staff, app):
    browser = Client()
    password_step(browser, staff.email)

    response = browser.post(reverse("admin:otp-verify"), {"code": code_of(app), "next": "https://evil.example/"})

    assert response["Location"] == reverse("admin:index")


def test_a_staff_password_on_the_household_login_still_needs_the_code_for_the_admin(staff, app):
    browser = Client()
    browser.post(reverse("login"), {"username": staff.email, "password": PASSWORD})

    to_login = browser.get(ADMIN)
    to_code = browser.get(to_login["Location"])

    assert to_login["Location"].startswith(reverse("admin:login"))
    assert to_code["Location"].startswith(reverse("admin:otp-verify"))
    assert browser.get(reverse("admin-status")).status_code == 302  # the status page too


def test_the_code_pages_send_anyone_but_staff_to_the_admin_login(household):
    household.user.set_password(PASSWORD)
    household.user.save()
    browser = Client()
    browser.post(reverse("login"), {"username": household.user.email, "password": PASSWORD})

    for name in ("admin:otp-verify", "admin:otp-enrol"):
        assert browser.get(reverse(name))["Location"].startswith(reverse("admin:login"))
        assert Client().get(reverse(name))["Location"].startswith(reverse("admin:login"))
    assert not TOTPDevice.objects.exists()


def test_a_household_login_is_never_asked_for_a_code(household):
    household.user.set_password(PASSWORD)
    household.user.save()
    browser = Client()

    response = browser.post(reverse("login"), {"username": household.user.email, "password": PASSWORD})

    assert response.status_code == 302 and response["Location"] == reverse("dashboard")
    assert browser.get(reverse("dashboard")).status_code == 200


# --- the setting ---------------------------------------------------------------------------------------------


def test_without_the_requirement_a_password_opens_the_admin(staff, settings):
    settings.ADMIN_REQUIRE_2FA = False
    browser = Client()

    response = password_step(browser, staff.email)

    assert response["Location"] == ADMIN and enters_the_admin(browser)


def test_the_requirement_cannot_be_turned_off_with_debug_off():
    result = manage("check", ADMIN_REQUIRE_2FA="false")
    assert result.returncode != 0
    assert "ADMIN_REQUIRE_2FA=false is for DEBUG demos only" in result.stderr


# --- the demo ------------------------------------------------------------------------------------------------


def test_the_demo_staff_user_enters_the_admin_with_a_code_the_demo_prints(time_machine):
    out = io.StringIO()
    call_command("seed_demo", "--households", "1", "--days", "1", stdout=out)
    printed = out.getvalue()
    codes = re.search(r"recovery codes ((?:[a-z2-7]{8} ?){10})", printed).group(1).split()
    key = re.search(r"add the key ([A-Z2-7 ]+) \(TOTP", printed).group(1).replace(" ", "")
    staff = User.objects.get(email="staff@example.com")
    app = TOTPDevice.objects.get(user=staff, confirmed=True)
    assert f"secret={key}" in app.config_url  # the key printed is the enrolled app's

    browser = Client()
    browser.post(reverse("admin:login"), {"username": "staff@example.com", "password": "demo", "next": ADMIN})
    assert browser.post(reverse("admin:otp-verify"), {"code": codes[0]}).status_code == 302
    assert enters_the_admin(browser)

    time_machine.shift(timedelta(hours=1))
    again = io.StringIO()
    call_command("seed_demo", "--households", "1", "--days", "1", stdout=again)  # a rerun: same app, new codes
    assert TOTPDevice.objects.get(user=staff, confirmed=True) == app
    new_codes = re.search(r"recovery codes ((?:[a-z2-7]{8} ?){10})", again.getvalue()).group(1).split()
    assert sorted(StaticToken.objects.filter(device__user=staff).values_list("token", flat=True)) == sorted(new_codes)


def test_the_admin_lists_devices_but_never_shows_a_secret_or_a_recovery_code(staff_client, staff_user):
    app = TOTPDevice.objects.get(user=staff_user)  # the one the browser's session passed with
    codes = new_recovery_codes(staff_user)
    recovery = StaticDevice.objects.get(user=staff_user)

    pages = [
        staff_client.get(reverse("admin:otp_totp_totpdevice_change", args=[app.pk])),
        staff_client.get(reverse("admin:otp_static_staticdevice_change", args=[recovery.pk])),
        staff_client.get(reverse("admin:otp_totp_totpdevice_changelist")),
    ]

    assert [page.status_code for page in pages] == [200, 200, 200]
    html = "".join(page.content.decode() for page in pages)
    assert app.key not in html and shown_secret_of(app) not in html
    assert not any(code in html for code in codes)
    assert staff_client.get(reverse("admin:otp_totp_totpdevice_config", args=[app.pk])).status_code == 403


def shown_secret_of(device: TOTPDevice) -> str:
    from energypay.accounts.otp import secret_text

    return secret_text(device).replace(" ", "")
