"""Absolute links from one SITE_URL, and the one mail helper (a template trio per mail)."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core import mail as outbox

from lib import mail
from lib.urls import absolute_reverse, absolute_url

TEMPLATES = Path(__file__).parent / "templates"


@pytest.fixture
def trio_templates(settings):
    settings.TEMPLATES = [{**settings.TEMPLATES[0], "DIRS": [*settings.TEMPLATES[0]["DIRS"], TEMPLATES]}]


@pytest.mark.parametrize("site", ["https://energypay.example", "https://energypay.example/"])
def test_absolute_urls_join_site_url_and_path_with_one_slash(settings, site):
    settings.SITE_URL = site
    assert absolute_url("/alarms/") == "https://energypay.example/alarms/"
    assert absolute_url("alarms/") == "https://energypay.example/alarms/"
    assert absolute_reverse("alarm-list") == "https://energypay.example/alarms/"


def test_without_site_url_there_is_no_absolute_link_rather_than_a_wrong_one(settings):
    settings.SITE_URL = ""
    assert absolute_url("/alarms/") == ""
    assert absolute_reverse("alarm-list") == ""


def test_a_mail_is_its_subject_on_one_line_and_its_text_without_html_when_there_is_none(trio_templates):
    sent = mail.send("lib_test/plain", {"name": "Ana", "link": "https://x.example/"}, to=["ana@example.com"])
    assert sent == 1
    [message] = outbox.outbox
    assert (message.subject, message.to) == ("Hello Ana again", ["ana@example.com"])
    assert message.body == "Text for Ana: https://x.example/\n"
    assert message.alternatives == []


def test_a_mail_with_an_html_template_carries_it_as_the_alternative_rendered_in_the_given_language(trio_templates):
    message = mail.render("lib_test/rich", {"name": "Ana"}, to=["ana@example.com"], language="es")
    [(html, mimetype)] = message.alternatives
    assert mimetype == "text/html"
    assert html == "<p>Ana</p><p>es</p>\n"
    assert message.body == "Text for Ana: \n"
