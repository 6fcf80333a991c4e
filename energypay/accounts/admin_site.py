"""EnergyPay's admin site: Django's, plus a second factor for staff (ADMIN_REQUIRE_2FA, on by default).

The password is checked by the admin's own login form (through axes, so it is throttled like the household
login); the site then refuses the session until it has passed a code. Its login page sends a staff session
that still owes one to the code page, or to enrolment when the person has no device yet.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.views.main import ERROR_FLAG
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, QueryDict
from django.urls import URLPattern, path

from energypay.accounts import twofactor

# The parts of a date drill-down (?created_at__year=2026&created_at__month=11&created_at__day=22) and their
# ranges. The year stops short of 9999: Django adds a year, a month or a day to find where the period ends.
_DRILL_DOWN = {"__year": (1, 9998), "__month": (1, 12), "__day": (1, 31)}


def bad_drill_down(query: QueryDict) -> bool:
    """Whether a changelist's date drill-down holds a part Django would turn into a 500.

    Django builds datetime() from the parts catching only ValueError: a number too large for C
    (OverflowError) or a period ending past 9999 escapes it, on every admin with a date_hierarchy
    (ours and the libraries', such as axes' access attempts).
    """
    for key, values in query.lists():
        for suffix, (low, high) in _DRILL_DOWN.items():
            if key.endswith(suffix):
                for value in values:
                    if not (value.isascii() and value.isdigit() and low <= int(value[:6]) <= high):
                        return True
    return False


class SecureAdminSite(admin.AdminSite):
    def admin_view(self, view: Callable, cacheable: bool = False) -> Callable:
        checked = super().admin_view(view, cacheable)

        @wraps(checked)
        def refuse_bad_drill_down(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if bad_drill_down(request.GET):
                # Django's own answer to a lookup it cannot use: the list again, flagged as an error.
                return HttpResponseRedirect(f"{request.path}?{ERROR_FLAG}=1")
            return checked(request, *args, **kwargs)

        return refuse_bad_drill_down

    def has_permission(self, request: HttpRequest) -> bool:
        if not super().has_permission(request):
            return False
        return not settings.ADMIN_REQUIRE_2FA or twofactor.is_verified(request)

    def login(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        if twofactor.second_factor_due(request):
            return twofactor.next_step(request)
        response = super().login(request, extra_context)
        if request.method == "POST" and response.status_code == 302 and twofactor.second_factor_due(request):
            return twofactor.next_step(request)  # the password was right: now the code
        return response

    def get_urls(self) -> list[URLPattern]:
        # Before the admin's own: its catch-all would answer these paths with a redirect to the login.
        return [
            path("2fa/", twofactor.verify, name="otp-verify"),
            path("2fa/enrol/", twofactor.enrol, name="otp-enrol"),
            *super().get_urls(),
        ]
