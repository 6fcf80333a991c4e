"""The payments admin, by what staff manage: wallets and coins, outgoing payments, prices, the local ledger.

Everything here is read-only: money moves only through the functions that hold the locks
(payments/wallets.py, payments/settlement.py, payments/broadcast.py), which the actions call. No page
shows key material: none is stored, and no field or action derives a private key.

A household's page is composed on the top floor (energypay/admin.py) from meters' admin and the
wallet columns in ``households``.
"""

from payments.admin import callbacks, ledger, prices, settlements, wallets, withdrawals  # noqa: F401 (each registers its models)
