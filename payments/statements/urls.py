from __future__ import annotations

from django.urls import path

from payments.statements import views

urlpatterns = [
    path("statements/", views.statement_list, name="statement-list"),
    path("statements/<int:pk>/", views.statement_detail, name="statement-detail"),
    path("statements/<int:pk>.pdf", views.statement_pdf, name="statement-pdf"),
    path("statements/<int:pk>.csv", views.statement_csv, name="statement-csv"),
    path("statements/<int:pk>.json", views.statement_json, name="statement-json"),
]
