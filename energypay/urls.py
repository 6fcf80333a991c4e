from __future__ import annotations

from django.contrib import admin
from django.urls import path

from meters import api as meters_api

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/readings", meters_api.readings, name="api-readings"),
]
