"""Log in, log out, reset a password; and who gets in where."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.urls import reverse

from energypay.accounts.models import User

pytestmark = pytest.mark.django_db


def test_login_page_renders_a_form_with_csrf(client):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert b'name="csrfmiddlewaretoken"' in response.content
    assert b'name="username"' in response.content and b'name="password"' in response.content


def test_household_logs_in_with_email_and_lands_on_the_dashboard(client, household):
    household.user.set_password("correct horse battery")
    household.user.save()
    response = client.post(reverse("login"), {"username": "HOME@example.com", "password": "correct horse battery"})
    assert response.status_code == 302
    assert response["Location"] == reverse("dashboard")


def test_wrong_password_shows_an_error_and_logs_nobody_in(client, household):
    response = client.post(reverse("login"), {"username": household.user.email, "password": "wrong"})
    assert response.status_code == 200
    assert b"do not match an account" in response.content
    assert "_auth_user_id" not in client.session


def test_login_returns_to_the_page_asked_for(client, household):
    household.user.set_password("correct horse battery")
    household.user.save()
    asked = reverse("dashboard") + "?range=week"
    response = client.post(
        reverse("login"), {"username": household.user.email, "password": "correct horse battery", "next": asked}
    )
    assert response["Location"] == asked


def test_login_refuses_to_send_people_to_another_site(client, household):
    household.user.set_password("correct horse battery")
    household.user.save()
    response = client.post(
        reverse("login"),
        {"username": household.user.email, "password": "correct horse battery", "next": "https://evil.example/"},
    )
    assert response["Location"] == reverse("dashboard")


def test_logout_needs_post_and_ends_the_session(household_client):
    assert household_client.get(reverse("logout")).status_code == 405
    response = household_client.post(reverse("logout"))
    assert response.status_code == 302
    assert response["Location"] == reverse("login")
    assert household_client.get(reverse("dashboard")).status_code == 302


def test_anonymous_visitor_is_sent_to_login_with_next(client):
    response = client.get(reverse("dashboard") + "?range=month")
    assert response.status_code == 302
    assert response["Location"] == reverse("login") + "?next=/%3Frange%3Dmonth"


def test_staff_without_a_household_is_sent_to_the_admin(staff_client):
    response = staff_client.get(reverse("dashboard"))
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:index")


def test_a_login_without_a_household_gets_a_clear_403(client, db):
    user = User.objects.create_user("lodger@example.com", "pw-unused-123")
    client.force_login(user)
    response = client.get(reverse("dashboard"))
    assert response.status_code == 403
    assert b"has no household" in response.content


def test_password_reset_mails_a_link_that_sets_a_new_password(client, household):
    response = client.post(reverse("password_reset"), {"email": household.user.email})
    assert response.status_code == 302
    assert response["Location"] == reverse("password_reset_done")
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == [household.user.email]
    assert message.subject == "Reset your EnergyPay password"
    link = re.search(r"http://testserver(/password-reset/\S+/)", message.body).group(1)

    form = client.get(link, follow=True)  # Django swaps the token for a session marker, then shows the form
    assert b"Choose a new password" in form.content and b"new_password1" in form.content
    done = client.post(
        form.redirect_chain[-1][0], {"new_password1": "a-new-long-pass-42", "new_password2": "a-new-long-pass-42"}
    )
    assert done["Location"] == reverse("password_reset_complete")
    household.user.refresh_from_db()
    assert household.user.check_password("a-new-long-pass-42")


def test_password_reset_for_an_unknown_address_sends_nothing_and_says_the_same(client, db):
    response = client.post(reverse("password_reset"), {"email": "nobody@example.com"}, follow=True)
    assert b"Check your email" in response.content
    assert mail.outbox == []


def test_a_used_reset_link_is_refused(client, household):
    client.post(reverse("password_reset"), {"email": household.user.email})
    link = re.search(r"http://testserver(/password-reset/\S+/)", mail.outbox[0].body).group(1)
    form = client.get(link, follow=True)
    client.post(
        form.redirect_chain[-1][0], {"new_password1": "a-new-long-pass-42", "new_password2": "a-new-long-pass-42"}
    )
    again = client.get(link, follow=True)
    assert b"expired or was used already" in again.content
