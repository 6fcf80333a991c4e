"""The endpoint form staff fill in: a URL this server may call, and the event types to send there."""

from __future__ import annotations

from django import forms
from django.conf import settings

from energypay.webhooks import events, transport
from energypay.webhooks.models import WebhookEndpoint


class EndpointForm(forms.ModelForm):
    url = forms.URLField(
        label="URL", max_length=2000, assume_scheme="https", help_text="Where events are POSTed (https://...)."
    )
    events = forms.MultipleChoiceField(
        choices=events.CHOICES, widget=forms.CheckboxSelectMultiple, help_text="What to send there."
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["url", "description", "events", "active"]

    def clean_url(self) -> str:
        """A URL that could never be sent to is refused now, with the reason, rather than failing for days."""
        url = self.cleaned_data["url"].strip()
        try:
            transport.check(
                url,
                allow_private=settings.WEBHOOK_ALLOW_PRIVATE_TARGETS,
                allow_http=settings.WEBHOOK_ALLOW_HTTP,
                timeout=settings.WEBHOOK_CONNECT_TIMEOUT,
            )
        except transport.Refused as error:
            raise forms.ValidationError(f"This URL cannot receive webhooks: {error}.") from None
        return url

    def clean_events(self) -> list[str]:
        return sorted(self.cleaned_data["events"])
