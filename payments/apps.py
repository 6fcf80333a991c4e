from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from payments import checks  # noqa: F401 (registers the system checks)
        from payments.models import Wallet

        # The audit trail (meters/audit.py): a wallet's rows are written by code, yet staff open them in the admin.
        auditlog.register(Wallet)
