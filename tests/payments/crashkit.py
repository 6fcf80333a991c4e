"""Shared pieces of the failure tests: a town of funded households, child processes, and the books.

- ``build_town``: households, meters, wallets and one confirmed faucet coin each, inserted in bulk
  (tests/bench/settlement.py does the same for 10,000): the settlement under test is what is slow,
  not the setup;
- ``add_hour``: one priced, open energy line per household for an hour;
- ``child_env`` / ``database_url``: a separate process on the test database (the tests that use
  them run with ``transaction=True``, so a child sees committed rows);
- ``check_books``: what must hold after any crash once the run and the sweeper finished: each
  usage line paid at most once, every funded household paid exactly what it owes, no coin spent by
  two live settlements, the ledger holding one transaction per live settlement and nothing else,
  usage cost = settled + unsettled, and each wallet's balance equal to what the ledger holds for it.

``python -m tests.payments.crashkit settle <period end> <chunk>`` is the child: it settles every
household owing before ``period end`` as the hourly run does (``runs.prepare_run`` then
``runs.settle_households``), ``chunk`` households at a time, printing ``ready`` once Django is loaded
(so a kill can be timed from the start of the work, not of the interpreter), ``<point> <seconds>`` at
each point of POINTS a chunk passes, and ``done <seconds> <tally>`` at the end. With
``CRASH_AT=<point>:<n>`` in its environment it sends itself SIGKILL the n-th time it reaches the point.

``python -m tests.payments.crashkit withdraw <household id> <token>`` confirms a withdrawal preview (below).

``python -m tests.payments.crashkit buy <household id>`` is the other kind of outgoing payment: the
household's one click on "unlock" (``passes.buy_pass``, then ``broadcast.send_one``), with the points
``signed`` (the pass and its coins committed, nothing sent) and ``on_ledger`` (the ledger took it,
the reply is not recorded).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from urllib.parse import quote as urlquote

FUNDS = 20_000_000  # satoshis per funded wallet: EUR 6 at 30 EUR/BSV, far more than the hours settled
BSV_EUR = Decimal("30")
RATE = Decimal("0.250000")  # EUR/kWh
BATCH = 1_000  # rows per INSERT


def database_url() -> str:
    """DATABASE_URL for the database this process is connected to (the test database under pytest)."""
    from django.db import connection

    db = connection.settings_dict
    if connection.vendor != "postgresql":
        raise RuntimeError("child processes share the test database only on PostgreSQL")
    user = urlquote(db["USER"] or "", safe="")
    password = f":{urlquote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else ""
    host = db["HOST"] or "127.0.0.1"
    port = f":{db['PORT']}" if db["PORT"] else ""
    return f"postgres://{user}{password}@{host}{port}/{urlquote(db['NAME'], safe='')}"


def child_env(**overrides: str) -> dict[str, str]:
    """This process's environment for a child on the same database.

    The child's Celery broker is in-memory unless told otherwise: the alarm hook a settled chunk
    calls must not leave tasks in a broker that some other database's worker reads.
    """
    env = {**os.environ, "DATABASE_URL": database_url(), "CELERY_BROKER_URL": "memory://", "LOG_LEVEL": "WARNING"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    env["DJANGO_SETTINGS_MODULE"] = "energypay.settings"
    env.update(overrides)
    return env


# --- The town ------------------------------------------------------------------------------------


@dataclass
class Town:
    household_ids: list[int]
    funded: set[int]
    meters: list  # one Meter per household, in household order
    version: object  # the flat TariffVersion every line is priced with


def build_town(count: int, unfunded: int = 0, funds: int = FUNDS) -> Town:
    """``count`` households with wallets; all but the last ``unfunded`` hold one confirmed coin of ``funds``."""
    from bsv import P2PKH, Script, Transaction, TransactionInput, TransactionOutput
    from django.contrib.auth.hashers import UNUSABLE_PASSWORD_PREFIX
    from django.utils import timezone

    from energypay.accounts.models import User
    from meters.models import Household, Meter, Tariff, TariffVersion
    from payments.models import LedgerOutput, LedgerTransaction, Utxo, Wallet
    from payments.networks.local import NULL_INDEX, NULL_TXID, LocalLedger
    from payments.wallets import open_missing_wallets

    tag = secrets.token_hex(3)
    tariff = Tariff.objects.create(name=f"Crash flat {tag}")
    version = TariffVersion.objects.create(
        tariff=tariff, valid_from=timezone.now() - timedelta(days=30), kind=TariffVersion.Kind.FLAT, flat_rate=RATE
    )
    users = User.objects.bulk_create(
        [User(email=f"crash-{tag}-{n}@example.com", password=UNUSABLE_PASSWORD_PREFIX) for n in range(count)],
        batch_size=BATCH,
    )
    households = Household.objects.bulk_create(
        [Household(user=user, name=f"Crash {tag} {n}", tariff=tariff) for n, user in enumerate(users)],
        batch_size=BATCH,
    )
    meters = Meter.objects.bulk_create(
        [Meter(serial=f"CR-{tag}-{n:05d}", household=h) for n, h in enumerate(households)], batch_size=BATCH
    )
    open_missing_wallets()
    ids = [household.pk for household in households]
    funded_ids = ids[: count - unfunded]
    wallets = list(Wallet.objects.filter(household_id__in=funded_ids).order_by("household_id"))
    # The transaction LocalLedger.fund makes (a coinbase-like input with a random nonce), in bulk.
    built = []
    for wallet in wallets:
        lock = P2PKH().lock(wallet.address)
        nonce = secrets.token_bytes(16)
        tx = Transaction(
            [
                TransactionInput(
                    source_txid=NULL_TXID,
                    source_output_index=NULL_INDEX,
                    unlocking_script=Script(bytes([len(nonce)]) + nonce),
                )
            ],
            [TransactionOutput(lock, funds)],
        )
        built.append((wallet, tx.txid(), tx.hex(), lock.hex()))
    now = timezone.now()
    rows = LedgerTransaction.objects.bulk_create(
        [LedgerTransaction(txid=txid, raw=raw, fee=0, is_faucet=True, accepted_at=now) for _, txid, raw, _ in built],
        batch_size=BATCH,
    )
    LedgerOutput.objects.bulk_create(
        [
            LedgerOutput(transaction=row, vout=0, satoshis=funds, locking_script=lock, address=wallet.address)
            for row, (wallet, _, _, lock) in zip(rows, built, strict=True)
        ],
        batch_size=BATCH,
    )
    LocalLedger().mine()
    # What sync_coins records for a coin in a block.
    Utxo.objects.bulk_create(
        [
            Utxo(wallet=wallet, txid=txid, vout=0, satoshis=funds, raw_parent=raw, confirmed=True)
            for wallet, txid, raw, _ in built
        ],
        batch_size=BATCH,
    )
    return Town(ids, set(funded_ids), meters, version)


def add_hour(town: Town, hour_start: datetime) -> None:
    """One open energy line per household for ``hour_start``; amounts differ between households."""
    from meters.models import HourlyUsage

    lines = []
    for n, meter in enumerate(town.meters):
        kwh = Decimal("0.1") + Decimal(n % 13) * Decimal("0.07") + Decimal(hour_start.hour % 5) / 100
        lines.append(
            HourlyUsage(
                household_id=meter.household_id,
                meter=meter,
                kind=HourlyUsage.Kind.ENERGY,
                hour_start=hour_start,
                kwh=kwh,
                tariff_version=town.version,
                rate=RATE,
                cost_eur=(kwh * RATE).quantize(Decimal("0.000001")),
            )
        )
    HourlyUsage.objects.bulk_create(lines, batch_size=BATCH)


def fresh_quote() -> None:
    from django.utils import timezone

    from payments.models import PriceQuote

    PriceQuote.objects.create(source="fixed", bsv_eur=BSV_EUR, fetched_at=timezone.now())


# --- The books -----------------------------------------------------------------------------------


def check_books(town: Town, period_end: datetime) -> list[str]:
    """Every way the books can be wrong after the run and the sweeper finished; [] when they are right."""
    from bsv import Transaction
    from django.db.models import Sum

    from meters.models import HourlyUsage
    from payments import keys
    from payments.models import LedgerOutput, LedgerTransaction, Settlement, SettlementLine, Utxo, Wallet

    problems: list[str] = []
    live = Settlement.objects.filter(household_id__in=town.household_ids).exclude(state__in=Settlement.FAILED)
    settlements = list(live.values_list("pk", "household_id", "eur", "satoshis", "txid", "raw_tx", "state"))
    live_ids = {row[0] for row in settlements}

    # Nobody paid twice: a usage line in at most one live settlement; settled exactly when paid.
    paying = list(
        SettlementLine.objects.filter(released=False, usage__household_id__in=town.household_ids).values_list(
            "usage_id", "settlement_id", "eur"
        )
    )
    twice = [usage for usage, count in Counter(usage for usage, _, _ in paying).items() if count > 1]
    if twice:
        problems.append(f"{len(twice)} usage lines in more than one live settlement, e.g. {twice[:5]}")
    dead = [row for row in paying if row[1] not in live_ids]
    if dead:
        problems.append(f"{len(dead)} unreleased lines belong to failed settlements, e.g. {dead[:3]}")
    usage = list(
        HourlyUsage.objects.filter(household_id__in=town.household_ids).values_list(
            "pk", "household_id", "hour_start", "cost_eur", "settled_at"
        )
    )
    settled = {pk for pk, _, _, _, settled_at in usage if settled_at is not None}
    paid_lines = {usage_id for usage_id, settlement_id, _ in paying if settlement_id in live_ids}
    if settled != paid_lines:
        problems.append(
            f"settled usage lines and paid lines differ: {len(settled - paid_lines)} settled but unpaid, "
            f"{len(paid_lines - settled)} paid but open"
        )
    line_eur = defaultdict(Decimal)
    for _, settlement_id, eur in paying:
        line_eur[settlement_id] += eur
    wrong_total = [pk for pk, _, eur, *_ in settlements if line_eur[pk] != eur]
    if wrong_total:
        problems.append(f"{len(wrong_total)} settlements whose EUR is not the sum of their lines: {wrong_total[:5]}")

    # Nobody missed, nobody overpaid: each funded household paid exactly what it owes before the period end.
    owed, paid = defaultdict(Decimal), defaultdict(Decimal)
    for _, household_id, hour_start, cost, _ in usage:
        if hour_start < period_end and cost is not None:
            owed[household_id] += cost
    for _, household_id, eur, *_ in settlements:
        paid[household_id] += eur
    wrong = [h for h in town.household_ids if paid[h] != (owed[h] if h in town.funded else 0)]
    if wrong:
        h = wrong[0]
        problems.append(
            f"{len(wrong)} households paid the wrong amount, e.g. household {h}: paid {paid[h]}, owes {owed[h]}"
            + ("" if h in town.funded else " (unfunded)")
        )
    unsent = Counter(state for *_, state in settlements if state not in ("seen", "confirmed"))
    if unsent:
        problems.append(f"settlements not accepted after the sweeper: {dict(unsent)}")

    # No coin spent by two live settlements.
    outpoints = Counter(
        (tx_input.source_txid, tx_input.source_output_index)
        for *_, raw_tx, _ in settlements
        for tx_input in Transaction.from_hex(raw_tx).inputs
    )
    spent_twice = [outpoint for outpoint, count in outpoints.items() if count > 1]
    if spent_twice:
        problems.append(f"{len(spent_twice)} coins spent by two live settlements, e.g. {spent_twice[:2]}")

    # The ledger holds one transaction per live settlement, and no other payment.
    addresses = dict(Wallet.objects.filter(household_id__in=town.household_ids).values_list("address", "pk"))
    ours = set(
        LedgerOutput.objects.filter(address__in=addresses, transaction__is_faucet=False).values_list(
            "transaction__txid", flat=True
        )
    )
    txids = Counter(txid for *_, txid, _, _ in settlements)
    on_ledger = set(LedgerTransaction.objects.filter(txid__in=txids).values_list("txid", flat=True))
    if max(txids.values(), default=1) > 1 or on_ledger != set(txids):
        problems.append(
            f"{len(set(txids) - on_ledger)} live settlements not on the ledger; "
            f"{sum(1 for count in txids.values() if count > 1)} txids in two live settlements"
        )
    # Every payment carries change back to its wallet here (amounts are far below the funds).
    if ours != set(txids):
        problems.append(f"{len(ours - set(txids))} ledger payments from our wallets belong to no live settlement")
    received = (
        LedgerOutput.objects.filter(address=keys.utility_address(), transaction__txid__in=txids).aggregate(
            s=Sum("satoshis")
        )["s"]
        or 0
    )
    if received != sum(row[3] for row in settlements):
        problems.append(f"the utility received {received} sat for settlements worth {sum(r[3] for r in settlements)}")

    # Reconciliation: usage cost = settled EUR + unsettled EUR.
    total = sum((cost for *_, cost, _ in usage if cost is not None), start=Decimal(0))
    settled_eur = sum((eur for _, settlement_id, eur in paying if settlement_id in live_ids), start=Decimal(0))
    unsettled_eur = sum((cost for *_, cost, at in usage if at is None and cost is not None), start=Decimal(0))
    if total != settled_eur + unsettled_eur:
        problems.append(f"usage {total} EUR != settled {settled_eur} + unsettled {unsettled_eur}")

    # The balance a household is shown (available coins, payments.wallets.balance_satoshis) is what the ledger holds.
    shown = dict(
        Utxo.objects.filter(wallet__household_id__in=town.household_ids, state=Utxo.State.AVAILABLE)
        .values_list("wallet__address")
        .annotate(s=Sum("satoshis"))
    )
    held = dict(
        LedgerOutput.objects.filter(address__in=addresses, spent_by__isnull=True)
        .values_list("address")
        .annotate(s=Sum("satoshis"))
    )
    differ = [a for a in addresses if shown.get(a, 0) != held.get(a, 0)]
    if differ:
        a = differ[0]
        problems.append(
            f"{len(differ)} wallets show a balance the ledger does not hold, e.g. {shown.get(a)} vs {held.get(a)}"
        )
    return problems


def state_after_kill(town: Town, period_end: datetime) -> dict[str, int]:
    """Where a killed run left this hour: how many payments signed and on the ledger, signed only, and seen."""
    from payments.models import LedgerTransaction, Settlement

    rows = list(
        Settlement.objects.filter(household_id__in=town.household_ids, period_end=period_end).values_list(
            "txid", "state"
        )
    )
    on_ledger = set(
        LedgerTransaction.objects.filter(txid__in=[txid for txid, _ in rows]).values_list("txid", flat=True)
    )
    return {
        "signed_only": sum(1 for txid, state in rows if state == "signed" and txid not in on_ledger),
        "on_ledger_unrecorded": sum(1 for txid, state in rows if state == "signed" and txid in on_ledger),
        "accepted": sum(1 for _, state in rows if state in ("seen", "confirmed")),
    }


# --- The child process ---------------------------------------------------------------------------

# Points of a run the child reports (and may die at), in the order a chunk passes them.
POINTS = (
    "sign",  # settle_many starts on a chunk
    "recorded",  # its settlements, lines and coins are written, the transaction not yet committed
    "signed",  # committed; nothing broadcast yet
    "on_ledger",  # the local ledger committed the chunk's batch; the replies are not recorded yet
    "replied",  # the replies are recorded; the next chunk has not started
)


def _marker(began: float):
    """``around(function, before=, after=)``: prints ``<point> <seconds since ready>`` at those points
    and SIGKILLs this process at ``CRASH_AT=<point>:<n>``."""
    import signal
    from functools import wraps

    point_to_die, _, nth = os.environ.get("CRASH_AT", "").partition(":")
    seen: Counter = Counter()

    def mark(point: str) -> None:
        seen[point] += 1
        print(f"{point} {time.monotonic() - began:.4f}", flush=True)
        if point == point_to_die and seen[point] == int(nth or 1):
            os.kill(os.getpid(), signal.SIGKILL)

    def around(function, before: str = "", after: str = ""):
        @wraps(function)
        def marked(*args, **kwargs):
            if before:
                mark(before)
            result = function(*args, **kwargs)
            if after:
                mark(after)
            return result

        return marked

    return around


def _instrument(began: float) -> None:
    from payments import runs, settlement
    from payments.networks.local import LocalLedger

    around = _marker(began)
    # runs calls settle_many and _send, and settle_many calls _record, by their module-level names.
    runs.settle_many = around(runs.settle_many, before="sign", after="signed")
    settlement._record = around(settlement._record, after="recorded")
    runs._send = around(runs._send, after="replied")
    LocalLedger._accept_many = around(LocalLedger._accept_many, after="on_ledger")


def _settle(period_end: str, chunk: str) -> None:
    import django

    django.setup()
    from payments import runs

    # Smaller chunks than production's 200 interleave signing and broadcasting more often in one run.
    runs.chunks = partial(runs.chunks, size=int(chunk))
    end = datetime.fromisoformat(period_end)
    began = time.monotonic()
    print("ready", flush=True)
    _instrument(began)
    ids = runs.prepare_run(end)
    tally = runs.settle_households(ids, end)
    print(f"done {time.monotonic() - began:.4f} {json.dumps(tally)}", flush=True)


def _buy(household_id: str) -> None:
    import django

    django.setup()
    from django.utils import timezone

    from meters.models import Household
    from payments import passes
    from payments.broadcast import send_one
    from payments.models import CommunityPass
    from payments.networks.local import LocalLedger

    household = Household.objects.get(pk=int(household_id))
    began = time.monotonic()
    print("ready", flush=True)
    around = _marker(began)
    buy = around(passes.buy_pass, after="signed")
    LocalLedger.broadcast = around(LocalLedger.broadcast, after="on_ledger")
    # What the unlock view does: sign and commit, then send after the commit.
    purchase = buy(household, timezone.now())
    state = send_one(CommunityPass, purchase.community_pass.pk, LocalLedger())
    print(f"done {time.monotonic() - began:.4f} {state}", flush=True)


def _withdraw(household_id: str, token: str) -> None:
    """The third kind: a confirmed withdrawal (``withdrawals.withdraw``, then ``broadcast.send_one``), with the
    points ``signing`` (signed, inside the transaction that records it: nothing committed), ``signed`` (the
    withdrawal and its coins committed, nothing sent) and ``on_ledger`` (the ledger took it, the reply is not
    recorded)."""
    import django

    django.setup()
    from meters.models import Household
    from payments import withdrawals
    from payments.broadcast import send_one
    from payments.models import Withdrawal
    from payments.networks.local import LocalLedger

    household = Household.objects.get(pk=int(household_id))
    began = time.monotonic()
    print("ready", flush=True)
    around = _marker(began)
    withdrawals._sign = around(withdrawals._sign, after="signing")
    withdraw = around(withdrawals.withdraw, after="signed")
    LocalLedger.broadcast = around(LocalLedger.broadcast, after="on_ledger")
    outcome = withdraw(household, token, acting_user=None, source=Withdrawal.Source.STAFF)
    state = send_one(Withdrawal, outcome.withdrawal.pk, LocalLedger())
    print(f"done {time.monotonic() - began:.4f} {state}", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "energypay.settings")
    command, *arguments = sys.argv[1:]
    {"settle": _settle, "buy": _buy, "withdraw": _withdraw}[command](*arguments)
