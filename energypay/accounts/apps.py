from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class AccountsConfig(AppConfig):
    name = "energypay.accounts"
    label = "accounts"
    verbose_name = "Accounts"
    default = True  # "energypay.accounts" in INSTALLED_APPS; SecureAdminConfig is named in full

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from energypay.accounts import checks  # noqa: F401 (registers the system checks)
        from energypay.accounts.models import User

        # The audit trail (meters/audit.py): who gave whom staff rights. Never the password hash; logins are
        # axes' access log, not changes.
        auditlog.register(User, exclude_fields=["password", "last_login"], m2m_fields={"groups", "user_permissions"})


class SecureAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with EnergyPay's site as ``admin.site``: every @admin.register lands on it."""

    default = False
    default_site = "energypay.accounts.admin_site.SecureAdminSite"
