"""Account views beyond Django's own: a completed password reset also lifts the account's login lockout."""

from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.http import HttpResponse

from energypay.accounts.lockout import unlock_account


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    def form_valid(self, form) -> HttpResponse:
        response = super().form_valid(form)
        # The reset link proved the owner: the failed guesses against the account no longer count.
        unlock_account(self.user.email)
        return response
