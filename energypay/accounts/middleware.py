"""Django's AuthenticationMiddleware, letting the backend take the user its session's query already loaded."""

from __future__ import annotations

from django.contrib import auth
from django.contrib.auth import middleware as auth_middleware
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from energypay.accounts.backends import session_being_read


def get_user(request: HttpRequest):
    """``django.contrib.auth.get_user``, with the request's session in reach of the backend while it runs."""
    if not hasattr(request, "_cached_user"):
        token = session_being_read.set(request.session)
        try:
            request._cached_user = auth.get_user(request)
        finally:
            session_being_read.reset(token)
    return request._cached_user


class AuthenticationMiddleware(auth_middleware.AuthenticationMiddleware):
    def process_request(self, request: HttpRequest) -> None:
        super().process_request(request)
        request.user = SimpleLazyObject(lambda: get_user(request))
