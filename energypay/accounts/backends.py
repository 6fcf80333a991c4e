"""The login-throttling backend, first in AUTHENTICATION_BACKENDS."""

from __future__ import annotations

from axes.backends import AxesStandaloneBackend
from django.http import HttpRequest


class LoginThrottleBackend(AxesStandaloneBackend):
    """axes' check for a locked account or address, for logins that come with a request.

    A call without a request is Python inside the server (a management command, the shell, a test), not a
    login from outside: nothing to throttle. axes itself would raise there and break the caller.
    """

    def authenticate(self, request: HttpRequest | None, username: str | None = None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)
