from __future__ import annotations

from django.urls import path

from energypay.notifications import views

urlpatterns = [
    path("notifications/", views.notification_list, name="notifications"),
    path("notifications/preferences", views.save_preferences, name="notification-preferences"),
]
