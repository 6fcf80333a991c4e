from __future__ import annotations

from django.http import Http404


def community_page(request, *args, **kwargs):  # PLACEHOLDER: replaced by its owner
    raise Http404


def unlock(request, *args, **kwargs):  # PLACEHOLDER: replaced by its owner
    raise Http404
