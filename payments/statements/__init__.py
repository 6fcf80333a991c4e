"""Monthly statements: the numbered document a household keeps for each calendar month of its hourly bill.

An installed app of its own (label ``statements``) inside the payments floor: it reads the ledger
(meters) and the payments (settlements, wallets), and nothing above payments. Its modules, by job:
``models`` (series, counters, statements and their lines, payments and mail deliveries),
``numbering`` (gapless numbers), ``lines`` (the ledger grouped into statement lines),
``issuing`` (the monthly run), ``corrections`` (corrective notes), ``rendering`` (HTML, PDF, CSV,
JSON), ``mail`` (the outbox of deliveries), ``admin``, ``views``. docs/billing.md, "Statements".
"""
