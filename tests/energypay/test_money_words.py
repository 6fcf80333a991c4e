"""One money vocabulary (payments/figures.py): every screen counts the same arrears at the same moment.

The admin's arrears column, /admin/status/, /healthz, the dashboard's card and the alarms used to
disagree for an hour after every settlement run: the admin called an hour late as soon as the HH:05
run began, the others an hour later. Now one cutoff serves them all, and these tests walk a debt
through the hours around two runs and read every screen at each moment.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import time_machine
from django.urls import reverse

from alarms.figures import payment_trouble
from energypay import health, status
from energypay.dashboard import dashboard_cards
from meters.models import Household
from tests.energypay.opskit import open_line

LINE_HOUR = datetime(2026, 11, 22, 13, tzinfo=UTC)  # 13:00-14:00 UTC, which the 14:05 run pays
DEBT = Decimal("0.50")


def at(hour: int, minute: int) -> datetime:
    return datetime(2026, 11, 22, hour, minute, tzinfo=UTC)


def text(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


def admin_arrears(staff_client, household: Household) -> Decimal:
    """The arrears column of the household admin's changelist, as staff read it."""
    response = staff_client.get(reverse("admin:meters_household_changelist"))
    row = next(row for row in response.context["cl"].result_list if row.pk == household.pk)
    shown = re.search(r"owes ([0-9.]+) EUR", text(response))
    assert (shown is not None) == bool(row.arrears_eur)
    return Decimal(shown.group(1)) if shown else Decimal("0")


def status_arrears(staff_client, household: Household) -> Decimal:
    """The arrears section of /admin/status/: the household's line, as staff read it."""
    html = staff_client.get("/admin/status/").content.decode()
    start = html.index('id="status-arrears"')
    section = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html[start : html.index("</table>", start)]))
    shown = re.search(rf"{re.escape(household.name)} €([0-9.]+)", section)
    return Decimal(shown.group(1)) if shown else Decimal("0")


@pytest.mark.parametrize(
    ("moment", "late"),
    [
        pytest.param(at(14, 4), False, id="14:04 before the run that pays it"),
        pytest.param(at(14, 5), False, id="14:05 the run starts"),
        pytest.param(at(14, 40), False, id="14:40 the run may still be working"),
        pytest.param(at(15, 4), False, id="15:04"),
        pytest.param(at(15, 5), True, id="15:05 a run an hour ago should have paid it"),
        pytest.param(at(16, 30), True, id="16:30"),
    ],
)
def test_the_admin_column_and_the_status_page_show_the_same_arrears_at_the_same_moment(
    staff_client, make_household, moment, late
):
    debtor = make_household()
    open_line(debtor, LINE_HOUR, str(DEBT))
    expected = DEBT if late else Decimal("0")

    with time_machine.travel(moment, tick=False):
        health.memo.clear()
        assert admin_arrears(staff_client, debtor) == status_arrears(staff_client, debtor) == expected
        assert status.arrears(moment)["eur"] == expected
        assert health.overdue_households(moment) == (1 if late else 0)
        assert dashboard_cards(debtor, moment).arrears_eur == expected
        trouble = payment_trouble([debtor.pk], moment)
        assert (trouble[debtor.pk][1] if debtor.pk in trouble else Decimal("0")) == expected
    health.memo.clear()


def test_a_line_waiting_for_its_price_is_owed_by_no_screen(staff_client, make_household):
    debtor = make_household()
    line = open_line(debtor, LINE_HOUR, str(DEBT))
    line.cost_eur = line.rate = None
    line.save()

    with time_machine.travel(at(18, 0), tick=False):
        health.memo.clear()
        assert admin_arrears(staff_client, debtor) == status_arrears(staff_client, debtor) == Decimal("0")
        assert dashboard_cards(debtor, at(18, 0)).owed_eur == Decimal("0")
    health.memo.clear()
