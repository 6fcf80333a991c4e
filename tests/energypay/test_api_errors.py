"""Every /api/ error is ``{"error": {"code", "message"}}``: unknown paths, refused methods and crashes too."""

from __future__ import annotations

import pytest
from django.urls import path

from energypay import urls as project_urls
from tests.energypay.test_openapi import assert_conforms, validator


def _error_shape(response) -> dict:
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert not list(validator("components", "schemas", "Error").iter_errors(body)), body
    return body["error"]


@pytest.mark.parametrize("url", ["/api/", "/api/v1/nothing-here", "/api/v2/readings", "/api/v1/me/../../etc"])
def test_an_unknown_api_path_is_a_json_404(client, db, url):
    response = client.get(url)
    assert response.status_code == 404
    assert _error_shape(response) == {"code": "not_found", "message": "not found"}


def test_an_unknown_api_path_is_a_json_404_with_debug_on_too(client, db, settings):
    settings.DEBUG = True  # Django's technical 404 page would otherwise list every URL pattern
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert _error_shape(response)["code"] == "not_found"


def test_a_page_outside_the_api_keeps_its_html_404(client, db):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert not response["Content-Type"].startswith("application/json")


@pytest.mark.parametrize(("url", "method"), [("/api/v1/readings", "get"), ("/api/v1/community", "post")])
def test_a_refused_method_is_a_json_405_with_allow(client, db, url, method):
    response = getattr(client, method)(url)
    assert response.status_code == 405
    assert _error_shape(response)["code"] == "method_not_allowed"
    assert response["Allow"]


def _crash(request):
    raise RuntimeError("secret detail that must not reach the client")


urlpatterns = [path("api/v1/crash", _crash), *project_urls.urlpatterns]


@pytest.mark.urls(__name__)
@pytest.mark.parametrize("debug", [False, True])
def test_a_crash_under_the_api_is_a_json_500_without_the_traceback(db, settings, debug):
    from django.test import Client

    settings.DEBUG = debug
    response = Client(raise_request_exception=False).get("/api/v1/crash")
    assert response.status_code == 500
    assert _error_shape(response) == {"code": "server_error", "message": "internal server error"}
    assert b"secret detail" not in response.content


def test_a_documented_error_still_conforms(client, db):
    assert_conforms(client.get("/api/v1/community", headers={"X-PAYMENT": "A" * 40000}), "/api/v1/community", "get")
