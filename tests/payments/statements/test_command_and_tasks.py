"""``manage.py issue_statements`` and beat's tasks: what is due is issued once, a bad argument changes nothing."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core import mail as outbox
from django.core.management import CommandError, call_command

from energypay.celery import app
from payments.statements import tasks
from payments.statements.models import Statement
from tests.payments.statements import kit
from tests.payments.statements.kit import AFTER_OCTOBER, OCTOBER, OCTOBER_START

pytestmark = pytest.mark.time_machine(AFTER_OCTOBER, tick=False)


@pytest.fixture
def homes(make_household, make_meter):
    tariff = kit.tou_tariff()
    first, second = make_household(tariff=tariff), make_household(tariff=tariff)
    kit.contracted_long_ago(first, second)
    meter, _ = make_meter(first)
    kit.feed(meter, OCTOBER_START, OCTOBER_START + timedelta(hours=12))
    return first, second


def run(*args: str) -> str:
    out = StringIO()
    call_command("issue_statements", *args, stdout=out)
    return out.getvalue()


def test_the_command_issues_a_month_for_one_household_then_nothing_twice(homes):
    first, _ = homes
    assert "Statements: 1 issued." in run("--month", "2026-10", "--household", str(first.pk))
    assert "Statements: 0 issued, 1 already issued." in run("--month", "2026-10", "--household", str(first.pk))
    assert list(Statement.objects.values_list("household_id", flat=True)) == [first.pk]
    assert "Statements: 1 issued, 1 already issued." in run("--month", "2026-10")


def test_the_command_without_a_month_issues_what_is_due(homes, settings):
    settings.STATEMENT_RECENT_MONTHS = 1
    out = run()
    assert "Statements: 2 issued." in out and "Corrective notes: 0 issued" in out
    assert set(Statement.objects.values_list("month", flat=True)) == {OCTOBER}


def test_a_month_not_over_is_said_so(homes):
    assert "0 issued, 2 month not over yet" in run("--month", "2026-11")
    assert not Statement.objects.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--month", "2026-13"], "not a month"),
        (["--month", "October"], "not a month"),
        (["--household", "999999"], "no household"),
    ],
)
def test_bad_arguments_are_refused_and_change_nothing(homes, args, message):
    with pytest.raises(CommandError, match=message):
        run(*args)
    assert not Statement.objects.exists()


def test_beats_tasks_issue_what_is_due_then_mail_it(homes, settings, monkeypatch):
    settings.STATEMENT_RECENT_MONTHS = 1
    monkeypatch.setitem(app.conf, "task_always_eager", True)  # the chunk tasks run here, not in a worker
    assert tasks.issue_due_statements.apply().get() == 2
    monkeypatch.undo()
    assert Statement.objects.count() == 2
    assert tasks.send_statement_mail.apply().get() == {"sent": 2}
    assert len(outbox.outbox) == 2
    assert tasks.correct_statements.apply().get() == {"compared": 2}
