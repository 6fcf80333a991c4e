from __future__ import annotations

from django.shortcuts import render

from energypay.access import household_required


@household_required
def dashboard(request):  # PLACEHOLDER: the dashboard helper replaces this
    return render(request, "base.html")
