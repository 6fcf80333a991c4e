from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "energypay.notifications"
    label = "notifications"
    verbose_name = "Notifications"
