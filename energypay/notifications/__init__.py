"""Telling a household what happened: notifications in the page (a badge) and by mail, as the household chooses.

Lower floors say what happened through settings.EVENT_HOOK (``meters.hooks.emit``) in the
transaction of the change; ``energypay.eventhook.record`` hands each event to the webhooks outbox and
to ``inbox.record`` here, which turns the events a household cares about into ``Notification`` rows
in that same transaction: never lost, and unique per household and event, so an event delivered
twice is one notification. Rows hold a code and its numbers; the sentence is rendered where it is
read, in the reader's language (``kinds.py``). Mails go out from the rows (``mailing.py``).
"""
