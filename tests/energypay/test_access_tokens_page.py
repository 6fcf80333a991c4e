"""The "API tokens" page: a household makes a token (shown once), sees its last use, revokes it; never another's."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from django.urls import reverse

from energypay.accounts import tokens
from energypay.accounts.models import PersonalAccessToken

NOW = datetime(2026, 11, 22, 14, 7, tzinfo=UTC)
pytestmark = pytest.mark.time_machine(NOW, tick=False)


def test_a_new_token_is_shown_once_and_then_only_its_hint(household_client, household):
    response = household_client.post(reverse("access-tokens"), {"name": "Home Assistant"})
    assert response.status_code == 200
    token = re.search(r'id="new-token-value">(pat_[A-Za-z0-9_-]{43})<', response.content.decode()).group(1)
    assert response["Cache-Control"].startswith("no-store") or "no-store" in response["Cache-Control"]
    row = PersonalAccessToken.objects.get(user=household.user)
    assert (row.name, row.token_hash, row.scope) == ("Home Assistant", tokens.hash_token(token), "read")
    again = household_client.get(reverse("access-tokens")).content.decode()
    assert token not in again and f"pat_…{token[-4:]}" in again and "never" in again
    assert household_client.get("/api/v1/me/balance", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert "22 Nov 2026, 15:07" in household_client.get(reverse("access-tokens")).content.decode()  # last used, Madrid


def test_a_name_is_required_and_nothing_is_made_without_one(household_client):
    response = household_client.post(reverse("access-tokens"), {"name": "  "})
    assert response.status_code == 400
    assert not PersonalAccessToken.objects.exists()


def test_at_most_ten_live_tokens(household_client, household):
    for n in range(tokens.MAX_ACTIVE):
        tokens.issue(household.user, f"t{n}", NOW)
    response = household_client.post(reverse("access-tokens"), {"name": "one more"})
    assert response.status_code == 400 and "revoke one first" in response.content.decode()
    assert PersonalAccessToken.objects.count() == tokens.MAX_ACTIVE


def test_revoking_stops_the_token_and_another_household_cannot_revoke_it(client, household, other_household):
    row, token = tokens.issue(household.user, "phone", NOW)
    client.force_login(other_household.user)
    assert client.post(reverse("access-token-revoke", args=[row.pk])).status_code == 404
    row.refresh_from_db()
    assert row.revoked_at is None
    client.force_login(household.user)
    assert client.post(reverse("access-token-revoke", args=[row.pk])).status_code == 302
    row.refresh_from_db()
    assert row.revoked_at == NOW
    assert client.get("/api/v1/me/balance", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    page = client.get(reverse("access-tokens")).content.decode()
    assert "revoked" in page


def test_the_page_lists_only_the_households_own_tokens(client, household, other_household):
    tokens.issue(other_household.user, "Neighbour's secret sensor", NOW)
    client.force_login(household.user)
    assert "Neighbour" not in client.get(reverse("access-tokens")).content.decode()


def test_the_navigation_links_to_the_page(household_client):
    assert f'href="{reverse("access-tokens")}"' in household_client.get(reverse("wallet")).content.decode()


def test_the_api_docs_page_serves_the_vendored_redoc_and_the_document(client, db):
    page = client.get("/api/docs/")
    assert page.status_code == 200 and b"vendor/redoc-2.5.2/redoc.standalone.js" in page.content
    assert b"cdn" not in page.content.lower()
    document = client.get(reverse("api-openapi"))
    assert document.status_code == 200 and document.content.startswith(b"openapi: 3.1")
