"""Sessions are read with their login, household and tariff in one query, and end when they should.

The session engine (energypay/accounts/sessions.py) keeps every session in the database and reads it
joined with its user, the user's household and the household's tariff; the login backend hands that
user to Django's own checks. What a household relies on: a logout ends the session for every copy of
its cookie, a password change or a deactivated login ends the other sessions, an expired or made-up
cookie is nobody, and one household's session never yields another's household.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from energypay.accounts.models import Session
from energypay.accounts.sessions import SessionStore
from meters.access import household_of

PASSWORD = "correct horse battery"
DASHBOARD = reverse("dashboard")

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _passwords(household, other_household, staff_user):
    for user in (household.user, other_household.user, staff_user):
        user.set_password(PASSWORD)
        user.save()


def log_in(household) -> Client:
    """A browser that logged in through the login form, as a person does."""
    browser = Client()
    response = browser.post(reverse("login"), {"username": household.user.email, "password": PASSWORD})
    assert response.status_code == 302, response.content[:300]
    return browser


def copy_of(browser: Client) -> Client:
    """Another browser holding the same session cookie (a second tab, or a stolen cookie)."""
    other = Client()
    other.cookies[settings.SESSION_COOKIE_NAME] = browser.cookies[settings.SESSION_COOKIE_NAME].value
    return other


def is_logged_in(browser: Client) -> bool:
    response = browser.get(DASHBOARD)
    assert response.status_code in (200, 302)
    return response.status_code == 200


# --- One query -------------------------------------------------------------------------------------


def test_a_session_is_read_with_its_user_household_and_tariff_in_one_query(household):
    browser = log_in(household)
    store = SessionStore(browser.cookies[settings.SESSION_COOKIE_NAME].value)
    with CaptureQueriesContext(connection) as captured:
        assert store[SESSION_KEY] == str(household.user.pk)
        user = store.loaded_user
        assert user.household.usage_version == household.usage_version
        assert user.household.tariff.revision == household.tariff.revision
        assert user.household.user is user
    assert len(captured) == 1


def test_the_loaded_user_is_the_same_as_the_orm_reads_it(household):
    store = SessionStore(log_in(household).cookies[settings.SESSION_COOKIE_NAME].value)
    store.load()
    loaded, stored = store.loaded_user, type(household.user).objects.get(pk=household.user.pk)
    for field in type(stored)._meta.concrete_fields:
        assert getattr(loaded, field.attname) == getattr(stored, field.attname), field.name
    for model_field in type(household)._meta.concrete_fields:
        assert getattr(loaded.household, model_field.attname) == getattr(household, model_field.attname)
    assert loaded.household.tariff.revision == household.tariff.revision  # a UUID, text on SQLite


def test_a_household_page_costs_one_query_for_session_user_and_household(household):
    browser = log_in(household)
    browser.get(DASHBOARD, HTTP_HX_REQUEST="true")  # the chart, now in the cache
    with CaptureQueriesContext(connection) as captured:
        request = browser.get(DASHBOARD, HTTP_HX_REQUEST="true").wsgi_request
    assert len(captured) == 1, [query["sql"] for query in captured.captured_queries]
    with CaptureQueriesContext(connection) as captured:
        assert household_of(request).pk == household.pk
    assert len(captured) == 0


def test_each_session_yields_its_own_household(household, other_household):
    mine, theirs = log_in(household), log_in(other_household)
    assert household.name.encode() in mine.get(DASHBOARD).content
    page = theirs.get(DASHBOARD).content
    assert other_household.name.encode() in page and household.name.encode() not in page


def test_staff_sessions_load_no_household_and_ask_for_none(staff_user):
    browser = Client()
    browser.post(reverse("login"), {"username": staff_user.email, "password": PASSWORD})
    store = SessionStore(browser.cookies[settings.SESSION_COOKIE_NAME].value)
    store.load()
    with CaptureQueriesContext(connection) as captured:
        assert not hasattr(store.loaded_user, "household")  # known to have none: no query
    assert len(captured) == 0
    assert browser.get(DASHBOARD)["Location"] == reverse("admin:index")


def test_a_session_keeps_its_login_in_a_column(household):
    browser = log_in(household)
    session = Session.objects.get(session_key=browser.cookies[settings.SESSION_COOKIE_NAME].value)
    assert session.user_id == household.user.pk
    assert session.get_decoded()[SESSION_KEY] == str(household.user.pk)


# --- Sessions end when they should --------------------------------------------------------------------


def test_logout_ends_the_session_for_every_copy_of_its_cookie(household):
    browser = log_in(household)
    tab = copy_of(browser)
    assert is_logged_in(tab)
    browser.post(reverse("logout"))
    assert not is_logged_in(tab)
    assert not Session.objects.filter(user=household.user).exists()


def test_a_password_change_ends_the_logins_other_sessions(household):
    first = log_in(household)
    second = log_in(household)
    assert is_logged_in(first) and is_logged_in(second)
    household.user.set_password("another long passphrase")  # as the admin's password form or a reset does
    household.user.save()
    assert not is_logged_in(first)
    assert not is_logged_in(second)


def test_a_deactivated_login_is_logged_out(household):
    browser = log_in(household)
    type(household.user).objects.filter(pk=household.user.pk).update(is_active=False)
    assert not is_logged_in(browser)


def test_an_expired_session_is_nobody(household):
    browser = log_in(household)
    with time_machine.travel(timezone.now() + timedelta(seconds=settings.SESSION_COOKIE_AGE + 1)):
        assert not is_logged_in(browser)


def test_a_made_up_session_cookie_is_nobody_and_changes_nothing(household):
    log_in(household)
    stranger = Client()
    stranger.cookies[settings.SESSION_COOKIE_NAME] = "x" * 32
    assert not is_logged_in(stranger)
    assert Session.objects.count() == 1


def test_a_session_that_claims_another_user_than_its_column_gets_nobody_elses_household(household, other_household):
    """The backend takes the joined user only when it is the session's own; otherwise Django's way."""
    browser = log_in(household)
    Session.objects.filter(user=household.user).update(user=other_household.user)  # a row tampered with
    page = browser.get(DASHBOARD).content
    assert household.name.encode() in page and other_household.name.encode() not in page


# --- PostgreSQL: a prepared statement, planned once per connection -------------------------------------


@pytest.mark.skipif("connection.vendor != 'postgresql'")
@pytest.mark.django_db(transaction=True)  # outside a transaction, as a request runs: the prepared path
def test_on_postgresql_the_session_query_is_prepared_once_per_connection_and_survives_a_discard(household):
    browser = log_in(household)
    connection.close()  # a new connection: nothing prepared on it yet
    with CaptureQueriesContext(connection) as first:
        assert is_logged_in(browser)
    with CaptureQueriesContext(connection) as second:
        assert is_logged_in(browser)
    statements = [query["sql"].split()[0] for query in first.captured_queries if "energypay_session" in query["sql"]]
    assert statements == ["PREPARE", "EXECUTE"]
    statements = [query["sql"].split()[0] for query in second.captured_queries if "energypay_session" in query["sql"]]
    assert statements == ["EXECUTE"]
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")  # as a pooler's DISCARD ALL between two clients would
    assert is_logged_in(browser)
    browser.post(reverse("logout"))
    assert not is_logged_in(browser)
