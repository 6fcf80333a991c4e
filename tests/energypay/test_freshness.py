"""Freshness on the dashboard (issue 13, item 5): when the last reading arrived, in the household's time,
and a clear notice, with what it means for the bill, when a meter is silent for WEBHOOK_METER_SILENT_HOURS
(the meter.silent webhook's setting and definition)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.test import Client
from django.urls import reverse

from energypay.webhooks.detectors import detect_silent_meters
from meters.models import Meter
from tests.meters.ingestkit import accepted

NOW = datetime(2026, 11, 22, 11, 0, tzinfo=UTC)  # Sunday 12:00 in Madrid (UTC+1)
URL = reverse("dashboard")

pytestmark = pytest.mark.time_machine(NOW, tick=False)


def page(client) -> str:
    response = client.get(URL)
    assert response.status_code == 200
    return response.content.decode()


def freshness_line(html: str) -> str:
    """The line with its spaces, no-break ones included, made plain."""
    return " ".join(re.search(r'<p id="freshness" class="muted">(.*?)</p>', html, re.S).group(1).split())


@pytest.fixture
def meter(household_client, make_meter, household):
    meter, token = make_meter(household)
    meter.token = token
    return meter


def test_the_last_reading_is_shown_in_the_households_time_with_how_long_ago(household_client, meter):
    stamp = NOW - timedelta(minutes=12)
    answer = accepted(Client(), meter.token, [{"timestamp": stamp.isoformat(), "energy_kwh": "100"}])
    assert answer["accepted"] == 1
    html = page(household_client)
    assert freshness_line(html) == "Last reading at 11:48 (12 minutes ago)"  # 10:48 UTC is 11:48 in Madrid
    assert 'id="silent-meter"' not in html


def test_a_reading_of_another_day_names_the_day(household_client, meter, household):
    Meter.objects.filter(pk=meter.pk).update(
        last_reading_at=datetime(2026, 11, 21, 9, 5, tzinfo=UTC), last_seen_at=NOW - timedelta(hours=1)
    )
    assert freshness_line(page(household_client)) == "Last reading on 21 Nov at 10:05 (1 day ago)"


def test_in_spanish(household_client, meter, household):
    household.language = "es"
    household.save()
    Meter.objects.filter(pk=meter.pk).update(last_reading_at=NOW - timedelta(minutes=3), last_seen_at=NOW)
    assert freshness_line(page(household_client)) == "Última lectura a las 11:57 (hace 3 minutos)"


def test_a_meter_never_heard_from_says_so(household_client, meter):
    assert freshness_line(page(household_client)) == "No reading received yet."


def test_no_meter_no_line(household_client):
    assert 'id="freshness"' not in page(household_client)


def test_a_silent_meter_shows_a_notice_saying_what_it_means_for_the_bill_when_the_webhook_fires(
    household_client, meter, settings
):
    settings.WEBHOOK_METER_SILENT_HOURS = 6
    heard = NOW - timedelta(hours=6, minutes=1)
    Meter.objects.filter(pk=meter.pk).update(last_reading_at=heard, last_seen_at=heard)
    html = page(household_client)
    notice = html[html.index('id="silent-meter"') :]
    notice = notice[: notice.index("</div>")]
    assert "A meter has sent nothing for more than 6 hours." in notice
    assert f"Meter {meter.serial}: last heard from 22 Nov, 05:59, last reading 22 Nov, 05:59." in notice
    assert "charged no energy until its readings arrive" in notice
    assert "standing charge of your tariff still accrues every hour" in notice
    assert detect_silent_meters(NOW) == 1  # the webhook's meter.silent fires at the same moment


def test_a_meter_heard_from_within_the_setting_is_not_silent(household_client, meter, settings):
    settings.WEBHOOK_METER_SILENT_HOURS = 6
    heard = NOW - timedelta(hours=5, minutes=59)
    Meter.objects.filter(pk=meter.pk).update(last_reading_at=heard, last_seen_at=heard)
    assert 'id="silent-meter"' not in page(household_client)
    assert detect_silent_meters(NOW) == 0


def test_another_households_silent_meter_is_not_shown(household_client, other_household, make_meter):
    other, _ = make_meter(other_household)
    Meter.objects.filter(pk=other.pk).update(last_seen_at=NOW - timedelta(days=3))
    html = page(household_client)
    assert 'id="silent-meter"' not in html and other.serial not in html


def test_the_notice_is_translated(household_client, meter, household):
    household.language = "es"
    household.save()
    Meter.objects.filter(pk=meter.pk).update(last_seen_at=NOW - timedelta(days=2))
    html = page(household_client)
    assert "Un contador no ha enviado nada" in html and "término fijo" in html
