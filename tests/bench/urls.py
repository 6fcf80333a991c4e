"""The project's URLs plus ``/bench/bare``: a JSON view that touches no database.

It runs behind the same settings and middleware as the real endpoints, so the requests per second
it sustains are what Django and gunicorn alone allow on this machine: the ceiling for ingest.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt


@csrf_exempt
def bare(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"accepted": 1, "duplicates": 0, "rejected": []})


urlpatterns = [
    path("bench/bare", bare, name="bench-bare"),
    path("", include("energypay.urls")),
]
