from django.apps import AppConfig


class MetersConfig(AppConfig):
    name = "meters"

    def ready(self) -> None:
        from meters import audit

        audit.register()
