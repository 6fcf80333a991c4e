"""The Content-Security-Policy in a real browser: the pages work under it and it refuses nothing they use.

A refused script, style or connection shows up as a `securitypolicyviolation` event and as a console
error; both are collected on every page (and after htmx swaps) and must stay empty.
"""

from __future__ import annotations

from tests.e2e.conftest import log_in

# Runs before any script of each page: it records what the policy refused.
COLLECT_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  var what = event.violatedDirective + " refused " + (event.blockedURI || "inline");
  window.__cspViolations.push(what + " at " + event.sourceFile + ":" + event.lineNumber + " " + event.sample);
});
"""


def watch(page) -> list[str]:
    """Console errors of every page from now on (the CSP's refusals are among them)."""
    errors: list[str] = []
    page.add_init_script(COLLECT_VIOLATIONS)
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    return errors


def violations(page) -> list[str]:
    return page.evaluate("window.__cspViolations || []")


def visit(page, path: str) -> list[str]:
    page.goto(page.base_url + path)
    page.wait_for_load_state("networkidle")
    return violations(page)


def test_household_pages_run_under_the_policy_without_a_violation(page):
    errors = watch(page)
    log_in(page)
    assert page.evaluate("document.querySelector('meta[name=htmx-config]') !== null")

    assert visit(page, "/") == []
    page.wait_for_selector("#usage-chart")
    assert page.locator(".chart-box").is_visible()  # chart-init.js and the CDN's Chart.js both ran
    page.click("a[data-range=week]")  # an htmx swap: indicator classes, the chart redrawn
    page.wait_for_selector("a[data-range=week][aria-current=true]")
    page.wait_for_load_state("networkidle")
    assert violations(page) == []
    assert page.evaluate("typeof window.htmx") == "object"

    assert visit(page, "/wallet/") == []
    assert visit(page, "/payments/") == []
    assert visit(page, "/alarms/") == []

    assert visit(page, "/community/") == []
    page.click("#unlock-button")  # demo wallets are funded: the comparison opens, drawn by community-chart.js
    page.wait_for_selector("#community-chart-box:not([hidden])")
    assert violations(page) == []

    assert errors == [], errors


def test_the_admin_runs_under_the_policy_without_a_violation(page):
    errors = watch(page)
    page.goto(page.base_url + "/admin/login/")
    page.fill("input[name=username]", "staff@example.com")
    page.fill("input[name=password]", "demo")
    page.click("input[type=submit]")
    page.fill("input[name=code]", current_totp("staff@example.com"))  # the admin's second factor
    page.click("input[type=submit][value=Verify]")
    page.wait_for_url(page.base_url + "/admin/")
    for path in (
        "/admin/",
        "/admin/status/",
        "/admin/payments/settlement/",
        "/admin/meters/household/",
        "/admin/meters/tariffversion/add/",  # date and time widgets (DateTimeShortcuts.js)
        "/admin/webhooks/webhookendpoint/",  # the demo's receiver: its state badge
        "/admin/webhooks/webhookdelivery/",
        "/admin/auditlog/logentry/",  # django-auditlog's list
    ):
        assert visit(page, path) == [], path
    page.goto(page.base_url + "/admin/payments/settlement/")
    page.click("#result_list tbody tr th a")  # a settlement's page: its raw transaction in a <pre>
    page.wait_for_selector("pre.raw-hex")
    assert page.evaluate("getComputedStyle(document.querySelector('pre.raw-hex')).whiteSpace") == "pre-wrap"
    assert violations(page) == []
    assert errors == [], errors


def current_totp(email: str) -> str:
    """The code the demo staff member's authenticator app shows now (seed_demo enrols one)."""
    from django_otp.oath import TOTP
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.get(user__email=email, confirmed=True)
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    return f"{totp.token():0{device.digits}d}"
