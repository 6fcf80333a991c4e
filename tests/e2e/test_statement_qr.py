"""A statement's page in Chromium: the tax QR comes first, at 30-40 mm, and a phone reads the page without
scrolling sideways (a statement and its corrective note)."""

from __future__ import annotations

import pytest

from payments.statements import corrections
from payments.statements.issuing import issue_households
from payments.statements.models import Statement
from tests.e2e.conftest import log_in, screenshot
from tests.payments.statements import verifactukit
from tests.payments.statements.kit import OCTOBER, OCTOBER_START

CSS_PX_PER_MM = 96 / 25.4


@pytest.mark.parametrize("width", [360, 1280])
def test_the_statement_page_shows_its_tax_qr_first_and_fits_a_phone(page, width, make_household, make_meter):
    (home,) = verifactukit.town(make_household, make_meter, 1)
    issue_households([home.pk], OCTOBER, now=verifactukit.ISSUED_AT)
    verifactukit.add_hour(home, home.meters.get(), OCTOBER_START.replace(hour=23))
    corrections.correct(home.pk, OCTOBER, now=verifactukit.CORRECTED_AT)
    statements = list(Statement.objects.filter(household=home))
    assert len(statements) == 2
    page.set_viewport_size({"width": width, "height": 900})
    log_in(page, home.user.email, "pw-unused-123")
    for statement in statements:
        page.goto(f"{page.base_url}/statements/{statement.pk}/")
        qr = page.locator("#statement-tax-qr svg")
        assert qr.is_visible()
        box = qr.bounding_box()
        code_mm = box["width"] / CSS_PX_PER_MM * (1 - 8 / 53)  # about: the quiet zone is 8 of ~53 modules
        assert 25 < code_mm < 45 and box["width"] == box["height"]
        assert page.locator("#statement-tax-qr").inner_text().split() == ["QR", "tributario:", "VERI*FACTU"]
        screenshot(page, f"statement-{statement.kind}-{width}")
        wide = page.evaluate(
            "() => [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > "
            "document.documentElement.clientWidth + 1).map(e => e.tagName + '#' + e.id + '.' + e.className)"
        )
        assert page.evaluate("() => document.documentElement.scrollWidth") <= width, wide[:15]
