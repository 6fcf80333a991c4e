"""Shared by the ingest tests: POST /api/v1/readings as a meter does, for readings the test expects accepted."""

from __future__ import annotations

import json

from django.test import Client

URL = "/api/v1/readings"


def accepted(client: Client, token: str, readings: list[dict]) -> dict:
    """POST ``readings`` with the meter's bearer token; the answer must be 200, and its JSON body is returned."""
    response = client.post(
        URL, json.dumps({"readings": readings}), "application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    assert response.status_code == 200, response.content
    return response.json()
