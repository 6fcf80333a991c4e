"""Login throttling with django-axes: who a login attempt is, where it comes from, and what a locked-out person sees.

Settings name these functions (AXES_USERNAME_CALLABLE, AXES_CLIENT_IP_CALLABLE, AXES_LOCKOUT_CALLABLE). Axes counts
failures per account and, separately, per client address; at LOGIN_FAILURE_LIMIT either one is refused until
LOGIN_COOLOFF_MINUTES after its last failure, or, for the account, until its password is reset.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from datetime import timedelta

from axes.helpers import get_cool_off
from axes.models import AccessAttempt
from axes.utils import reset
from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.forms import AuthenticationForm
from django.db.models import Max, Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import ngettext

from energypay.accounts.models import User

logger = logging.getLogger(__name__)


def account_key(username: str | None) -> str | None:
    """The one spelling of an account: "  Anna@Example.COM" and "anna@example.com" count as one."""
    if not username:
        return None
    return User.objects.login_spelling(str(username))


def username_of(request: HttpRequest, credentials: dict | None) -> str | None:
    typed = (credentials or {}).get(settings.AXES_USERNAME_FORM_FIELD)
    if typed is None and request is not None:
        typed = request.POST.get(settings.AXES_USERNAME_FORM_FIELD)
    return account_key(typed)


def _valid_ip(value: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address((value or "").strip()))
    except ValueError:
        return None


def client_ip(request: HttpRequest) -> str | None:
    """REMOTE_ADDR, unless TRUSTED_PROXY_COUNT proxies stand in front.

    Each proxy appends the address it received the request from to X-Forwarded-For, so with N of them the
    N-th entry from the right is what the outermost proxy saw: the client. Entries further left are whatever
    the client sent and are never used. A header shorter than N hops (a request that bypassed the proxies)
    falls back to REMOTE_ADDR.
    """
    remote = _valid_ip(request.META.get("REMOTE_ADDR"))
    count = settings.TRUSTED_PROXY_COUNT
    if count:
        hops = [hop.strip() for hop in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if hop.strip()]
        if len(hops) >= count:
            return _valid_ip(hops[-count]) or remote
    return remote


def retry_in(request: HttpRequest, username: str | None, ip: str | None) -> timedelta:
    """How long until the lock on this account or address ends: the cool-off after its latest counted failure."""
    cool_off = get_cool_off(request) or timedelta(0)
    matches = Q(ip_address=ip)
    if username:
        matches |= Q(username=username)
    latest = AccessAttempt.objects.filter(matches).aggregate(latest=Max("attempt_time"))["latest"]
    if latest is None:
        return cool_off
    return max(latest + cool_off - timezone.now(), timedelta(minutes=1))


def lockout_message(wait: timedelta) -> str:
    minutes = max(1, math.ceil(wait.total_seconds() / 60))
    return ngettext(
        "Too many failed logins for this account or from your network. Try again in %(minutes)s minute. "
        "Resetting your password by email unlocks your account at once.",
        "Too many failed logins for this account or from your network. Try again in %(minutes)s minutes. "
        "Resetting your password by email unlocks your account at once.",
        minutes,
    ) % {"minutes": minutes}


def locked_out_page(request: HttpRequest, response: HttpResponse | None, credentials: dict | None) -> HttpResponse:
    """The login page again, saying why and until when, with status 429 (Too Many Requests)."""
    username, ip = username_of(request, credentials), client_ip(request)
    message = lockout_message(retry_in(request, username, ip))
    logger.warning("login.locked_out account=%s ip=%s path=%s", username, ip, request.path)
    following = request.POST.get(REDIRECT_FIELD_NAME) or request.GET.get(REDIRECT_FIELD_NAME, "")
    if request.path.startswith(reverse("admin:index")):
        from django.contrib import admin

        context = {
            **admin.site.each_context(request),
            "title": "Log in",
            "site_header": admin.site.site_header,
            "app_path": request.get_full_path(),
            "form": AdminAuthenticationForm(request, initial={"username": username}),
            "username": "",
            "lockout": message,
            REDIRECT_FIELD_NAME: following,
        }
        return render(request, "admin/login.html", context, status=429)
    context = {
        "form": AuthenticationForm(request, initial={"username": username}),
        "lockout": message,
        REDIRECT_FIELD_NAME: following,
    }
    return render(request, "registration/login.html", context, status=429)


def unlock_account(email: str) -> int:
    """Forget the account's failed logins (a completed password reset proves the owner). Returns rows removed."""
    return reset(username=account_key(email))
