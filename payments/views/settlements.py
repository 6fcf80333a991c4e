from __future__ import annotations

from django.http import Http404


def settlement_list(request, *args, **kwargs):  # PLACEHOLDER: replaced by its owner
    raise Http404


def settlement_detail(request, *args, **kwargs):  # PLACEHOLDER: replaced by its owner
    raise Http404


def settlement_state(request, *args, **kwargs):  # PLACEHOLDER: replaced by its owner
    raise Http404


def settlements_csv(request, *args, **kwargs):  # PLACEHOLDER: replaced by its owner
    raise Http404
