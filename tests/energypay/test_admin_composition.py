"""The admin by area: each app registers only its own models; pages that show several apps are composed
on the top floor (energypay/admin.py), so nothing unregisters another app's admin."""

from __future__ import annotations

import ast
from pathlib import Path

from django.conf import settings
from django.contrib import admin
from django.urls import reverse

from meters.models import Household

ROOT = Path(settings.BASE_DIR)
APPS = ["meters", "payments", "alarms", "energypay"]


def admin_modules() -> list[Path]:
    return sorted(
        path
        for app in APPS
        for path in (ROOT / app).rglob("*.py")
        if "admin" in path.parts[-1] or "admin" in path.parts
    )


def test_the_household_admin_is_registered_by_the_top_floor_with_the_columns_of_meters_and_payments():
    household_admin = admin.site._registry[Household]

    assert type(household_admin).__module__ == "energypay.admin"
    assert household_admin.list_display[:2] == ["name", "user"]  # meters' columns first
    assert {"wallet_address", "arrears"} <= set(household_admin.list_display)
    assert "wallet_link" in household_admin.readonly_fields


def test_no_admin_module_unregisters_another_apps_model():
    calls = []
    for path in admin_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr == "unregister":
                calls.append(f"{path.relative_to(ROOT)}:{node.lineno}")

    assert admin_modules(), "found no admin module to read"
    assert calls == []


def test_the_operate_permission_is_defined_once():
    definitions = [
        f"{path.relative_to(ROOT)}"
        for path in admin_modules()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef) and node.name == "has_operate_permission"
    ]

    assert definitions == ["meters/adminkit.py"]


def test_a_new_household_page_in_the_admin_offers_the_wallet_column(staff_client):
    page = staff_client.get(reverse("admin:meters_household_add"))

    assert page.status_code == 200
    assert "opened when the household is saved" in page.content.decode()
