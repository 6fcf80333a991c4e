from __future__ import annotations

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from payments import checks


def test_a_server_without_native_signing_fails_its_checks(monkeypatch):
    monkeypatch.setattr(checks, "native_signing_available", lambda: False)
    with pytest.raises(SystemCheckError, match=r"payments\.E001"):
        call_command("check")


def test_the_default_configuration_passes_its_checks():
    call_command("check")


def test_settlement_refuses_to_sign_without_native_signing(monkeypatch):
    from django.utils import timezone

    from payments import settlement

    monkeypatch.setattr(settlement, "native_signing_available", lambda: False)
    result = settlement.settle_household(1, timezone.now(), timezone.now())
    assert (result.status, result.settlement_id) == ("deferred", None)
