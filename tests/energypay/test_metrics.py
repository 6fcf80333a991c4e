"""/metrics: staff with the second factor or the bearer token only; request counts per view, readings, backlogs."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.logins import login_with_second_factor


def samples(response) -> dict[tuple[str, tuple], float]:
    assert response.status_code == 200, response.content[:300]
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def test_anonymous_households_and_wrong_tokens_are_refused(client, household, settings):
    settings.METRICS_TOKEN = "m" * 40
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    client.force_login(household.user)
    assert client.get("/metrics").status_code == 401
    assert client.post("/metrics").status_code == 405


def test_no_token_set_means_staff_only(client, db, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 401


def test_staff_with_the_second_factor_read_it(client, staff_user):
    login_with_second_factor(client, staff_user)
    assert "energypay_webhook_backlog" in {name for name, _ in samples(client.get("/metrics"))}


@pytest.mark.time_machine(datetime(2026, 11, 22, 14, 7, tzinfo=UTC), tick=False)
def test_requests_per_view_and_readings_ingested_are_counted(
    client, meter_and_token, settings, django_capture_on_commit_callbacks
):
    settings.METRICS_TOKEN = "m" * 40
    auth = {"Authorization": "Bearer " + "m" * 40}
    _, token = meter_and_token
    before = samples(client.get("/metrics", headers=auth))
    body = {"readings": [{"timestamp": "2026-11-22T14:00:00Z", "energy_kwh": 1}, {"timestamp": "bad", "energy_kwh": 1}]}
    with django_capture_on_commit_callbacks() as committed:
        client.post(
            "/api/v1/readings",
            json.dumps(body),
            content_type="application/json",
            headers={"Authorization": f"Bearer {token}"},
        )
    # Nothing counts until the readings are committed: a rolled-back request is resent and counted then.
    uncommitted = samples(client.get("/metrics", headers=auth))
    key = ("energypay_readings_ingested_total", (("outcome", "accepted"),))
    assert uncommitted.get(key, 0) == before.get(key, 0)
    for callback in committed:
        callback()
    client.get("/api/v1/no-such-thing")
    after = samples(client.get("/metrics", headers=auth))

    def grew(name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0) - before.get(key, 0)

    assert grew("energypay_readings_ingested_total", outcome="accepted") == 1
    assert grew("energypay_readings_ingested_total", outcome="rejected") == 1
    assert grew("energypay_http_requests_total", view="api-readings", method="POST", status="200") == 1
    assert grew("energypay_http_requests_total", view="unmatched", method="GET", status="404") == 1
    assert grew("energypay_http_request_duration_seconds_count", view="api-readings") == 1
    assert after[("energypay_settlements_pending", (("state", "signed"),))] == 0
    assert after[("energypay_scrape_section_ok", (("section", "settlements"),))] == 1
