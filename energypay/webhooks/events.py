"""The event types a webhook endpoint can subscribe to: one stable code each, and what it means.

Codes cross the boundary to the receivers, who switch on them: never rename one. docs/webhooks.md
describes each one's ``data``.
"""

from __future__ import annotations

SETTLEMENT_CONFIRMED = "settlement.confirmed"
SETTLEMENT_FAILED = "settlement.failed"
ARREARS_STARTED = "household.arrears_started"
ARREARS_CLEARED = "household.arrears_cleared"
ALARM_TRIGGERED = "alarm.triggered"
ALARM_CLEARED = "alarm.cleared"
METER_SILENT = "meter.silent"
STATEMENT_ISSUED = "statement.issued"
WITHDRAWAL_CONFIRMED = "withdrawal.confirmed"
WITHDRAWAL_FAILED = "withdrawal.failed"
DEPOSIT_RECEIVED = "deposit.received"
DEPOSIT_CONFIRMED = "deposit.confirmed"
TEST = "webhook.test"  # sent by staff ("send test event") to one endpoint, whatever it subscribes to

EVENT_TYPES: dict[str, str] = {
    SETTLEMENT_CONFIRMED: "A settlement is in a block: the hours it paid are paid for good.",
    SETTLEMENT_FAILED: "The network refused a settlement for good: its hours are owed again.",
    ARREARS_STARTED: "A household owes hours that a run at least an hour ago should have paid.",
    ARREARS_CLEARED: "A household in arrears owes no such hour any more.",
    ALARM_TRIGGERED: "A household's alarm rule fired.",
    ALARM_CLEARED: "A household's alarm rule stopped firing.",
    METER_SILENT: "A meter has sent nothing for WEBHOOK_METER_SILENT_HOURS hours (once per silence).",
    STATEMENT_ISSUED: "A statement was issued to a household.",
    WITHDRAWAL_CONFIRMED: "A withdrawal of a household's balance is in a block.",
    WITHDRAWAL_FAILED: "The network refused a withdrawal for good: its coins are back in the wallet.",
    DEPOSIT_RECEIVED: "A transaction paying a household's wallet was seen (it may not be in a block yet).",
    DEPOSIT_CONFIRMED: "A deposit to a household's wallet is in a block.",
}

CHOICES = [(code, f"{code}: {text}") for code, text in EVENT_TYPES.items()]


def check(event_type: str) -> None:
    """Refuse a code that is not in the catalogue: a typo would make events nobody can subscribe to."""
    if event_type not in EVENT_TYPES and event_type != TEST:
        raise ValueError(f"unknown webhook event type {event_type!r}")
