from django.apps import AppConfig


class EnergyPayConfig(AppConfig):
    """The top floor as an installed app, so the admin finds energypay/admin.py. It has no models."""

    name = "energypay"
    label = "energypay"
    verbose_name = "EnergyPay"
