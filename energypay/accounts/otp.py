"""The admin's second-factor devices (django-otp): an authenticator app (TOTP) and recovery codes (static tokens).

Plain functions on the devices, used by the enrolment and code pages (energypay.accounts.twofactor) and by
seed_demo; no views, no templates.
"""

from __future__ import annotations

import re
from base64 import b32encode

from django.conf import settings
from django.db import transaction
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from energypay.accounts.models import User

TOTP_CODE = re.compile(r"\d{6}")
APP_DEVICE_NAME = "Authenticator app"
RECOVERY_DEVICE_NAME = "Recovery codes"


def pending_app_device(user: User) -> TOTPDevice:
    """The unconfirmed authenticator device being enrolled; the same secret on every reload of the page."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
    return device or TOTPDevice.objects.create(user=user, name=APP_DEVICE_NAME, confirmed=False)


def secret_text(device: TOTPDevice) -> str:
    """The base32 secret as authenticator apps take it when typed, in groups of four."""
    secret = b32encode(device.bin_key).decode()
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


@transaction.atomic
def new_recovery_codes(user: User) -> list[str]:
    """Replace the user's recovery codes with RECOVERY_CODE_COUNT fresh ones; each works once (it is then deleted)."""
    StaticDevice.objects.filter(user=user).delete()
    device = StaticDevice.objects.create(user=user, name=RECOVERY_DEVICE_NAME, confirmed=True)
    codes = [StaticToken.random_token() for _ in range(settings.RECOVERY_CODE_COUNT)]
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
        # Locked, as django_otp.devices_for_user(for_verify=True) locks them, but only the devices of that kind.
        for device in kind.objects.devices_for_user(user, confirmed=True).select_for_update():
            allowed, details = device.verify_is_allowed()
            if not allowed:
                locked_until = (details or {}).get("locked_until")
                waiting = f" Too many wrong codes: wait until {locked_until:%H:%M:%S} UTC." if locked_until else ""
                continue
            if device.verify_token(code):
                return device, ""
    return None, "That code is not valid." + waiting
