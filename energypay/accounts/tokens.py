"""Personal access tokens: made, revoked and checked here; the household read API uses them (energypay/readapi.py).

- A token is ``pat_`` + 43 URL-safe characters (256 random bits), shown once; only its SHA-256 is kept
  (a fast hash is enough for 256 random bits, and it is looked up on every request, as a meter's is).
- Each token has a request budget per minute (``API_TOKEN_RATE_LIMIT_PER_MINUTE``), counted in the cache
  (Redis in production, so every web process shares it); over it the answer is 429 with ``Retry-After``.
  A cache that fails lets the request through rather than lock every household out.
- ``last_used_at`` is written at most once a minute per token: a conditional UPDATE that only a token
  not seen for a minute matches, so a sensor polling every few seconds costs no write per request.
"""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db.models import Q

from energypay.accounts.models import PersonalAccessToken, User

log = logging.getLogger(__name__)

PREFIX = "pat_"
MAX_ACTIVE = 10  # per login: enough for a home server, a phone and a spreadsheet
TOUCH_EVERY = timedelta(minutes=1)
WINDOW_SECONDS = 60


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TooManyTokens(Exception):
    pass


def issue(user: User, name: str, now: datetime) -> tuple[PersonalAccessToken, str]:
    """A new read-only token for ``user``: the row and the token text, which is not kept anywhere."""
    if PersonalAccessToken.objects.filter(user=user, revoked_at__isnull=True).count() >= MAX_ACTIVE:
        raise TooManyTokens
    token = PREFIX + secrets.token_urlsafe(32)
    row = PersonalAccessToken.objects.create(
        user=user, name=name.strip(), token_hash=hash_token(token), hint=token[-4:], created_at=now
    )
    return row, token


def revoke(user: User, token_id: int, now: datetime) -> bool:
    """Revoke one of ``user``'s tokens (another login's id changes nothing); whether it was live."""
    return (
        PersonalAccessToken.objects.filter(pk=token_id, user=user, revoked_at__isnull=True).update(revoked_at=now) == 1
    )


def bearer(authorization: str) -> str:
    scheme, _, token = authorization.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def authenticate(token: str) -> PersonalAccessToken | None:
    """The live token ``token`` is, with its user, household and tariff (one query); None for anything else."""
    if not token.startswith(PREFIX) or len(token) > 200:
        return None
    row = (
        PersonalAccessToken.objects.select_related("user__household__tariff")
        .filter(token_hash=hash_token(token), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if row is None or not hasattr(row.user, "household"):
        return None
    return row


def touch(row: PersonalAccessToken, now: datetime) -> None:
    """Record the use, unless the token was seen less than a minute ago (no write then)."""
    if row.last_used_at is not None and now - row.last_used_at < TOUCH_EVERY:
        return
    stale = Q(last_used_at__isnull=True) | Q(last_used_at__lt=now - TOUCH_EVERY)
    PersonalAccessToken.objects.filter(stale, pk=row.pk).update(last_used_at=now)


def charge(row: PersonalAccessToken, now: datetime) -> int | None:
    """Count one request on the token's budget; seconds to wait when over it, else None."""
    window = int(now.timestamp() // WINDOW_SECONDS)
    key = f"pat-rate:{row.pk}:{window}"
    try:
        cache.add(key, 0, timeout=WINDOW_SECONDS * 2)
        count = cache.incr(key)
    except Exception:  # a cache that is away must not lock every household out
        log.warning("token_rate_cache_failed", exc_info=True)
        return None
    if count > settings.API_TOKEN_RATE_LIMIT_PER_MINUTE:
        return max(1, math.ceil((window + 1) * WINDOW_SECONDS - now.timestamp()))
    return None
