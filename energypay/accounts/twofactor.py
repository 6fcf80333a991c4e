"""The admin's second factor: a TOTP authenticator app, and recovery codes for a lost phone (django-otp).

A staff session that passed the password but not a code is "unverified": the admin site refuses it
(energypay.accounts.admin_site) and sends it here, to ``verify`` when the person has a confirmed device,
else to ``enrol``. Enrolment shows the authenticator's QR code and secret, takes one code to prove the app
works, then shows RECOVERY_CODE_COUNT single-use recovery codes, once.
"""

from __future__ import annotations

import logging
import re
from base64 import b32encode

from django import forms
from django.conf import settings
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme, urlencode
from django.views.decorators.cache import never_cache
from django_otp import devices_for_user, user_has_device
from django_otp import login as otp_login
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from energypay.accounts.models import User
from payments.qr import qr_svg

logger = logging.getLogger(__name__)

TOTP_CODE = re.compile(r"\d{6}")
APP_DEVICE_NAME = "Authenticator app"
RECOVERY_DEVICE_NAME = "Recovery codes"


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


# --- devices ------------------------------------------------------------------------------------------


def pending_app_device(user: User) -> TOTPDevice:
    """The unconfirmed authenticator device being enrolled; the same secret on every reload of the page."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
    return device or TOTPDevice.objects.create(user=user, name=APP_DEVICE_NAME, confirmed=False)


def secret_text(device: TOTPDevice) -> str:
    """The base32 secret as authenticator apps take it when typed, in groups of four."""
    secret = b32encode(device.bin_key).decode()
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


@transaction.atomic
def new_recovery_codes(user: User, count: int | None = None) -> list[str]:
    """Replace the user's recovery codes with ``count`` fresh ones; each works once (StaticDevice deletes it)."""
    StaticDevice.objects.filter(user=user).delete()
    device = StaticDevice.objects.create(user=user, name=RECOVERY_DEVICE_NAME, confirmed=True)
    codes = [StaticToken.random_token() for _ in range(count or settings.RECOVERY_CODE_COUNT)]
    StaticToken.objects.bulk_create(StaticToken(device=device, token=code) for code in codes)
    return codes


def normalise_code(typed: str) -> str:
    return re.sub(r"[\s-]", "", typed).lower()


def matching_device(user: User, code: str) -> tuple[Device | None, str]:
    """The confirmed device that accepts ``code`` (used up: a recovery code is deleted), or None and why not.

    Six digits are tried against the authenticator app, anything else against the recovery codes, so a
    wrong code throttles only the device it was meant for (django-otp doubles the wait after each failure).
    """
    kind = TOTPDevice if TOTP_CODE.fullmatch(code) else StaticDevice
    waiting = ""
    with transaction.atomic():
        for device in devices_for_user(user, confirmed=True, for_verify=True):
            if not isinstance(device, kind):
                continue
            allowed, details = device.verify_is_allowed()
            if not allowed:
                locked_until = (details or {}).get("locked_until")
                waiting = f" Too many wrong codes: wait until {locked_until:%H:%M:%S} UTC." if locked_until else ""
                continue
            if device.verify_token(code):
                return device, ""
    return None, "That code is not valid." + waiting


# --- pages --------------------------------------------------------------------------------------------


class CodeForm(forms.Form):
    code = forms.CharField(max_length=64, strip=True)


def _staff_session(request: HttpRequest) -> bool:
    return request.user.is_authenticated and request.user.is_active and request.user.is_staff


def _context(request: HttpRequest, **extra) -> dict:
    from django.contrib import admin

    return {**admin.site.each_context(request), REDIRECT_FIELD_NAME: safe_next(request), **extra}


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
            # Shown in this response only: never stored readable, never shown again.
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
