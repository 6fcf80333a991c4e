"""Login throttling (django-axes): wrong passwords lock the account and the address, for a while or until a reset.

Issue 11: before, 100 wrong passwords in a row for a household (20 for the admin) left the right one working.
Defaults: LOGIN_FAILURE_LIMIT=5 failures lock for LOGIN_COOLOFF_MINUTES=15 after the last one.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from axes.models import AccessAttempt, AccessLog
from django.conf import settings
from django.core import mail
from django.test import Client, RequestFactory
from django.urls import reverse

from energypay.accounts.lockout import account_key, client_ip
from energypay.accounts.models import Session, User
from energypay.accounts.tasks import prune_login_records
from tests.energypay.test_deploy_settings import manage

PASSWORD = "correct horse battery"
NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
HOME = "198.51.100.7"  # documentation addresses (RFC 5737): only ever a REMOTE_ADDR string here
CAFE = "203.0.113.20"

pytestmark = [pytest.mark.django_db, pytest.mark.time_machine(NOW, tick=False)]


@pytest.fixture
def member(household) -> User:
    household.user.set_password(PASSWORD)
    household.user.save()
    return household.user


@pytest.fixture
def staff(staff_user) -> User:
    staff_user.set_password(PASSWORD)
    staff_user.save()
    return staff_user


def log_in(email: str, password: str, *, ip: str = HOME, url: str | None = None) -> tuple[Client, object]:
    browser = Client()
    response = browser.post(url or reverse("login"), {"username": email, "password": password}, REMOTE_ADDR=ip)
    return browser, response


def fail(email: str, times: int, *, ip: str = HOME, url: str | None = None) -> None:
    for _ in range(times):
        log_in(email, "not-the-password", ip=ip, url=url)


def logged_in(browser: Client) -> bool:
    return "_auth_user_id" in browser.session


# --- the household login ---------------------------------------------------------------------------------


def test_the_limit_in_wrong_passwords_locks_the_account_and_the_right_one_is_refused_with_the_reason(member):
    fail(member.email, settings.AXES_FAILURE_LIMIT)

    browser, response = log_in(member.email, PASSWORD)

    assert response.status_code == 429
    assert not logged_in(browser)
    page = response.content.decode()
    assert "Too many failed logins" in page and "Try again in 15 minutes" in page
    assert "Resetting your password by email unlocks your account" in page
    assert reverse("password_reset") in page
    assert 'name="username"' in page  # the login page itself, not a bare error page


def test_fewer_wrong_passwords_than_the_limit_still_let_the_owner_in(member):
    fail(member.email, settings.AXES_FAILURE_LIMIT - 1)

    browser, response = log_in(member.email, PASSWORD)

    assert response.status_code == 302 and logged_in(browser)


def test_the_lock_ends_when_the_cooloff_after_the_last_failure_has_passed(member, time_machine):
    fail(member.email, settings.AXES_FAILURE_LIMIT)

    time_machine.shift(timedelta(minutes=14))
    still, refused = log_in(member.email, PASSWORD)
    assert refused.status_code == 429 and "Try again in 1 minute." in refused.content.decode()
    assert not logged_in(still)

    time_machine.shift(timedelta(minutes=1, seconds=1))
    browser, response = log_in(member.email, PASSWORD)
    assert response.status_code == 302 and logged_in(browser)


def test_tries_while_locked_do_not_push_the_end_of_the_lock_back(member, time_machine):
    fail(member.email, settings.AXES_FAILURE_LIMIT)
    for _ in range(10):
        time_machine.shift(timedelta(minutes=1))
        log_in(member.email, "still-guessing")

    time_machine.shift(timedelta(minutes=5, seconds=1))
    browser, response = log_in(member.email, PASSWORD)

    assert response.status_code == 302 and logged_in(browser)


def test_the_email_counts_as_one_account_whatever_its_case(member):
    spellings = ["Home@Example.com", "HOME@EXAMPLE.COM", " home@example.com", "home@Example.COM", "hOmE@example.com"]
    for number, spelling in enumerate(spellings):
        log_in(spelling, "wrong", ip=f"192.0.2.{number + 1}")  # from five addresses: the account is what locks

    browser, response = log_in("home@example.com", PASSWORD, ip=CAFE)

    assert response.status_code == 429 and not logged_in(browser)
    assert set(AccessAttempt.objects.values_list("username", flat=True)) == {"home@example.com"}
    assert account_key(" Anna@Example.COM ") == "anna@example.com"


def test_one_address_failing_on_many_accounts_is_locked_for_every_account(member, make_household):
    for number in range(settings.AXES_FAILURE_LIMIT):
        log_in(f"someone{number}@example.com", "guess", ip=CAFE)

    from_cafe, refused = log_in(member.email, PASSWORD, ip=CAFE)
    from_home, allowed = log_in(member.email, PASSWORD, ip=HOME)

    assert refused.status_code == 429 and not logged_in(from_cafe)
    assert allowed.status_code == 302 and logged_in(from_home)


def test_a_completed_password_reset_unlocks_the_account(member):
    fail(member.email, settings.AXES_FAILURE_LIMIT)
    assert log_in(member.email, PASSWORD)[1].status_code == 429

    reset = Client()
    reset.post(reverse("password_reset"), {"email": "Home@Example.com"})
    link = re.search(r"http://testserver(/password-reset/\S+/)", mail.outbox[0].body).group(1)
    form = reset.get(link, follow=True)
    done = reset.post(
        form.redirect_chain[-1][0], {"new_password1": "a-new-long-pass-42", "new_password2": "a-new-long-pass-42"}
    )
    assert done["Location"] == reverse("password_reset_complete")

    browser, response = log_in(member.email, "a-new-long-pass-42")
    assert response.status_code == 302 and logged_in(browser)
    assert not AccessAttempt.objects.filter(username=member.email).exists()


def test_asking_for_a_reset_link_alone_unlocks_nothing(member):
    fail(member.email, settings.AXES_FAILURE_LIMIT)

    Client().post(reverse("password_reset"), {"email": member.email})

    assert log_in(member.email, PASSWORD)[1].status_code == 429


def test_a_forwarded_for_header_does_not_escape_the_address_lock_unless_a_proxy_is_trusted(member):
    for number in range(settings.AXES_FAILURE_LIMIT):
        Client().post(
            reverse("login"),
            {"username": f"someone{number}@example.com", "password": "guess"},
            REMOTE_ADDR=CAFE,
            HTTP_X_FORWARDED_FOR=f"192.0.2.{number}",  # a client can send anything here
        )

    browser, response = log_in(member.email, PASSWORD, ip=CAFE)

    assert response.status_code == 429 and not logged_in(browser)


def test_behind_trusted_proxies_the_client_is_the_hop_the_outermost_proxy_added(settings):
    request = RequestFactory().get("/", REMOTE_ADDR="10.1.2.3", HTTP_X_FORWARDED_FOR="6.6.6.6, 198.51.100.7, 10.0.0.9")

    assert client_ip(request) == "10.1.2.3"  # no trusted proxy: the header is ignored
    settings.TRUSTED_PROXY_COUNT = 2
    assert client_ip(request) == "198.51.100.7"  # not 6.6.6.6: the client wrote that one
    settings.TRUSTED_PROXY_COUNT = 1
    assert client_ip(request) == "10.0.0.9"
    settings.TRUSTED_PROXY_COUNT = 4  # fewer hops than proxies: the request did not come through them
    assert client_ip(request) == "10.1.2.3"
    settings.TRUSTED_PROXY_COUNT = 1
    garbage = RequestFactory().get("/", REMOTE_ADDR="10.1.2.3", HTTP_X_FORWARDED_FOR="not-an-address")
    assert client_ip(garbage) == "10.1.2.3"


def test_a_lockout_is_logged_with_the_account_and_address_but_never_the_password(member, caplog):
    fail(member.email, settings.AXES_FAILURE_LIMIT)
    log_in(member.email, PASSWORD)

    lines = [record.getMessage() for record in caplog.records]
    assert any(f"login.locked_out account={member.email} ip={HOME}" in line for line in lines)
    assert not any(PASSWORD in line for line in lines)
    assert not AccessAttempt.objects.filter(post_data__contains="not-the-password").exists()


# --- the admin login ---------------------------------------------------------------------------------------


def test_the_admin_login_locks_likewise_and_says_why_on_the_admin_login_page(staff):
    admin_login = reverse("admin:login")
    fail(staff.email, settings.AXES_FAILURE_LIMIT, url=admin_login)

    browser, response = log_in(staff.email, PASSWORD, url=admin_login)

    assert response.status_code == 429 and not logged_in(browser)
    page = response.content.decode()
    assert "Too many failed logins" in page and "Try again in 15 minutes" in page
    assert 'id="login-form"' in page  # Django's admin login form, with the message above it


def test_failures_on_either_login_page_count_together(staff):
    fail(staff.email, 3, url=reverse("login"))
    fail(staff.email, settings.AXES_FAILURE_LIMIT - 3, url=reverse("admin:login"))

    assert log_in(staff.email, PASSWORD, url=reverse("admin:login"))[1].status_code == 429


def test_staff_see_the_lockouts_in_the_admin(member, staff_client):
    fail(member.email, settings.AXES_FAILURE_LIMIT, ip=CAFE)

    changelist = staff_client.get(reverse("admin:axes_accessattempt_changelist"))

    assert changelist.status_code == 200
    page = changelist.content.decode()
    assert member.email in page and CAFE in page
    attempt = AccessAttempt.objects.get(username=member.email)
    assert attempt.failures_since_start == settings.AXES_FAILURE_LIMIT
    assert staff_client.get(reverse("admin:axes_accessattempt_change", args=[attempt.pk])).status_code == 200
    assert reverse("admin:axes_accessattempt_changelist") in staff_client.get(reverse("admin:index")).content.decode()


# --- settings ----------------------------------------------------------------------------------------------


def test_the_limit_and_the_cooloff_come_from_the_environment():
    code = "from django.conf import settings as s; print(s.AXES_FAILURE_LIMIT, s.AXES_COOLOFF_TIME)"
    result = manage("shell", "--no-imports", "-c", code, LOGIN_FAILURE_LIMIT="3", LOGIN_COOLOFF_MINUTES="60")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3 1:00:00"


def test_code_inside_the_server_still_authenticates_without_a_request(member):
    """A management command or the shell has no request: nothing to throttle, and nothing breaks."""
    from django.contrib.auth import authenticate

    assert authenticate(username=member.email, password=PASSWORD) == member


# --- retention ---------------------------------------------------------------------------------------------


def test_beat_drops_login_records_past_their_retention_and_keeps_the_rest(member, time_machine):
    log_in(member.email, PASSWORD)  # a successful login: one AccessLog row
    fail("someone@example.com", 2)
    time_machine.shift(timedelta(days=settings.LOGIN_LOG_DAYS, seconds=1))
    log_in(member.email, PASSWORD)
    fail("someone@example.com", 1, ip=CAFE)

    prune_login_records()

    kept = NOW + timedelta(days=settings.LOGIN_LOG_DAYS, seconds=1)
    assert list(AccessLog.objects.values_list("attempt_time", flat=True)) == [kept]
    assert list(AccessAttempt.objects.values_list("ip_address", flat=True)) == [CAFE]
    # The first login's session expired long ago (SESSION_COOKIE_AGE); the second's is still live.
    live = kept + timedelta(seconds=settings.SESSION_COOKIE_AGE)
    assert list(Session.objects.values_list("expire_date", flat=True)) == [live]
