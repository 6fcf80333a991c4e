"""Who may see a household page: the household's own login, nobody else.

Every household view is wrapped in ``household_required`` and takes a ``HouseholdRequest``; loaders
then filter by ``request.household``, so an id that belongs to another household is a 404, never its
page. It sits beside ``Household`` (the apps above use it; the project package composes them).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TYPE_CHECKING, Concatenate, ParamSpec

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ObjectDoesNotExist
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone, translation
from django_htmx.http import HttpResponseClientRedirect

from meters.models import Household

if TYPE_CHECKING:
    from django_htmx.middleware import HtmxDetails

P = ParamSpec("P")


class HouseholdRequest(HttpRequest):
    """A request ``household_required`` let through: the login's household, and htmx's headers read."""

    household: Household
    htmx: HtmxDetails  # django_htmx.middleware.HtmxMiddleware; falsy when htmx did not send the request


def household_of(request: HttpRequest) -> Household | None:
    """The login's household with its tariff (the usage chart's cache key needs its revision).

    The session engine reads them with the session and its user (energypay/accounts/sessions.py), so
    this costs no query; a user loaded another way costs one, the household joined with its tariff.
    """
    user = request.user
    if not user.is_authenticated:
        return None
    related = Household.user.field.remote_field  # the user's side: user.household
    if related.is_cached(user):  # loaded with the user (settings.AUTHENTICATION_BACKENDS): no query
        household = related.get_cached_value(user)
        if household is None or Household.tariff.is_cached(household):
            return household
    try:
        return Household.objects.select_related("tariff").get(user_id=user.pk)
    except ObjectDoesNotExist:
        return None


def _whole_page_login(request: HttpRequest) -> HttpResponse:
    shown = request.htmx.current_url_abs_path or request.get_full_path()  # type: ignore[attr-defined]
    return HttpResponseClientRedirect(redirect_to_login(shown)["Location"])


def household_required(
    view: Callable[Concatenate[HouseholdRequest, P], HttpResponse],
) -> Callable[Concatenate[HttpRequest, P], HttpResponse]:
    """Anonymous: to the login page. Staff without a household: to the admin. Others without one: 403.

    An htmx request (a panel's own request, the session having expired meanwhile) is told to load the
    login page as a whole page (``HX-Redirect``), with ``next`` back to the page the browser shows: a
    redirect it followed itself would put the login page inside the panel.
    """

    @wraps(view)
    def wrapper(request: HttpRequest, *args: P.args, **kwargs: P.kwargs) -> HttpResponse:
        htmx = getattr(request, "htmx", None)
        if not request.user.is_authenticated:
            if htmx:
                return _whole_page_login(request)
            return redirect_to_login(request.get_full_path())
        household = household_of(request)
        if household is None and htmx:
            return _whole_page_login(request)  # the login page says this login cannot see that page
        if household is None:
            if request.user.is_staff:
                return redirect("admin:index")
            return render(request, "no_household.html", status=403)
        request.household = household
        # The household's own language, whatever the browser asks for (LocaleMiddleware chose before
        # the login was known), and its time zone: every time the page shows is the household's (it
        # names the zone once). Overridden for the view, not activated: the thread serves other
        # requests next, some of them (the API) before LocaleMiddleware would set a language again.
        request.LANGUAGE_CODE = household.language
        with translation.override(household.language), timezone.override(household.timezone):
            response = view(request, *args, **kwargs)  # type: ignore[arg-type]  # now a HouseholdRequest
        response.headers["Content-Language"] = household.language  # LocaleMiddleware keeps a header set here
        return response

    return wrapper
