from __future__ import annotations

from django.http import Http404


def usage_csv(request):  # PLACEHOLDER
    raise Http404
