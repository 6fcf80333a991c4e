"""An htmx request whose session has expired loads the login page as a whole page, never inside a panel."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client
from django.urls import reverse

HTMX = {"HTTP_HX_REQUEST": "true", "HTTP_HX_TARGET": "chart"}


def next_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["next"][0]


@pytest.mark.django_db
def test_an_expired_session_sends_htmx_to_the_login_page_and_back_to_the_page_shown(household):
    response = Client().get(
        reverse("dashboard") + "?range=week",
        HTTP_HX_CURRENT_URL="http://testserver/?range=week&unit=kwh",
        **HTMX,
    )
    assert response.status_code == 200  # htmx acts on HX-Redirect only in a successful answer
    assert response.content == b""  # nothing for htmx to swap into the panel
    assert urlsplit(response["HX-Redirect"]).path == reverse("login")
    assert next_of(response["HX-Redirect"]) == "/?range=week&unit=kwh"


@pytest.mark.django_db
def test_a_panel_request_from_another_page_goes_back_to_that_page_not_to_the_panel(household):
    response = Client().get(
        reverse("alarm-create"), HTTP_HX_CURRENT_URL="http://testserver/alarms/", HTTP_HX_REQUEST="true"
    )
    assert next_of(response["HX-Redirect"]) == "/alarms/"


@pytest.mark.django_db
def test_a_current_url_on_another_site_is_not_followed(household):
    response = Client().get(reverse("dashboard"), HTTP_HX_CURRENT_URL="https://evil.example/x", **HTMX)
    assert next_of(response["HX-Redirect"]) == "/"


@pytest.mark.django_db
def test_an_htmx_post_after_the_session_expired_changes_nothing_and_goes_to_the_login(household):
    from alarms.models import AlarmRule

    client = Client(enforce_csrf_checks=False)
    response = client.post(
        reverse("alarm-create"),
        {"kind": "daily_cost", "threshold": "5"},
        HTTP_HX_CURRENT_URL="http://testserver/alarms/",
        HTTP_HX_REQUEST="true",
    )
    assert "HX-Redirect" in response and not AlarmRule.objects.exists()


@pytest.mark.django_db
def test_a_login_without_a_household_is_sent_to_the_login_page_which_says_it_cannot_see_it(staff_client):
    response = staff_client.get(reverse("dashboard"), HTTP_HX_CURRENT_URL="http://testserver/", **HTMX)
    assert urlsplit(response["HX-Redirect"]).path == reverse("login")


@pytest.mark.django_db
def test_without_htmx_an_expired_session_is_a_plain_redirect(household):
    response = Client().get(reverse("dashboard"))
    assert response.status_code == 302 and "HX-Redirect" not in response
