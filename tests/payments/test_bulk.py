"""payments.bulk: a chunk's rows written and claimed at once, the same on PostgreSQL (COPY, arrays) and SQLite."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine
from django.db import IntegrityError, transaction

from payments import bulk
from payments.models import LedgerOutput, LedgerTransaction, Utxo

NOW = datetime(2026, 11, 22, 14, 7, tzinfo=UTC)
FIELDS = ("txid", "raw", "fee", "is_faucet", "accepted_at")


def transactions(*txids: str) -> list[tuple]:
    return [(txid, f"raw-{txid}", n, False, NOW) for n, txid in enumerate(txids)]


def outputs(count: int) -> list[int]:
    [parent] = bulk.insert(LedgerTransaction, FIELDS, transactions("ab" * 32), ids=True)
    rows = [(parent, vout, 1_000 + vout, "76a9", "") for vout in range(count)]
    bulk.insert(LedgerOutput, ("transaction_id", "vout", "satoshis", "locking_script", "address"), rows)
    return list(LedgerOutput.objects.filter(transaction_id=parent).order_by("vout").values_list("pk", flat=True))


def test_insert_returns_the_new_ids_in_the_order_of_the_rows(db):
    ids = bulk.insert(LedgerTransaction, FIELDS, transactions("c1", "a2", "b3"), ids=True)

    stored = dict(LedgerTransaction.objects.values_list("pk", "txid"))
    assert [stored[pk] for pk in ids] == ["c1", "a2", "b3"]
    assert ids == sorted(ids)  # drawn from the table's own sequence, as an INSERT would


def test_insert_gives_the_fields_left_out_what_the_orm_would(db):
    [parent] = bulk.insert(LedgerTransaction, FIELDS, transactions("cd" * 32), ids=True)
    wallet_id = _wallet()
    with time_machine.travel(NOW, tick=False):
        bulk.insert(Utxo, ("wallet_id", "txid", "vout", "satoshis", "raw_parent"), [(wallet_id, "cd" * 32, 0, 5, "00")])

    coin = Utxo.objects.get()
    assert (coin.state, coin.confirmed, coin.reserved_by_id, coin.reserved_by_pass_id) == (
        "available",
        False,
        None,
        None,
    )
    assert coin.created_at == coin.updated_at == NOW
    assert LedgerTransaction.objects.get(pk=parent).block_id is None


def test_insert_of_a_row_breaking_a_constraint_raises_djangos_integrity_error_and_writes_nothing(db):
    bulk.insert(LedgerTransaction, FIELDS, transactions("dup"))

    with pytest.raises(IntegrityError), transaction.atomic():
        bulk.insert(LedgerTransaction, FIELDS, transactions("new", "dup"), ids=True)

    assert list(LedgerTransaction.objects.values_list("txid", flat=True)) == ["dup"]


def test_insert_of_nothing_writes_nothing(db):
    assert bulk.insert(LedgerTransaction, FIELDS, [], ids=True) == []
    assert not LedgerTransaction.objects.exists()


def test_assign_sets_each_rows_own_value_where_the_condition_holds(db):
    first, second, third = outputs(3)
    spenders = bulk.insert(LedgerTransaction, FIELDS, transactions("s1", "s2", "s3"), ids=True)

    changed = bulk.assign(
        LedgerOutput, "spent_by_id", list(zip([first, third], spenders, strict=False)), where={"spent_by_id": None}
    )

    assert changed == 2
    assert dict(LedgerOutput.objects.values_list("pk", "spent_by_id")) == {
        first: spenders[0],
        second: None,
        third: spenders[1],
    }


def test_assign_leaves_a_row_claimed_meanwhile_alone_and_says_so_in_its_count(db):
    first, second = outputs(2)
    earlier, late_one, late_two = bulk.insert(LedgerTransaction, FIELDS, transactions("e", "l1", "l2"), ids=True)
    LedgerOutput.objects.filter(pk=second).update(spent_by_id=earlier)

    changed = bulk.assign(
        LedgerOutput, "spent_by_id", [(first, late_one), (second, late_two)], where={"spent_by_id": None}
    )

    assert changed == 1  # short of the two asked for: the caller rolls back rather than take the second
    assert dict(LedgerOutput.objects.values_list("pk", "spent_by_id")) == {first: late_one, second: earlier}


def test_assign_sets_the_other_fields_on_the_rows_it_changes(db):
    wallet_id = _wallet()
    coins = [
        Utxo.objects.create(wallet_id=wallet_id, txid="ee" * 32, vout=vout, satoshis=9, raw_parent="00")
        for vout in range(2)
    ]
    Utxo.objects.filter(pk=coins[1].pk).update(state=Utxo.State.SPENT)
    settlement_id = _settlement(wallet_id)

    changed = bulk.assign(
        Utxo,
        "reserved_by_id",
        [(coin.pk, settlement_id) for coin in coins],
        where={"state": Utxo.State.AVAILABLE},
        also={"state": Utxo.State.RESERVED},
    )

    assert changed == 1
    assert sorted(Utxo.objects.values_list("state", "reserved_by_id")) == [("reserved", settlement_id), ("spent", None)]


def test_among_selects_what_in_selects(db):
    ids = bulk.insert(LedgerTransaction, FIELDS, transactions("t1", "t2", "t3", "t4"), ids=True)

    assert sorted(LedgerTransaction.objects.filter(bulk.among("pk", ids[1:3])).values_list("pk", flat=True)) == ids[1:3]
    assert sorted(
        LedgerTransaction.objects.filter(bulk.among("txid", {"t4", "t1", "nope"})).values_list("txid", flat=True)
    ) == ["t1", "t4"]
    assert not LedgerTransaction.objects.filter(bulk.among("pk", [])).exists()
    # Texts an array literal would have to quote are sent as an array parameter instead.
    odd = bulk.insert(LedgerTransaction, FIELDS, transactions('a "quoted", {braced} one'), ids=True)
    assert list(
        LedgerTransaction.objects.filter(bulk.among("txid", ['a "quoted", {braced} one', "t2"]))
        .order_by("pk")
        .values_list("pk", flat=True)
    ) == [ids[1], *odd]
    assert LedgerTransaction.objects.filter(bulk.among("pk", ids[:2])).update(fee=7) == 2


def _wallet() -> int:
    from energypay.accounts.models import User
    from meters.models import Household, Tariff
    from payments.wallets import open_wallet

    user = User.objects.create_user("bulk@example.com", "pw-unused-123")
    household = Household.objects.create(user=user, name="Bulk", tariff=Tariff.objects.create(name="Bulk"))
    return open_wallet(household).pk


def _settlement(wallet_id: int) -> int:
    from payments.models import PriceQuote, Settlement, Wallet

    quote = PriceQuote.objects.create(source="fixed", bsv_eur=30, fetched_at=NOW)
    household_id = Wallet.objects.get(pk=wallet_id).household_id
    return Settlement.objects.create(
        household_id=household_id,
        period_start=NOW,
        period_end=NOW,
        kwh=1,
        eur=1,
        quote=quote,
        satoshis=1,
        fee_satoshis=1,
        txid="ff" * 32,
        raw_tx="00",
    ).pk
