"""The alarm pages: who may see what, the forms and their messages, htmx partials and plain-POST fallbacks."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.template.loader import render_to_string
from django.urls import reverse

from alarms.models import AlarmEvent, AlarmRule
from alarms.rules import Kind
from alarms.views import summary_context

NOW = datetime(2026, 11, 18, 10, 0, tzinfo=UTC)
HTMX = {"HTTP_HX_REQUEST": "true"}
LIST = reverse("alarm-list")


def htmx(target: str, current: str = LIST) -> dict:
    return {**HTMX, "HTTP_HX_TARGET": target, "HTTP_HX_CURRENT_URL": f"http://testserver{current}"}


pytestmark = pytest.mark.time_machine(NOW, tick=False)


@pytest.fixture
def rule(home) -> AlarmRule:
    return home.rule(Kind.DAILY_COST, "5")


def make_events(home, rule, count: int) -> list[AlarmEvent]:
    return AlarmEvent.objects.bulk_create(
        AlarmEvent(
            household=home.household,
            rule=rule,
            rule_kind=rule.kind,
            kind="fired" if n % 2 == 0 else "cleared",
            value=Decimal("6.25"),
            threshold=rule.threshold,
            at=NOW - timedelta(hours=count - n),
            next_attempt_at=NOW,
        )
        for n in range(count)
    )


# --- Who may do what: every URL, four personas -----------------------------------------------------

RULE_URLS = [
    ("get", "alarm-detail", {}),
    ("get", "alarm-edit", {}),
    ("post", "alarm-edit", {"kind": "hourly_cost", "threshold": "1"}),
    ("post", "alarm-pause", {}),
    ("post", "alarm-resume", {}),
    ("post", "alarm-mute", {"for": "24h"}),
    ("post", "alarm-delete", {}),
]
HOUSEHOLD_URLS = [
    ("get", "alarm-list", {}),
    ("get", "alarm-create", {}),
    ("post", "alarm-create", {"kind": "daily_cost", "threshold": "6"}),
]


def every_url(rule: AlarmRule):
    for method, name, data in HOUSEHOLD_URLS:
        yield method, reverse(name), data
    for method, name, data in RULE_URLS:
        yield method, reverse(name, args=[rule.pk]), data


@pytest.mark.parametrize(("method", "name", "data"), RULE_URLS, ids=lambda v: v if isinstance(v, str) else "")
def test_another_household_gets_404_for_every_rule_url_and_changes_nothing(other_client, rule, method, name, data):
    before = AlarmRule.objects.filter(pk=rule.pk).values().get()
    response = getattr(other_client, method)(reverse(name, args=[rule.pk]), data)
    assert response.status_code == 404
    assert AlarmRule.objects.filter(pk=rule.pk).values().get() == before


def test_anonymous_visitors_are_sent_to_log_in_from_every_url(client, rule):
    for method, url, data in every_url(rule):
        response = getattr(client, method)(url, data)
        assert response.status_code == 302, url
        assert response.url.startswith(reverse("login") + "?next="), url
    assert AlarmRule.objects.filter(pk=rule.pk).exists()


def test_staff_without_a_household_are_sent_to_the_admin_from_every_url(staff_client, rule):
    for method, url, data in every_url(rule):
        response = getattr(staff_client, method)(url, data)
        assert (response.status_code, response.url) == (302, reverse("admin:index")), url


def test_the_household_may_use_every_url(household_client, rule):
    expected = {"get": {200, 302}, "post": {302}}
    for method, url, data in every_url(rule):
        response = getattr(household_client, method)(url, data)
        assert response.status_code in expected[method], (url, response.status_code)


def test_actions_refuse_get(household_client, rule):
    for name in ("alarm-pause", "alarm-resume", "alarm-mute", "alarm-delete"):
        assert household_client.get(reverse(name, args=[rule.pk])).status_code == 405


# --- The list page -------------------------------------------------------------------------------


def test_the_list_shows_rules_with_their_state_and_the_history(household_client, home, rule):
    home.set_hour(datetime(2026, 11, 18, 1, tzinfo=UTC), eur="6.25")
    from alarms.evaluation import evaluate_households

    evaluate_households([home.household.pk])
    response = household_client.get(LIST)
    assert response.status_code == 200
    html = response.content.decode().strip()
    row = re.search(rf'<li class="alarm-rule firing" id="alarm-rule-{rule.pk}".*?</li>', html, re.S).group(0)
    assert "Tell me when a day costs €5.00 or more" in row
    assert "Going off" in row and "now €6.25" in row
    assert "Wed 18 Nov, 11:00" in row  # since, in Madrid time
    assert '<span class="badge alarm-new" id="alarm-unread">1 new</span>' in html


def test_viewing_the_history_marks_the_events_shown_as_read(household_client, home, rule):
    make_events(home, rule, 25)
    first = household_client.get(LIST)
    assert "25 new" in first.content.decode().strip()
    assert AlarmEvent.objects.filter(read_at__isnull=True).count() == 5  # page 1 shows 20
    assert summary_context(home.household)["alarm_unread"] == 5
    second = household_client.get(LIST, {"page": 2}, **htmx("alarm-history"))
    body = second.content.decode().strip()
    assert body.startswith('<section class="panel" id="alarm-history">')
    assert "5 new" in body and "<html" not in body
    assert not AlarmEvent.objects.filter(read_at__isnull=True).exists()


def test_the_list_page_costs_the_same_queries_with_many_rules_and_events(
    household_client, home, rule, django_assert_max_num_queries
):
    for threshold in range(6, 16):
        home.rule(Kind.HOURLY_COST, str(threshold), muted_until=NOW + timedelta(hours=1))
    make_events(home, rule, 40)
    with django_assert_max_num_queries(9):
        response = household_client.get(LIST)
    assert response.content.decode().strip().count('id="alarm-rule-') == 11


@pytest.mark.parametrize("page", ["junk", "-1", "9999", "1e9"])
def test_a_bad_page_number_falls_back_to_a_real_page(household_client, home, rule, page):
    make_events(home, rule, 3)
    assert household_client.get(LIST, {"page": page}).status_code == 200


def test_another_households_rules_and_events_are_not_listed(other_client, home, rule):
    make_events(home, rule, 2)
    html = other_client.get(LIST).content.decode().strip()
    assert "€5.00" not in html
    assert 'id="no-alarm-rules"' in html and 'id="no-alarm-events"' in html


# --- Creating and editing: the form, its unit and its messages ----------------------------------


def test_creating_without_javascript_redirects_to_the_list(household_client, home):
    response = household_client.post(reverse("alarm-create"), {"kind": "hourly_energy", "threshold": "2.5"})
    assert (response.status_code, response.url) == (302, LIST)
    rule = AlarmRule.objects.get(household=home.household)
    assert (rule.kind, rule.threshold, rule.last_evaluated_at) == ("hourly_energy", Decimal("2.5"), NOW)
    assert (
        "Alarm added: Tell me when an hour uses 2.500 kWh or more."
        in household_client.get(LIST).content.decode().strip()
    )


def test_creating_with_htmx_answers_a_fresh_form_and_the_rule_list_out_of_band(household_client, home):
    response = household_client.post(
        reverse("alarm-create"), {"kind": "daily_cost", "threshold": "5"}, **htmx("alarm-form")
    )
    body = response.content.decode().strip()
    assert body.startswith('<form id="alarm-form"')
    assert 'value=""' in body  # the threshold is empty again
    assert '<section class="panel" id="alarm-rules" hx-swap-oob="true">' in body
    assert "Tell me when a day costs €5.00 or more" in body


def test_creating_with_htmx_from_the_full_form_page_redirects_the_browser(household_client, home):
    response = household_client.post(
        reverse("alarm-create"), {"kind": "daily_cost", "threshold": "5"}, **htmx("alarm-form", reverse("alarm-create"))
    )
    assert response["HX-Redirect"] == LIST


@pytest.mark.parametrize(
    ("kind", "threshold", "message"),
    [
        ("daily_cost", "-1", "The threshold cannot be negative."),
        ("daily_cost", "0", "€0.00 would fire all the time: enter more than 0."),
        ("daily_cost", "", "Enter an amount in EUR."),
        ("daily_cost", "abc", "Enter a number."),
        ("daily_cost", "NaN", "Enter a number."),
        ("daily_cost", "100000.01", "That is more than €100,000.00: please check the number."),
        ("daily_cost", "5.001", "Use at most 2 decimal places."),
        ("hourly_energy", "1000.5", "That is more than 1,000 kWh: please check the number."),
        ("hourly_energy", "0.0001", "Use at most 3 decimal places."),
        ("balance_days", "0", "Enter at least 1 day."),
        ("balance_days", "366", "That is more than 365 days: please check the number."),
        ("balance_days", "2.5", "Enter a whole number of days."),
        ("meter_silent", "721", "That is more than 720 hours: please check the number."),
        ("meter_silent", "", "Enter a number of hours."),
        ("settlement_failed", "3", "This alarm takes no threshold: leave the field empty."),
    ],
)
def test_invalid_thresholds_get_a_clear_message_in_place(household_client, home, kind, threshold, message):
    response = household_client.post(
        reverse("alarm-create"), {"kind": kind, "threshold": threshold}, **htmx("alarm-form")
    )
    assert response.status_code == 200
    body = response.content.decode().strip()
    assert body.startswith('<form id="alarm-form"')
    assert f'role="alert">{message}</p>' in body.replace("&#x27;", "'")
    assert f'value="{threshold}"' in body  # what was typed stays
    assert not AlarmRule.objects.exists()


def test_without_javascript_errors_come_back_in_the_full_page(household_client, home):
    response = household_client.post(reverse("alarm-create"), {"kind": "daily_cost", "threshold": "-3"})
    assert response.status_code == 200
    assert b"<html" in response.content and b"The threshold cannot be negative." in response.content


def test_zero_is_a_meaningful_balance_threshold(household_client, home):
    household_client.post(reverse("alarm-create"), {"kind": "balance_below", "threshold": "0"})
    assert AlarmRule.objects.get().description == "Tell me when my balance is €0.00 or less"


def test_an_unknown_kind_is_refused(household_client, home):
    response = household_client.post(reverse("alarm-create"), {"kind": "lottery", "threshold": "1"})
    assert b"Select a valid choice" in response.content
    assert not AlarmRule.objects.exists()


def test_the_same_alarm_twice_is_refused(household_client, home, rule):
    response = household_client.post(reverse("alarm-create"), {"kind": "daily_cost", "threshold": "5.00"})
    assert b"You already have this alarm." in response.content
    assert AlarmRule.objects.count() == 1


def test_changing_the_kind_rerenders_the_form_with_that_kinds_unit(household_client, home):
    url = reverse("alarm-create")
    units = {"hourly_energy": "kWh", "meter_silent": "hours", "balance_days": "days", "daily_cost": "EUR"}
    for kind, unit in units.items():
        body = (
            household_client.get(url, {"kind": kind, "threshold": "4"}, **htmx("alarm-form")).content.decode().strip()
        )
        assert f"Threshold in {unit}" in body
        assert f'<option value="{kind}" selected>' in body
        assert 'value="4"' in body
    body = household_client.get(url, {"kind": "settlement_failed"}, **htmx("alarm-form")).content.decode().strip()
    assert "none for this alarm" in body


def test_editing_inline_answers_the_rules_row(household_client, home, rule):
    url = reverse("alarm-edit", args=[rule.pk])
    target = f"alarm-rule-{rule.pk}"
    form = household_client.get(url, **htmx(target)).content.decode().strip()
    assert form.startswith(f'<li class="alarm-rule editing" id="{target}">')
    assert 'value="5.000"' in form
    invalid = (
        household_client.post(url, {"kind": "daily_cost", "threshold": "-2"}, **htmx(target)).content.decode().strip()
    )
    assert invalid.startswith(f'<li class="alarm-rule editing" id="{target}">')
    assert "The threshold cannot be negative." in invalid
    saved = (
        household_client.post(url, {"kind": "daily_cost", "threshold": "7.5"}, **htmx(target)).content.decode().strip()
    )
    assert saved.startswith(f'<li class="alarm-rule" id="{target}"')
    assert "Tell me when a day costs €7.50 or more" in saved
    rule.refresh_from_db()
    assert rule.threshold == Decimal("7.5")
    cancel = household_client.get(reverse("alarm-detail", args=[rule.pk]), **htmx(target)).content.decode().strip()
    assert cancel.startswith(f'<li class="alarm-rule" id="{target}"')


def test_editing_without_javascript(household_client, home, rule):
    page = household_client.get(reverse("alarm-edit", args=[rule.pk]))
    assert b"<h1>Edit alarm</h1>" in page.content
    response = household_client.post(reverse("alarm-edit", args=[rule.pk]), {"kind": "hourly_cost", "threshold": "1"})
    assert (response.status_code, response.url) == (302, LIST)
    rule.refresh_from_db()
    assert (rule.kind, rule.threshold) == ("hourly_cost", Decimal("1"))


# --- Pause, resume, mute, delete ------------------------------------------------------------------


def test_pause_and_resume_with_htmx_answer_the_row(household_client, home, rule):
    target = f"alarm-rule-{rule.pk}"
    paused = household_client.post(reverse("alarm-pause", args=[rule.pk]), **htmx(target)).content.decode().strip()
    assert paused.startswith(f'<li class="alarm-rule paused" id="{target}"')
    assert ">Resume</button>" in paused
    rule.refresh_from_db()
    assert rule.paused
    resumed = household_client.post(reverse("alarm-resume", args=[rule.pk]), **htmx(target)).content.decode().strip()
    assert ">Pause</button>" in resumed
    rule.refresh_from_db()
    assert not rule.paused and rule.last_evaluated_at == NOW


def test_pause_without_javascript_redirects_to_the_rule_in_the_list(household_client, rule):
    response = household_client.post(reverse("alarm-pause", args=[rule.pk]))
    assert response.url == f"{LIST}#alarm-rule-{rule.pk}"
    rule.refresh_from_db()
    assert rule.paused


@pytest.mark.parametrize(("choice", "hours"), [("1h", 1), ("24h", 24), ("7d", 168)])
def test_muting_for_a_period(household_client, rule, choice, hours):
    target = f"alarm-rule-{rule.pk}"
    row = (
        household_client.post(reverse("alarm-mute", args=[rule.pk]), {"for": choice}, **htmx(target))
        .content.decode()
        .strip()
    )
    rule.refresh_from_db()
    assert rule.muted_until == NOW + timedelta(hours=hours)
    assert "No emails until" in row and 'value="off"' in row
    household_client.post(reverse("alarm-mute", args=[rule.pk]), {"for": "off"})
    rule.refresh_from_db()
    assert rule.muted_until is None


@pytest.mark.parametrize("choice", ["", "forever", "1y"])
def test_muting_for_an_unknown_period_is_a_400(household_client, rule, choice):
    assert household_client.post(reverse("alarm-mute", args=[rule.pk]), {"for": choice}).status_code == 400
    rule.refresh_from_db()
    assert rule.muted_until is None


def test_delete_with_htmx_answers_the_rule_list_and_keeps_the_history(household_client, home, rule):
    make_events(home, rule, 2)
    body = (
        household_client.post(reverse("alarm-delete", args=[rule.pk]), **htmx("alarm-rules")).content.decode().strip()
    )
    assert body.startswith('<section class="panel" id="alarm-rules">')
    assert 'id="no-alarm-rules"' in body
    assert not AlarmRule.objects.exists()
    assert AlarmEvent.objects.filter(household=home.household).count() == 2


def test_delete_without_javascript(household_client, rule):
    response = household_client.post(reverse("alarm-delete", args=[rule.pk]))
    assert (response.status_code, response.url) == (302, LIST)
    assert not AlarmRule.objects.exists()


# --- The dashboard fragment -----------------------------------------------------------------------


def test_the_summary_for_the_dashboard_takes_two_queries(home, rule, other_home, django_assert_num_queries):
    make_events(home, rule, 7)
    make_events(other_home, other_home.rule(Kind.HOURLY_COST, "1"), 3)
    with django_assert_num_queries(2):
        context = summary_context(home.household)
    assert context["alarm_unread"] == 7
    assert len(context["alarm_events"]) == 5
    assert {e.household_id for e in context["alarm_events"]} == {home.household.pk}
    html = render_to_string("alarms/_summary.html", context)
    assert "7 unread" in html and f'href="{LIST}"' in html
    assert "Wed 18 Nov, 10:00" in html  # the newest event, 09:00 UTC, in Madrid


# --- Page or partial, and the caches that must keep them apart ---------------------------------------


@pytest.mark.parametrize("name", ["alarm-list", "alarm-detail"])
def test_pages_that_answer_htmx_with_a_part_vary_on_the_headers_that_pick_it(household_client, rule, name):
    args = [rule.pk] if name == "alarm-detail" else []
    response = household_client.get(reverse(name, args=args), **htmx("alarm-history"))
    vary = {header.strip().lower() for header in response["Vary"].split(",")}
    assert {"hx-request", "hx-target", "hx-boosted", "hx-history-restore-request"} <= vary


def test_a_history_restore_of_a_rule_row_gets_the_list_page_not_the_bare_row(household_client, rule):
    response = household_client.get(
        reverse("alarm-detail", args=[rule.pk]), **HTMX, HTTP_HX_HISTORY_RESTORE_REQUEST="true"
    )
    assert response.status_code == 302
    assert response["Location"] == f"{LIST}#alarm-rule-{rule.pk}"
