"""Webhooks out: signed HTTP callbacks to the utility's own systems (CRM, support desk) when money moves.

Lower floors say what happened through settings.EVENT_HOOK (meters.hooks.emit), inside the
transaction of the change; ``outbox.record`` writes one event row and a delivery row for every
endpoint subscribed to its type, in that same transaction. Celery sends the deliveries
(``delivery.deliver_due``), signed as the Standard Webhooks specification says (``signing``), over
a guarded connection (``transport``: timeouts, no redirects, no private addresses, bounded bodies).
Events that time alone causes (arrears starting and ending, a meter falling silent) are found by a
periodic job (``detectors``). Staff manage endpoints and read the delivery log in the admin. The
contract for receivers is docs/webhooks.md.
"""
