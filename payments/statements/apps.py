from django.apps import AppConfig


class StatementsConfig(AppConfig):
    name = "payments.statements"
    label = "statements"
    verbose_name = "Statements"

    def ready(self) -> None:
        from payments.statements import checks  # noqa: F401 (registers the system checks)
