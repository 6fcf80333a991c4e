"""lib/prepared.py: the hottest queries are planned once per PostgreSQL connection, and answer as the plain query."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from lib import prepared

SQL = "SELECT %s + 1, %s"


def statements(captured) -> list[str]:
    return [query["sql"].split()[0] for query in captured.captured_queries]


@pytest.mark.django_db
def test_it_answers_as_the_plain_query():
    assert prepared.fetch(connection, "test_sum", SQL, [41, "x"]) == [(42, "x")]


postgresql = pytest.mark.skipif("connection.vendor != 'postgresql'")


@postgresql
@pytest.mark.django_db(transaction=True)  # outside a transaction, as a request runs
def test_on_postgresql_a_statement_is_prepared_once_per_connection():
    connection.close()
    with CaptureQueriesContext(connection) as first:
        assert prepared.fetch(connection, "test_sum", SQL, [1, "a"]) == [(2, "a")]
    with CaptureQueriesContext(connection) as second:
        assert prepared.fetch(connection, "test_sum", SQL, [2, "b"]) == [(3, "b")]
    assert (statements(first), statements(second)) == (["PREPARE", "EXECUTE"], ["EXECUTE"])
    connection.close()  # a new connection has nothing prepared
    with CaptureQueriesContext(connection) as third:
        assert prepared.fetch(connection, "test_sum", SQL, [3, "c"]) == [(4, "c")]
    assert statements(third) == ["PREPARE", "EXECUTE"]


@postgresql
@pytest.mark.django_db(transaction=True)
def test_on_postgresql_a_statement_gone_missing_is_prepared_again():
    prepared.fetch(connection, "test_sum", SQL, [1, "a"])
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")  # as a pooler's DISCARD ALL between two clients would
    assert prepared.fetch(connection, "test_sum", SQL, [5, "e"]) == [(6, "e")]


@postgresql
@pytest.mark.django_db(transaction=True)
def test_on_postgresql_another_sql_under_the_same_name_is_another_statement():
    assert prepared.fetch(connection, "test_sum", SQL, [1, "a"]) == [(2, "a")]
    assert prepared.fetch(connection, "test_sum", "SELECT %s * 10, %s", [1, "a"]) == [(10, "a")]


@postgresql
@pytest.mark.django_db(transaction=True)
def test_inside_a_transaction_the_plain_query_is_sent():
    with transaction.atomic(), CaptureQueriesContext(connection) as captured:
        assert prepared.fetch(connection, "test_sum", SQL, [1, "a"]) == [(2, "a")]
    assert statements(captured) == ["SELECT"]
