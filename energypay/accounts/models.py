from __future__ import annotations

from importlib import import_module

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.contrib.sessions.base_session import AbstractBaseSession
from django.db import models
from django.utils import timezone


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    @classmethod
    def login_spelling(cls, email: str) -> str:
        """The one spelling of an address, stored, looked up and throttled: "  Anna@Example.COM" is anna@example.com."""
        return cls.normalize_email(email.strip()).lower()

    def _create(self, email: str, password: str | None, **fields) -> User:
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.login_spelling(email), **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def get_by_natural_key(self, username: str) -> User:
        # Addresses are stored lowercased; people type them as they like ("Anna@Example.com").
        return self.get(**{self.model.USERNAME_FIELD: self.login_spelling(username)})

    def create_user(self, email: str, password: str | None = None, **fields) -> User:
        fields.setdefault("is_staff", False)
        fields.setdefault("is_superuser", False)
        return self._create(email, password, **fields)

    def create_superuser(self, email: str, password: str | None = None, **fields) -> User:
        fields.update(is_staff=True, is_superuser=True)
        return self._create(email, password, **fields)


class User(AbstractBaseUser, PermissionsMixin):
    """A person who logs in with an email address: a household member or utility staff."""

    email = models.EmailField(unique=True)
    full_name = models.CharField(max_length=150, blank=True)
    is_staff = models.BooleanField(default=False, help_text="Can log in to the admin.")
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ["email"]

    def __str__(self) -> str:
        return self.email

    def clean(self) -> None:
        super().clean()
        self.email = UserManager.login_spelling(self.email)


class Session(AbstractBaseSession):
    """A browser's session (``SESSION_ENGINE`` energypay.accounts.sessions), with its login as a column.

    Django's ``django_session`` keeps the user only inside the encoded data; the column lets the session
    be read with its user, household and tariff in one query. Deleting a user ends its sessions.
    """

    user = models.ForeignKey(User, null=True, blank=True, on_delete=models.CASCADE, related_name="+")

    class Meta(AbstractBaseSession.Meta):
        db_table = "accounts_session"

    @classmethod
    def get_session_store_class(cls):
        return import_module(settings.SESSION_ENGINE).SessionStore  # energypay.accounts.sessions


class PersonalAccessToken(models.Model):
    """A household's read-only key to its own data over /api/v1/me/ (energypay/readapi.py).

    The token (``pat_`` + 256 random bits) is shown once, when made; only its SHA-256 is kept, like a
    meter's. ``last_used_at`` is written at most once a minute per token (energypay/accounts/tokens.py),
    so reading a sensor every few seconds does not write a row each time. A revoked token is kept, marked,
    so the page can say when it stopped.
    """

    class Scope(models.TextChoices):
        READ = "read", "Read only"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="access_tokens")
    name = models.CharField(max_length=60)
    token_hash = models.CharField(max_length=64, unique=True)
    hint = models.CharField(max_length=8, help_text="The token's last characters, to tell tokens apart.")
    scope = models.CharField(max_length=10, choices=Scope.choices, default=Scope.READ)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.name} (pat_…{self.hint})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
