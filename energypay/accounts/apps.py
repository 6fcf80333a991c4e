from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "energypay.accounts"
    label = "accounts"
    verbose_name = "Accounts"
