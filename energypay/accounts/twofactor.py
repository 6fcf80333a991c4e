"""The admin's second factor: a TOTP authenticator app, and recovery codes for a lost phone (django-otp).

A staff session that passed the password but not a code is "unverified": the admin site refuses it
(energypay.accounts.admin_site) and sends it here, to ``verify`` when the person has a confirmed device,
else to ``enrol``. Enrolment shows the authenticator's QR code and secret, takes one code to prove the app
works, then shows RECOVERY_CODE_COUNT single-use recovery codes, once.
"""

from __future__ import annotations

import logging

from django import forms
from django.conf import settings
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.cache import never_cache
from django_otp import login as otp_login
from django_otp import user_has_device
from django_otp.models import Device

from energypay.accounts.otp import matching_device, new_recovery_codes, normalise_code, pending_app_device, secret_text
from payments.qr import qr_svg  # the wallet page's QR helper (SVG text, no image library)

logger = logging.getLogger(__name__)

# --- who still owes a code -----------------------------------------------------------------------------


def is_verified(request: HttpRequest) -> bool:
    # OTPMiddleware installs is_verified() on request.user; a user object set by login() later has none.
    check = getattr(request.user, "is_verified", None)
    return bool(check and check())


def second_factor_due(request: HttpRequest) -> bool:
    """A staff session that has the password but not yet a code (and the setting asks for one)."""
    user = request.user
    return (
        settings.ADMIN_REQUIRE_2FA
        and user.is_authenticated
        and user.is_active
        and user.is_staff
        and not is_verified(request)
    )


def safe_next(request: HttpRequest) -> str:
    wanted = request.POST.get(REDIRECT_FIELD_NAME) or request.GET.get(REDIRECT_FIELD_NAME) or ""
    if url_has_allowed_host_and_scheme(wanted, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return wanted
    return reverse("admin:index")


def next_step(request: HttpRequest) -> HttpResponse:
    """Where an unverified staff session goes: the code page, or enrolment when it has no device yet."""
    name = "admin:otp-verify" if user_has_device(request.user, confirmed=True) else "admin:otp-enrol"
    return redirect(f"{reverse(name)}?{urlencode({REDIRECT_FIELD_NAME: safe_next(request)})}")


def _to_admin_login(request: HttpRequest) -> HttpResponse:
    return redirect(f"{reverse('admin:login')}?{urlencode({REDIRECT_FIELD_NAME: request.get_full_path()})}")


# --- pages --------------------------------------------------------------------------------------------


class CodeForm(forms.Form):
    code = forms.CharField(max_length=64, strip=True)


def _staff_session(request: HttpRequest) -> bool:
    return request.user.is_authenticated and request.user.is_active and request.user.is_staff


def _context(request: HttpRequest, **extra) -> dict:
    from django.contrib import admin

    # No app list or nav sidebar: until the code is entered the session may open no admin page.
    context = {**admin.site.each_context(request), "available_apps": [], "is_nav_sidebar_enabled": False}
    return {**context, REDIRECT_FIELD_NAME: safe_next(request), **extra}


def _verified(request: HttpRequest, device: Device) -> None:
    request.session.cycle_key()  # a new session id for the raised privilege
    otp_login(request, device)


@never_cache
def verify(request: HttpRequest) -> HttpResponse:
    """The code after the password: from the authenticator app, or one of the recovery codes."""
    if not _staff_session(request):
        return _to_admin_login(request)
    if not second_factor_due(request):
        return redirect(safe_next(request))
    if not user_has_device(request.user, confirmed=True):
        return next_step(request)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        device, problem = matching_device(request.user, normalise_code(form.cleaned_data["code"]))
        if device is not None:
            _verified(request, device)
            logger.info("admin.2fa_verified user=%s device=%s", request.user.pk, type(device).__name__)
            return redirect(safe_next(request))
        logger.warning("admin.2fa_refused user=%s", request.user.pk)
        form.add_error("code", problem)
    return render(request, "admin/twofactor/verify.html", _context(request, form=form, title="Enter your code"))


@never_cache
def enrol(request: HttpRequest) -> HttpResponse:
    """First admin login of a staff member without a device: add an authenticator app, then recovery codes."""
    if not _staff_session(request):
        return _to_admin_login(request)
    if user_has_device(request.user, confirmed=True):
        # Never a second device from a password-only session: that would bypass the first one.
        return next_step(request) if second_factor_due(request) else redirect(safe_next(request))
    device = pending_app_device(request.user)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        if device.verify_token(normalise_code(form.cleaned_data["code"])):
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            codes = new_recovery_codes(request.user)
            _verified(request, device)
            logger.info("admin.2fa_enrolled user=%s", request.user.pk)
            # Shown in this response only; the admin never shows them (OTP_ADMIN_HIDE_SENSITIVE_DATA).
            return render(
                request,
                "admin/twofactor/recovery_codes.html",
                _context(request, codes=codes, title="Your recovery codes"),
            )
        form.add_error("code", "That code is not valid. Check the phone's clock and enter the current code.")
    context = _context(
        request,
        form=form,
        title="Set up two-factor authentication",
        qr_svg=qr_svg(device.config_url),
        secret=secret_text(device),
        issuer=settings.OTP_TOTP_ISSUER,
    )
    return render(request, "admin/twofactor/enrol.html", context)
