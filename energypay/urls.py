from __future__ import annotations

from django.contrib import admin
from django.urls import path
from django.views.generic import RedirectView

from meters import api as meters_api

urlpatterns = [
    # Until the household dashboard exists, the front door is the staff admin.
    path("", RedirectView.as_view(pattern_name="admin:index", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/v1/readings", meters_api.readings, name="api-readings"),
]
