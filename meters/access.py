"""Who may see a household page: the household's own login, nobody else.

Every household view is wrapped in ``household_required``; loaders then filter by
``request.household``, so an id that belongs to another household is a 404, never its page.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ObjectDoesNotExist
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from meters.models import Household


def household_of(request: HttpRequest) -> Household | None:
    if not request.user.is_authenticated:
        return None
    try:
        return request.user.household
    except ObjectDoesNotExist:
        return None


def household_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Anonymous: to the login page. Staff without a household: to the admin. Others without one: 403."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        household = household_of(request)
        if household is None:
            if request.user.is_staff:
                return redirect("admin:index")
            return render(request, "no_household.html", status=403)
        request.household = household
        return view(request, *args, **kwargs)

    return wrapper
