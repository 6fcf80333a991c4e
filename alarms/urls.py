from __future__ import annotations

from django.urls import path

from alarms import views

urlpatterns = [
    path("alarms/", views.alarm_list, name="alarm-list"),
    path("alarms/new", views.alarm_create, name="alarm-create"),
    path("alarms/<int:pk>/", views.alarm_detail, name="alarm-detail"),
    path("alarms/<int:pk>/edit", views.alarm_edit, name="alarm-edit"),
    path("alarms/<int:pk>/pause", views.alarm_pause, name="alarm-pause"),
    path("alarms/<int:pk>/resume", views.alarm_resume, name="alarm-resume"),
    path("alarms/<int:pk>/mute", views.alarm_mute, name="alarm-mute"),
    path("alarms/<int:pk>/delete", views.alarm_delete, name="alarm-delete"),
]
