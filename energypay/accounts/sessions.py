"""Sessions in the database, read with their login, household and tariff in one query (``SESSION_ENGINE``).

Every household page needs the session, its user (Django compares the session's password hash with
the user's on every request) and the user's household with its tariff (``meters.access.household_of``;
the usage chart's cache key needs the household's ``usage_version`` and the tariff's revision). Read
apart, that is three queries and most of a cached chart's time. Here the session's row carries its
user's id as a column (``accounts.Session``, Django's documented way to extend the database engine),
so ``load()`` joins the four tables in one statement and keeps the user it found on the store;
``energypay.accounts.backends.HouseholdLoginBackend`` hands that user to Django's ``get_user``, which
checks it exactly as it checks any other.

The session stays in the database alone: a logout deletes its row and no copy survives anywhere, a
password change ends the other sessions of the login at once (their hash no longer matches), and a
cache that fails or is flushed changes nothing. Signed-cookie sessions would cost no lookup, but a
logout could not end a copied cookie; cached sessions (``cached_db``) would cost a Redis round trip
as well as the user's query, and a copy can outlive its logout.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from asgiref.sync import sync_to_async
from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore as DBStore
from django.db import connections, router
from django.db.models import Model
from django.db.models.expressions import Col
from django.utils import timezone

from energypay.accounts.models import Session
from lib import prepared
from meters.models import Household, Tariff


class SessionStore(DBStore):
    # The session's user as load() found it, its household (or none: staff) and tariff cached on it;
    # None when the session has no user or was not loaded by this store.
    loaded_user: Model | None = None

    @classmethod
    def get_model_class(cls):
        return Session

    def create_model_instance(self, data: dict):
        session = super().create_model_instance(data)
        session.user_id = _user_id(data)
        return session

    async def acreate_model_instance(self, data: dict):
        session = await super().acreate_model_instance(data)
        session.user_id = _user_id(data)
        return session

    def load(self) -> dict:
        found = _load(self.session_key)
        if found is None:  # no such session, or expired: a new one will get a new key
            self._session_key = None
            return {}
        session_data, self.loaded_user = found
        return self.decode(session_data)

    # No view here is async; should one be, its session is read the same way.
    async def aload(self) -> dict:
        return await sync_to_async(self.load)()


def _user_id(data: dict) -> int | None:
    """The logged-in user's id in the session's data (django.contrib.auth's key), for the column."""
    try:
        return int(data[SESSION_KEY])
    except (KeyError, TypeError, ValueError):
        return None


def _load(session_key: str) -> tuple[str, Model | None] | None:
    """The session's data and its user, with the household and tariff cached on it, in one query."""
    alias = router.db_for_read(Session)
    connection = connections[alias]
    sql, parts = _session_query(alias)
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    rows = prepared.fetch(connection, "energypay_session", sql, [session_key, now])  # planned once (lib/prepared.py)
    if not rows:
        return None
    row = rows[0]
    objects = []
    for part in parts:
        values = list(row[part.start : part.start + len(part.attnames)])
        if values[part.pk] is None:  # LEFT JOIN: a session without a login, or a login without a household
            objects.append(None)
            continue
        for position, converters, column in part.converters:
            for converter in converters:
                values[position] = converter(values[position], column, connection)
        objects.append(part.model.from_db(alias, part.attnames, values))
    user, household, tariff = objects
    if user is not None:
        get_user_model().household.related.set_cached_value(user, household)
    if household is not None:
        Household.user.field.set_cached_value(household, user)
        Household.tariff.field.set_cached_value(household, tariff)
    return row[0], user


@dataclass(frozen=True)
class _Part:
    """One model's columns in ``_load``'s row: where they start, its pk's place, the converters they need."""

    model: type[Model]
    start: int
    attnames: list[str]
    pk: int
    converters: list[tuple[int, list, Col]]


@cache
def _session_query(alias: str) -> tuple[str, list[_Part]]:
    """The SQL of ``_load`` and how to read its row, written once per process and database from the models."""
    connection = connections[alias]
    quote = connection.ops.quote_name
    session_model, user_model = Session, get_user_model()
    columns, parts = ["s.session_data"], []
    for model, table in ((user_model, "u"), (Household, "h"), (Tariff, "t")):
        fields = list(model._meta.concrete_fields)
        converters = []
        for position, field in enumerate(fields):
            column = field.get_col(table)
            # What the ORM applies to the same column (SQLite's text dates and UUIDs, JSON...).
            found = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
            if found:
                converters.append((position, found, column))
        pk = next(position for position, field in enumerate(fields) if field.primary_key)
        parts.append(_Part(model, len(columns), [field.attname for field in fields], pk, converters))
        columns += [f"{table}.{quote(field.column)}" for field in fields]

    def table(model: type[Model]) -> str:
        return quote(model._meta.db_table)

    def column(model: type[Model], name: str) -> str:
        return quote(model._meta.get_field(name).column)

    def pk(model: type[Model]) -> str:
        return quote(model._meta.pk.column)

    sql = (
        f"SELECT {', '.join(columns)} FROM {table(session_model)} s "  # noqa: S608 (names from the models, no input)
        f"LEFT JOIN {table(user_model)} u ON u.{pk(user_model)} = s.{column(session_model, 'user')} "
        f"LEFT JOIN {table(Household)} h ON h.{column(Household, 'user')} = u.{pk(user_model)} "
        f"LEFT JOIN {table(Tariff)} t ON t.{pk(Tariff)} = h.{column(Household, 'tariff')} "
        f"WHERE s.{pk(session_model)} = %s AND s.{column(session_model, 'expire_date')} > %s"
    )
    return sql, parts
