"""The one-time download of an import's meter tokens: issued when downloaded, sent once, never stored in clear.

Tokens are made at the moment of the download, in the transaction that claims it, and go nowhere
but the response: the meters keep only their hashes (meters.models.hash_token), no table, cache,
log or audit entry ever sees one. A download lost on its way (a closed tab) is not repeated: staff
issue new tokens from the meters list ("Issue a new token"), which stops any lost one from working.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction

from energypay.onboarding.models import ImportBatch
from meters.audit import record_action
from meters.models import TOKEN_PREFIX, Meter, hash_token

log = logging.getLogger(__name__)


class DownloadGone(ValueError):
    """Already downloaded, expired, or not the importer's: the message says which."""


@dataclass
class Issued:
    batch: ImportBatch
    tokens: list[tuple[str, str]]  # (serial, token), by serial


def available_until(batch: ImportBatch) -> datetime:
    return batch.created_at + timedelta(minutes=settings.ONBOARDING_TOKEN_DOWNLOAD_MINUTES)


def refusal(batch: ImportBatch, user, now: datetime) -> str | None:
    """Why this person cannot download the batch's tokens now, or None."""
    if batch.tokens_claimed_at is not None:
        return f"The tokens of this import were downloaded at {batch.tokens_claimed_at:%Y-%m-%d %H:%M:%S} UTC."
    if batch.created_by_id != user.pk:
        return "Only the staff member who ran the import can download its tokens."
    if now >= available_until(batch):
        return f"The download was available for {settings.ONBOARDING_TOKEN_DOWNLOAD_MINUTES} minutes after the import."
    if not batch.meter_ids:
        return "This import created no meters."
    return None


def claim(batch_id: int, *, acting_user, now: datetime) -> Issued:
    """Claim the download (once) and issue a token to each of the import's meters that has none.

    A meter given a token meanwhile (staff used "Issue a new token") keeps it and is left out.
    """
    with transaction.atomic(durable=True):
        batch = ImportBatch.objects.select_for_update().get(pk=batch_id)
        if why := refusal(batch, acting_user, now):
            raise DownloadGone(why)
        # The row lock above makes a second request wait and then see the claim.
        ImportBatch.objects.filter(pk=batch.pk, tokens_claimed_at__isnull=True).update(tokens_claimed_at=now)
        batch.tokens_claimed_at = now
        meters = list(Meter.objects.filter(pk__in=batch.meter_ids, token_hash__isnull=True).order_by("serial"))
        tokens = []
        for meter in meters:
            token = TOKEN_PREFIX + secrets.token_urlsafe(32)  # as Meter.issue_token makes them
            meter.token_hash = hash_token(token)
            tokens.append((meter.serial, token))
        Meter.objects.bulk_update(meters, ["token_hash"], batch_size=1_000)
        record_action(
            batch,
            "onboarding.issue_tokens",
            f"Issued tokens to {len(tokens):,} imported meters (downloaded once)",
            actor=acting_user,
            meters=len(tokens),
        )
    log.info("onboarding_tokens_issued batch=%s meters=%d", batch.pk, len(tokens))
    return Issued(batch, tokens)
