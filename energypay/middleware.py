"""Project-wide request and response rules: every /api/ error in the API's JSON shape, oversized /api/
headers answered in JSON, a lean lane for the API routes meters hit, no caching of logged-in answers, and
the audit trail's actor on the admin.

The first four are plain function middlewares (settings.MIDDLEWARE says where each sits and why).
"""

from __future__ import annotations

from collections.abc import Callable

from auditlog.middleware import AuditlogMiddleware
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import ResolverMatch, get_script_prefix, resolve, reverse
from django.utils.cache import patch_cache_control

from energypay.accounts.lockout import client_ip
from lib import jsonapi

API_PREFIX = "/api/"
# What a JSON answer needs from a page policy: nothing may load or frame it (OWASP's REST advice).
API_CONTENT_SECURITY_POLICY = "default-src 'none'; frame-ancestors 'none'"
ADMIN_PREFIX = "/admin/"
# WSGI keeps these two headers without the HTTP_ prefix; they are headers all the same.
_UNPREFIXED_HEADERS = ("CONTENT_TYPE", "CONTENT_LENGTH")


def header_bytes(environ: dict) -> int:
    """About how many bytes the request's header lines took: name, ": ", value and CRLF for each."""
    total = 0
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            total += len(key) - 5 + len(value) + 4
        elif key in _UNPREFIXED_HEADERS:
            total += len(key) + len(value) + 4
    return total


def oversized_headers(request: HttpRequest) -> str | None:
    """Why the request's headers are over the documented limits (docs/openapi.yaml), or None."""
    payment = request.META.get("HTTP_X_PAYMENT", "")
    if len(payment) > settings.API_MAX_PAYMENT_HEADER_BYTES:
        return f"X-PAYMENT is over {settings.API_MAX_PAYMENT_HEADER_BYTES} bytes"
    if header_bytes(request.META) > settings.API_MAX_HEADER_BYTES:
        return f"the request headers are over {settings.API_MAX_HEADER_BYTES} bytes in all"
    return None


# Headers an error from below keeps when its body is replaced: what the client must do next.
_KEPT_ON_ERRORS = ("Allow", "Retry-After", "WWW-Authenticate")


def api_json_errors(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """Every /api/ error answer is the API's JSON error (lib/jsonapi.py), whoever wrote it.

    Views answer their own errors in that shape; this catches the answers no API view wrote: an unknown
    path (Django's 404 page), a method a decorator refused (an empty 405), a CSRF refusal, and a crash
    (Django's 500 page, or with DEBUG the traceback page, which an API client must never see). Django
    has logged the crash by then. A JSON answer (x402's 402) passes as it is. Outermost but for the
    metrics, so it also sees the lean lane's answers; on the ingest path it costs a prefix test.
    """

    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        if (
            response.status_code >= 400
            and request.path_info.startswith(API_PREFIX)
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            replaced = jsonapi.error(response.status_code, jsonapi.default_message(response.status_code))
            for name in _KEPT_ON_ERRORS:
                if name in response:
                    replaced[name] = response[name]
            replaced.headers.setdefault("Content-Security-Policy", API_CONTENT_SECURITY_POLICY)
            return replaced
        return response

    return middleware


def api_header_limits(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """431 with a JSON error for an /api/ request whose headers are over the documented size.

    gunicorn and nginx let somewhat larger headers through (gunicorn.conf.py), so a client over the
    limit reads why in the API's own format instead of a proxy's HTML page.
    """

    def middleware(request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(API_PREFIX) and (reason := oversized_headers(request)):
            return jsonapi.error(431, reason)
        return get_response(request)

    return middleware


def lean_api(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """Serve the routes named in settings.LEAN_API_ROUTES straight from their view, past the middleware below.

    Every meter posts to the ingest endpoint every 15 minutes: it is the site's busiest URL by far, and
    the middleware below this one (sessions, CommonMiddleware, CSRF, authentication, OTP, messages,
    the page policy, htmx, axes) costs it more than its own work while doing nothing for it: no
    cookie, no user, no form, no page. What an API answer needs from them is set here: its length, a
    policy that lets nothing load or frame it, and X-Frame-Options. What sits above (the JSON 431
    header limit, SecurityMiddleware's HTTPS redirect, HSTS, nosniff, referrer and opener policies)
    still applies. Those views get a plain request: no ``user``, ``session`` or ``htmx``.
    """
    views: dict[str, ResolverMatch] = {}

    def middleware(request: HttpRequest) -> HttpResponse:
        if not views and settings.LEAN_API_ROUTES:
            views.update(_lean_views())
        match = views.get(request.path_info)
        if match is None:
            return get_response(request)
        request.resolver_match = match  # as Django's handler sets it: the metrics name the view by it
        response = match.func(request)
        if not response.streaming and not response.has_header("Content-Length"):
            response.headers["Content-Length"] = str(len(response.content))
        response.headers.setdefault("Content-Security-Policy", API_CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    return middleware


def _lean_views() -> dict[str, ResolverMatch]:
    """path_info -> the route's match (its view and name) for the named routes, looked up once (during the
    first request, whose script prefix reverse() adds and path_info lacks). The routes take no arguments."""
    views = {}
    for name in settings.LEAN_API_ROUTES:
        path = "/" + reverse(name).removeprefix(get_script_prefix())
        views[path] = resolve(path)
    return views


def private_no_store(get_response: Callable[[HttpRequest], HttpResponse]) -> Callable[[HttpRequest], HttpResponse]:
    """``Cache-Control: private, no-store`` on every answer to a logged-in user.

    Household pages, fragments, CSV files and the admin show one person's data: no shared cache may
    keep them, and no browser may keep them on disk or show them again from its cache after a logout.
    Anonymous answers (the login page, /healthz, the API) keep whatever their view decided.
    """

    def middleware(request: HttpRequest) -> HttpResponse:
        response = get_response(request)
        if may_be_logged_in(request) and request.user.is_authenticated:
            patch_cache_control(response, private=True, no_store=True)
        return response

    return middleware


def may_be_logged_in(request: HttpRequest) -> bool:
    """Whether ``request.user`` is worth loading: not for a request without a session cookie that logged no one in.

    Such a request is anonymous (a login in it would have touched the session), and loading its user
    costs ~50 us of lazy session, user and OTP wrapping: on every meter's ingest request, which sends no cookie.
    """
    session = getattr(request, "session", None)
    return session is not None and (session.accessed or settings.SESSION_COOKIE_NAME in request.COOKIES)


class StaffAuditMiddleware(AuditlogMiddleware):
    """django-auditlog's middleware, which names the actor (and address) of every audited change, on /admin/ only.

    Staff change audited rows in the admin; nothing else a browser or a meter sends does. Elsewhere it
    would only cost every request (the ingest API's thousands a second) a user lookup and a signal
    connected and disconnected. The address is the one the login throttle trusts (TRUSTED_PROXY_COUNT),
    never the first entry of an X-Forwarded-For header any client can write.
    """

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path_info.startswith(ADMIN_PREFIX):
            return self.get_response(request)
        return super().__call__(request)

    @staticmethod
    def _get_remote_addr(request: HttpRequest) -> str | None:
        return client_ip(request)

    @staticmethod
    def _get_remote_port(request: HttpRequest) -> int | None:
        return None  # auditlog reads a client-written X-Forwarded-Port header; the port says nothing anyway
