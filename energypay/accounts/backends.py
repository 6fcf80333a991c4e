"""Authentication backends: login throttling first, then passwords, taking each request's user from its session."""

from __future__ import annotations

from contextvars import ContextVar

from axes.backends import AxesStandaloneBackend
from django.contrib.auth.backends import ModelBackend
from django.contrib.sessions.backends.base import SessionBase
from django.http import HttpRequest

# The session whose user Django's get_user is loading, set around that call by
# energypay.accounts.middleware and reset after it: nothing outlives the call.
session_being_read: ContextVar[SessionBase | None] = ContextVar("session_being_read", default=None)


class LoginThrottleBackend(AxesStandaloneBackend):
    """axes' check for a locked account or address, for logins that come with a request.

    A call without a request is Python inside the server (a management command, the shell, a test), not a
    login from outside: nothing to throttle. axes itself would raise there and break the caller.
    """

    def authenticate(self, request: HttpRequest | None, username: str | None = None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)


class HouseholdLoginBackend(ModelBackend):
    """Django's password backend, taking the user the session's own query loaded (energypay/accounts/sessions.py).

    That user comes with its household and tariff, read in the same statement as the session: no query
    of its own. Django's ``get_user`` then checks it as any other (active, the session's password hash).
    Without such a user (another session engine, an async request) it loads the user as ModelBackend does.
    """

    def get_user(self, user_id):
        user = getattr(session_being_read.get(), "loaded_user", None)
        if user is None or str(user.pk) != str(user_id):
            return super().get_user(user_id)
        return user if self.user_can_authenticate(user) else None
