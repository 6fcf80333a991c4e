"""Being told what happened (deposits, arrears, a payment through after a failure), in the page and by mail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from energypay import eventhook
from energypay.notifications import kinds, mailing
from energypay.notifications.models import Notification, NotificationPreference, PaymentTrouble
from energypay.webhooks import detectors
from lib.periods import HOUR, floor_hour
from meters.models import HourlyUsage
from payments.models import PriceQuote
from payments.wallets import open_wallet

NOW = datetime(2026, 11, 22, 14, 7, tzinfo=UTC)
REFUSING = "tests.alarms.backends.RefusingBackend"

pytestmark = pytest.mark.time_machine(NOW, tick=False)


@pytest.fixture
def quote(db) -> PriceQuote:
    return PriceQuote.objects.create(source="fixed", bsv_eur=Decimal("30"), fetched_at=NOW - timedelta(minutes=2))


@pytest.fixture
def ledger(db):
    from payments.networks.local import LocalLedger

    return LocalLedger()


def kinds_of(household) -> list[str]:
    return list(Notification.objects.filter(household=household).order_by("pk").values_list("kind", flat=True))


def settlement(household_id: int, settlement_id: int, state: str) -> tuple[str, int, dict]:
    kind = "settlement.confirmed" if state == "confirmed" else "settlement.failed"
    return (kind, household_id, {"settlement_id": settlement_id, "household_id": household_id, "eur": "1.230000"})


# --- Deposits ---


def test_a_deposit_is_told_when_seen_and_again_when_confirmed(household, quote, ledger):
    wallet = open_wallet(household)
    txid = ledger.fund(wallet.address, 3_000_000)  # 0.03 BSV = EUR 0.90
    wallet.sync_coins(ledger)
    [seen] = Notification.objects.filter(household=household)
    assert (seen.kind, seen.key, seen.badge) == (kinds.DEPOSIT_RECEIVED, f"deposit.received:{txid}", True)
    assert seen.next_attempt_at is None  # by default a deposit on its way is told in the page only
    assert "€0.90 (3,000,000 sat)" in seen.sentence and "on its way" in seen.sentence

    ledger.mine()
    wallet.sync_coins(ledger)
    wallet.sync_coins(ledger)  # nothing new: nothing told twice
    assert kinds_of(household) == [kinds.DEPOSIT_RECEIVED, kinds.DEPOSIT_CONFIRMED]
    confirmed = Notification.objects.get(kind=kinds.DEPOSIT_CONFIRMED)
    assert confirmed.next_attempt_at == NOW  # mailed by default
    assert confirmed.sentence == "Your deposit of €0.90 (3,000,000 sat) is confirmed and in your balance."


def test_a_deposit_first_seen_in_a_block_is_told_once_as_confirmed(household, quote, ledger):
    wallet = open_wallet(household)
    ledger.fund(wallet.address, 5_000)
    ledger.mine()
    wallet.sync_coins(ledger)
    assert kinds_of(household) == [kinds.DEPOSIT_CONFIRMED]


def test_two_deliveries_of_the_same_event_give_one_notification(household, quote):
    event = ("deposit.confirmed", household.pk, {"household_id": household.pk, "txid": "ab" * 32, "satoshis": 10})
    eventhook.record([event])
    eventhook.record([event, event])
    assert Notification.objects.filter(household=household).count() == 1


def test_deposits_are_told_only_to_their_household(household, other_household, quote, ledger):
    wallet = open_wallet(household)
    ledger.fund(wallet.address, 5_000)
    wallet.sync_coins(ledger)
    assert kinds_of(household) == [kinds.DEPOSIT_RECEIVED]
    assert kinds_of(other_household) == []


def test_the_deposit_watch_job_notices_a_confirmation_after_the_page_is_closed(household, quote, ledger):
    from payments import deposits

    wallet = open_wallet(household)
    ledger.fund(wallet.address, 5_000)
    wallet.sync_coins(ledger)
    ledger.mine()
    assert deposits.watch_unconfirmed(ledger) == 1
    assert kinds_of(household) == [kinds.DEPOSIT_RECEIVED, kinds.DEPOSIT_CONFIRMED]
    assert deposits.watch_unconfirmed(ledger) == 0  # nothing left unconfirmed


# --- Arrears ---


def in_arrears(household, make_meter) -> HourlyUsage:
    meter, _ = make_meter(household)
    return HourlyUsage.objects.create(
        household=household,
        meter=meter,
        hour_start=floor_hour(NOW) - 5 * HOUR,
        kwh=1,
        rate=Decimal("0.25"),
        cost_eur=Decimal("4.250000"),
    )


def test_arrears_are_told_when_they_start_and_when_they_clear_once_each(household, make_meter):
    line = in_arrears(household, make_meter)
    detectors.detect_arrears(NOW)
    detectors.detect_arrears(NOW + timedelta(minutes=5))
    [started] = Notification.objects.filter(household=household)
    assert started.kind == kinds.ARREARS_STARTED and started.next_attempt_at == NOW
    assert "€4.25 is unpaid (in arrears)" in started.sentence and "every hour" in started.sentence
    line.settled_at = NOW
    line.save()
    detectors.detect_arrears(NOW + timedelta(minutes=10))
    detectors.detect_arrears(NOW + timedelta(minutes=15))
    assert kinds_of(household) == [kinds.ARREARS_STARTED, kinds.ARREARS_CLEARED]


def test_a_second_episode_of_arrears_is_told_again(household, make_meter):
    line = in_arrears(household, make_meter)
    detectors.detect_arrears(NOW)
    line.settled_at = NOW
    line.save()
    detectors.detect_arrears(NOW + timedelta(minutes=5))
    line.settled_at = None  # a refused payment reopens the same hours
    line.save()
    detectors.detect_arrears(NOW + timedelta(minutes=10))
    assert kinds_of(household) == [kinds.ARREARS_STARTED, kinds.ARREARS_CLEARED, kinds.ARREARS_STARTED]


# --- A payment confirmed after a failure ---


def test_a_payment_confirmed_after_a_failure_is_told_once(household):
    eventhook.record([settlement(household.pk, 7, "failed")])
    assert kinds_of(household) == []  # the failure itself is the arrears' and the alarms' to tell
    eventhook.record([settlement(household.pk, 6, "confirmed")])  # an older payment: not the retry
    assert kinds_of(household) == []
    eventhook.record([settlement(household.pk, 8, "confirmed")])
    eventhook.record([settlement(household.pk, 8, "confirmed"), settlement(household.pk, 9, "confirmed")])
    [told] = Notification.objects.filter(household=household)
    assert told.kind == kinds.PAYMENT_RECOVERED
    assert told.sentence == "A payment of €1.23 went through after an earlier one had failed: those hours are paid."
    assert not PaymentTrouble.objects.exists()


def test_payments_confirmed_without_a_failure_tell_nothing(household, other_household):
    eventhook.record([settlement(other_household.pk, 3, "failed")])
    eventhook.record([settlement(household.pk, 4, "confirmed")])
    assert kinds_of(household) == [] and kinds_of(other_household) == []


# --- Preferences ---


def test_the_household_chooses_the_channel_for_each_kind(household_client, household, quote):
    data = {f"{code}:badge": "on" for code in kinds.CODES} | {f"{kinds.ARREARS_STARTED}:email": "on"}
    del data[f"{kinds.DEPOSIT_CONFIRMED}:badge"]
    response = household_client.post(reverse("notification-preferences"), data)
    assert response.status_code == 302
    chosen = NotificationPreference.objects.get(household=household, kind=kinds.DEPOSIT_CONFIRMED)
    assert (chosen.badge, chosen.email) == (False, False)
    eventhook.record(
        [("deposit.confirmed", household.pk, {"household_id": household.pk, "txid": "cd" * 32, "satoshis": 10})]
    )
    row = Notification.objects.get(household=household)
    assert (row.badge, row.next_attempt_at) == (False, None)  # kept as history, neither counted nor mailed
    page = household_client.get(reverse("wallet")).text
    assert 'id="nav-notifications-unread"' not in page


def test_preferences_are_the_households_own(household_client, other_household):
    household_client.post(reverse("notification-preferences"), {})
    assert not NotificationPreference.objects.filter(household=other_household).exists()


# --- The page and the badge ---


def test_the_nav_badge_counts_unread_and_the_page_marks_them_read(household_client, household, other_client, quote):
    for n in range(2):
        txid = f"{n}" * 64
        eventhook.record(
            [("deposit.confirmed", household.pk, {"household_id": household.pk, "txid": txid, "satoshis": 5})]
        )
    page = household_client.get(reverse("dashboard")).text
    assert '<span class="badge notification-new" id="nav-notifications-unread">2<' in page
    assert 'id="no-notifications"' in other_client.get(reverse("notifications")).text
    listing = household_client.get(reverse("notifications")).text
    assert listing.count('<li class="notification unread" data-kind="deposit.confirmed">') == 2
    assert 'id="nav-notifications-unread"' not in listing
    assert not Notification.objects.filter(read_at__isnull=True).exists()
    assert 'id="nav-notifications-unread"' not in household_client.get(reverse("dashboard")).text


def test_the_page_speaks_the_readers_language(household_client, household, make_meter):
    household.language = "es"
    household.save(update_fields=["language"])
    in_arrears(household, make_meter)
    detectors.detect_arrears(NOW)
    html = household_client.get(reverse("notifications")).text
    assert "4,25\N{NO-BREAK SPACE}€" in html and "atrasos" in html


def test_an_empty_page_says_what_will_be_told(household_client):
    assert 'id="no-notifications"' in household_client.get(reverse("notifications")).text


def test_anonymous_visitors_are_sent_to_log_in(client, db):
    response = client.get(reverse("notifications"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


# --- Mail ---


def test_mail_goes_out_once_in_the_households_language(household, make_meter, settings):
    settings.SITE_URL = "https://energypay.example/"
    household.language = "es"
    household.save(update_fields=["language"])
    in_arrears(household, make_meter)
    detectors.detect_arrears(NOW)
    assert mailing.send_due() == {"sent": 1}
    assert mailing.send_due() == {}
    [message] = mail.outbox
    assert message.to == [household.user.email]
    assert (
        message.subject == "EnergyPay: Saldo agotado: pagos atrasados"
        and "4,25\N{NO-BREAK SPACE}€" in message.body
        and "cada hora" in message.body
    )
    assert "https://energypay.example/notifications/" in message.body
    assert Notification.objects.get().mailed_at == NOW


def test_a_failing_mail_server_is_retried_and_nothing_is_lost(household, make_meter, settings, time_machine):
    settings.EMAIL_BACKEND = REFUSING
    in_arrears(household, make_meter)
    detectors.detect_arrears(NOW)
    assert mailing.send_due() == {"failed": 1}
    row = Notification.objects.get()
    assert (row.attempts, row.next_attempt_at, row.mailed_at) == (1, NOW + timedelta(minutes=1), None)
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert mailing.send_due() == {}  # not before its time
    time_machine.shift(timedelta(minutes=1))
    assert mailing.send_due() == {"sent": 1}
    assert len(mail.outbox) == 1


# --- The test-network banner ---


@pytest.mark.parametrize(
    ("network", "words"),
    [("local", "local ledger"), ("regtest", "Test network (regtest)"), ("testnet", "Test network (testnet)")],
)
def test_every_page_says_when_the_coins_are_not_real(household_client, settings, network, words):
    settings.BSV_NETWORK = network
    for page in (Client().get(reverse("login")).text, household_client.get(reverse("wallet")).text):
        assert 'id="network-banner"' in page and words in page and "not real money" in page


def test_mainnet_shows_no_banner(household_client, settings):
    settings.BSV_NETWORK = "mainnet"
    assert 'id="network-banner"' not in Client().get(reverse("login")).text
    assert 'id="network-banner"' not in household_client.get(reverse("notifications")).text


# --- Retention ---


def test_pruning_keeps_what_is_unread_or_waiting_for_its_mail(household, quote, time_machine):
    from django.core.management import call_command

    def told(txid: str, **fields) -> Notification:
        data = {"household_id": household.pk, "txid": txid, "satoshis": 5}
        eventhook.record([("deposit.confirmed", household.pk, data)])
        Notification.objects.filter(key=f"deposit.confirmed:{txid}").update(**fields)
        return Notification.objects.get(key=f"deposit.confirmed:{txid}")

    read_and_mailed = told("a" * 64, read_at=NOW, mailed_at=NOW, next_attempt_at=None)
    unread = told("b" * 64, mailed_at=NOW, next_attempt_at=None)
    mail_waiting = told("c" * 64, read_at=NOW)
    time_machine.shift(timedelta(days=366))
    call_command("prune_notifications", stdout=open("/dev/null", "w"))  # noqa: SIM115
    left = set(Notification.objects.values_list("pk", flat=True))
    assert read_and_mailed.pk not in left and {unread.pk, mail_waiting.pk} <= left
