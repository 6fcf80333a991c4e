from django.apps import AppConfig


class WebhooksConfig(AppConfig):
    name = "energypay.webhooks"
    label = "webhooks"
    verbose_name = "Webhooks"

    def ready(self) -> None:
        from energypay.webhooks import audit  # noqa: F401 (registers the endpoint with the audit trail)
