from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AccountsConfig(AppConfig):
    name = "energypay.accounts"
    label = "accounts"
    verbose_name = "Accounts"
    default = True  # "energypay.accounts" in INSTALLED_APPS; SecureAdminConfig is named in full

    def ready(self) -> None:
        from energypay.accounts import checks  # noqa: F401 (registers the system checks)


class SecureAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with EnergyPay's site as ``admin.site``: every @admin.register lands on it."""

    default = False
    default_site = "energypay.accounts.admin_site.SecureAdminSite"
