from __future__ import annotations

from django.http import Http404


def community(request):  # PLACEHOLDER
    raise Http404
