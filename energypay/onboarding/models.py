"""One bulk import of households and meters: who ran it, what it made, and its one-time token download."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ImportBatch(models.Model):
    """A committed import (energypay/onboarding/importing.py). Its meters' tokens are issued once, on download.

    No token is ever stored: the download issues them (only their hashes are kept, on the meters)
    and sends them in its response. ``tokens_claimed_at`` is claimed with a conditional UPDATE, so
    a second click, a second tab or a replayed request gets nothing.
    """

    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    file_name = models.CharField(max_length=255, blank=True)
    households = models.PositiveIntegerField(default=0)
    meters = models.PositiveIntegerField(default=0)
    meter_ids = models.JSONField(default=list, editable=False, help_text="The meters this import created.")
    tokens_claimed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "household import"
        verbose_name_plural = "household imports"
        # The staff settings and connections page (energypay/connections.py) has no model of its own.
        permissions = [("view_connections", "Can see the settings and connections page and test connections")]

    def __str__(self) -> str:
        return f"import #{self.pk}: {self.households} households, {self.meters} meters"
