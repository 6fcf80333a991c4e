"""Account views beyond Django's own: a completed password reset also lifts the account's login lockout; the
household's personal access tokens for the read API (energypay/accounts/tokens.py)."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_POST

from energypay.accounts import tokens
from energypay.accounts.lockout import unlock_account
from energypay.accounts.models import PersonalAccessToken
from meters.access import HouseholdRequest, household_required


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    def form_valid(self, form) -> HttpResponse:
        response = super().form_valid(form)
        # The reset link proved the owner: the failed guesses against the account no longer count.
        unlock_account(self.user.email)
        return response


class TokenForm(forms.Form):
    name = forms.CharField(
        label=_("Name"), max_length=60, help_text=_("Where you will use it, e.g. “Home Assistant”."), strip=True
    )


@household_required
def access_tokens(request: HouseholdRequest) -> HttpResponse:
    """The household's personal access tokens: list, make (the token is shown once, on this answer), revoke."""
    shown = None
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            _row, shown = tokens.issue(request.user, form.cleaned_data["name"], timezone.now())
        except tokens.TooManyTokens:
            form.add_error(None, _("You have %(n)d tokens already: revoke one first.") % {"n": tokens.MAX_ACTIVE})
        else:
            form = TokenForm()
    rows = PersonalAccessToken.objects.filter(user=request.user)
    context = {
        "form": form,
        "new_token": shown,
        "active": [row for row in rows if row.is_active],
        "revoked": [row for row in rows if not row.is_active][:20],
        "tz": request.household.timezone,
        "api_docs": "/api/docs/",
        "prefix": tokens.PREFIX,  # a token's first characters: code, not words
    }
    response = render(request, "accounts/access_tokens.html", context, status=400 if form.errors else 200)
    if shown:
        response["Cache-Control"] = "no-store"  # the one page that shows the token: never kept by a browser
    return response


@require_POST
@household_required
def revoke_access_token(request: HouseholdRequest, pk: int) -> HttpResponse:
    if not tokens.revoke(request.user, pk, timezone.now()):
        raise Http404("No such token.")
    messages.success(request, _("The token was revoked: it no longer opens your data."))
    return redirect("access-tokens")
