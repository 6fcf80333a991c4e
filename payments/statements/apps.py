from django.apps import AppConfig


class StatementsConfig(AppConfig):
    name = "payments.statements"
    label = "statements"
    verbose_name = "Statements"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from payments.statements import checks  # noqa: F401 (registers the system checks)
        from payments.statements.models import BillDisclosure, Distributor

        # Staff-maintained tables the bill prints: who changed what, and when (the admin's "Audit log").
        auditlog.register(BillDisclosure)
        auditlog.register(Distributor)
