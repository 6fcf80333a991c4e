"""schemathesis fuzzes /api/v1/me/... from docs/openapi.yaml, as the running site serves it (/api/docs/openapi.yaml),
through the WSGI application: every generated request (valid or not) gets a documented status, content
type, headers and body, and never a 500."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from energypay.accounts import tokens
from meters.models import HourlyUsage, Meter
from tests.energypay.test_read_api import settlement

schema = schemathesis.openapi.from_wsgi("/api/docs/openapi.yaml", get_wsgi_application()).include(
    path_regex="^/api/v1/me/"
)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def wsgi_keeps_the_test_connection():
    """As Django's test client does: the WSGI handler's signals would close the connection the test's
    transaction holds."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def pat(wsgi_keeps_the_test_connection, make_household, settings):
    settings.API_TOKEN_RATE_LIMIT_PER_MINUTE = 100_000
    household = make_household(timezone="America/Santiago")  # DST in the southern summer
    meter = Meter.objects.create(serial="FUZZ-1", household=household)
    start = datetime(2026, 11, 20, tzinfo=UTC)
    for hour in range(48):
        HourlyUsage.objects.create(
            household=household,
            meter=meter,
            hour_start=start + timedelta(hours=hour),
            kwh=Decimal("0.5"),
            rate=Decimal("0.2"),
            cost_eur=Decimal("0.1"),
            tax_eur=Decimal("0.021"),
        )
    for n in range(3):
        settlement(household, n)
    return tokens.issue(household.user, "fuzz", datetime.now(UTC))[1]


@pytest.mark.django_db
@schema.parametrize()
@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_household_api_answers_every_request_as_documented(case, pat):
    case.call_and_validate(headers={"Authorization": f"Bearer {pat}"}, checks=CHECKS)
