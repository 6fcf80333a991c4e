from __future__ import annotations

import itertools
import os
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from energypay.accounts.models import User
from meters.models import Household, Meter, Tariff, TariffVersion

_serials = itertools.count(1)
INSTALLED_AT = datetime(2020, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True, scope="session")
def _tasks_stay_in_the_test_process():
    # Code under test enqueues Celery tasks (alarm evaluation after ingest and settlement). With the
    # configured broker they would wait in var/ or Redis for a real worker of another database.
    from energypay.celery import app

    # Celery prefers the CELERY_BROKER_URL environment variable (CI sets one) over its configuration.
    os.environ.pop("CELERY_BROKER_URL", None)
    app.conf.broker_url = "memory://"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # PBKDF2 at full strength costs ~0.3 s per user; tests do not need it.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _own_cache_namespace(settings):
    # Each test gets a fresh namespace in the cache: parallel workers share CI's Redis, so
    # clearing it (FLUSHDB) would wipe another test's rate-limit counters mid-test.
    settings.CACHES = {
        name: {**config, "KEY_PREFIX": f"test-{uuid.uuid4().hex}"} for name, config in settings.CACHES.items()
    }


@pytest.fixture
def flat_tariff(db) -> Tariff:
    tariff = Tariff.objects.create(name="Flat 0.25")
    TariffVersion.objects.create(
        tariff=tariff,
        valid_from=datetime(2020, 1, 1, tzinfo=UTC),
        kind=TariffVersion.Kind.FLAT,
        flat_rate=Decimal("0.250000"),
    )
    return tariff


@pytest.fixture
def make_household(db, flat_tariff):
    def make(email: str | None = None, *, tariff: Tariff | None = None, timezone: str = "Europe/Madrid") -> Household:
        number = next(_serials)
        user = User.objects.create_user(email or f"household{number}@example.com", "pw-unused-123")
        return Household.objects.create(
            user=user, name=f"Household {number}", timezone=timezone, tariff=tariff or flat_tariff
        )

    return make


@pytest.fixture
def make_meter(make_household):
    def make(household: Household | None = None, *, max_power_kw: str = "30") -> tuple[Meter, str]:
        meter = Meter.objects.create(
            serial=f"SN-{next(_serials):06d}",
            household=household or make_household(),
            max_power_kw=Decimal(max_power_kw),
            # Long before any test's frozen clock: only the backfill window limits what it may bill.
            installed_at=INSTALLED_AT,
        )
        return meter, meter.issue_token()

    return make


@pytest.fixture
def household(make_household) -> Household:
    return make_household("home@example.com")


@pytest.fixture
def meter_and_token(make_meter, household) -> tuple[Meter, str]:
    return make_meter(household)


@pytest.fixture
def other_household(make_household) -> Household:
    return make_household("neighbour@example.com")


@pytest.fixture
def staff_user(db) -> User:
    return User.objects.create_user("staff@example.com", "pw-unused-123", is_staff=True, is_superuser=True)


@pytest.fixture
def household_client(client, household):
    """A browser logged in as ``household``."""
    client.force_login(household.user)
    return client


@pytest.fixture
def other_client(other_household):
    """A browser logged in as another household, to prove it sees none of ``household``'s data."""
    from django.test import Client

    browser = Client()
    browser.force_login(other_household.user)
    return browser


@pytest.fixture
def staff_client(staff_user):
    """A browser logged in as utility staff (no household of its own), past the admin's second factor."""
    from django.test import Client

    from tests.logins import login_with_second_factor

    return login_with_second_factor(Client(), staff_user)
