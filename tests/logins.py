"""Log a test browser in as the admin would: staff sessions need a verified second factor (django-otp)."""

from __future__ import annotations

from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice


def login_with_second_factor(client: Client, user) -> Client:
    """force_login plus a session that passed a TOTP code, as after the admin's code page."""
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    device = device or TOTPDevice.objects.create(user=user, name="Test authenticator", confirmed=True)
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


# What the second factor costs an admin page: the session's device, loaded once per request by OTPMiddleware.
SECOND_FACTOR_QUERIES = 1
