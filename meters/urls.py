from __future__ import annotations

from django.urls import path

from meters import views

urlpatterns = [
    path("usage.csv", views.usage_csv, name="usage-csv"),
]
