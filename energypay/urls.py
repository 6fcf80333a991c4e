from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from energypay import connections, health, metrics, readapi, status, views
from energypay.accounts.views import PasswordResetConfirmView, access_tokens, revoke_access_token
from energypay.i18n import PasswordResetForm
from meters import api as meters_api
from payments import arc_callbacks, x402

auth_patterns = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path(
        "password-reset/",
        auth_views.PasswordResetView.as_view(
            form_class=PasswordResetForm,
            email_template_name="registration/password_reset_email.txt",
            subject_template_name="registration/password_reset_subject.txt",
        ),
        name="password_reset",
    ),
    path("password-reset/sent/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "password-reset/<uidb64>/<token>/",
        PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path("password-reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
]

urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("comparison", views.comparison, name="dashboard-comparison"),
    path("language", views.set_language, name="set_language"),
    *auth_patterns,
    path("", include("meters.urls")),
    path("", include("payments.urls")),
    path("", include("payments.statements.urls")),
    path("", include("alarms.urls")),
    path("", include("energypay.notifications.urls")),
    path("settings/tokens/", access_tokens, name="access-tokens"),
    path("settings/tokens/<int:pk>/revoke", revoke_access_token, name="access-token-revoke"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("healthz", health.healthz, name="healthz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("admin/status/", admin.site.admin_view(status.status_page), name="admin-status"),
    path("admin/settings/", admin.site.admin_view(connections.settings_page), name="admin-settings"),
    path(
        "admin/settings/test/<slug:name>/",
        admin.site.admin_view(connections.test_connection),
        name="admin-settings-test",
    ),
    path("admin/", admin.site.urls),
    path("api/v1/readings", meters_api.readings, name="api-readings"),
    path("api/v1/community", x402.community, name="api-community"),
    path("api/v1/arc/callback", arc_callbacks.arc_callback, name="api-arc-callback"),
    path("api/v1/me/usage", readapi.usage, name="api-me-usage"),
    path("api/v1/me/balance", readapi.balance, name="api-me-balance"),
    path("api/v1/me/settlements", readapi.settlements, name="api-me-settlements"),
    path("api/docs/", views.api_docs, name="api-docs"),
    path("api/docs/openapi.yaml", views.openapi_document, name="api-openapi"),
]
