from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "energypay.ops"
    label = "ops"
    verbose_name = "Operations"
