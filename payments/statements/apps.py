from django.apps import AppConfig


class StatementsConfig(AppConfig):
    name = "payments.statements"
    label = "statements"
    verbose_name = "Statements"
