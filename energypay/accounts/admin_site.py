"""EnergyPay's admin site: Django's, plus a second factor for staff (ADMIN_REQUIRE_2FA, on by default).

The password is checked by the admin's own login form (through axes, so it is throttled like the household
login); the site then refuses the session until it has passed a code. Its login page sends a staff session
that still owes one to the code page, or to enrolment when the person has no device yet.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path

from energypay.accounts import twofactor


class SecureAdminSite(admin.AdminSite):
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
