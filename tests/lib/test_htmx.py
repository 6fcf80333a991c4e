"""One rule picks page or partial for every htmx view."""

from __future__ import annotations

import pytest
from django.test import RequestFactory
from django_htmx.middleware import HtmxDetails

from lib.htmx import partial_requested


def request_with(**headers: str):
    request = RequestFactory().get("/", headers=headers)
    request.htmx = HtmxDetails(request)
    return request


def test_a_plain_request_gets_the_page():
    assert not partial_requested(request_with())
    assert not partial_requested(RequestFactory().get("/"))  # no htmx middleware at all


def test_htmx_gets_the_partial_and_a_targeted_partial_only_for_its_target():
    assert partial_requested(request_with(**{"HX-Request": "true"}))
    assert partial_requested(request_with(**{"HX-Request": "true", "HX-Target": "history"}), "history")
    assert not partial_requested(request_with(**{"HX-Request": "true", "HX-Target": "main"}), "history")


@pytest.mark.parametrize("header", ["HX-Boosted", "HX-History-Restore-Request"])
def test_a_boosted_link_or_a_history_restore_needs_the_whole_page(header):
    assert not partial_requested(request_with(**{"HX-Request": "true", header: "true"}))
