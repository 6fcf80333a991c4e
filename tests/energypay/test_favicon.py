"""The site's icon: browsers ask for /favicon.ico by themselves, and a 404 for it filled the demo's console."""

from __future__ import annotations

from django.contrib.staticfiles import finders


def test_favicon_ico_leads_to_the_sites_icon(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 302
    assert response["Location"] == "/static/favicon.svg"
    assert finders.find("favicon.svg")


def test_pages_name_their_icon(client):
    page = client.get("/login/").content.decode()
    assert '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">' in page
