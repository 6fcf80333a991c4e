from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from payments.networks.local import LocalLedger


class Command(BaseCommand):
    help = "Fund an address from the faucet or mine a block on the local ledger (BSV_NETWORK=local only)."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="{fund,mine}")
        fund = actions.add_parser("fund", help="Pay SATS satoshis to ADDRESS out of the faucet; prints the txid.")
        fund.add_argument("address", metavar="ADDRESS", help="A P2PKH address of the configured network.")
        fund.add_argument("satoshis", metavar="SATS", type=int, help="A whole number of satoshis, at least 1.")
        actions.add_parser("mine", help="Confirm every unconfirmed transaction in a new block.")

    def handle(self, *args, action: str, **options) -> None:
        if settings.BSV_NETWORK != "local":
            raise CommandError(
                f"The ledger command works only on the local ledger; BSV_NETWORK is {settings.BSV_NETWORK!r}. "
                "Fund real wallets from a real faucet or exchange."
            )
        if action == "fund":
            self.fund(options["address"], options["satoshis"])
        else:
            self.mine()

    def fund(self, address: str, satoshis: int) -> None:
        try:
            txid = LocalLedger().fund(address.strip(), satoshis)
        except ValueError as error:
            raise CommandError(f"{error} Nothing was funded.") from None
        # stdout carries only the txid, so `TXID=$(manage.py ledger fund ADDR 1000)` works.
        self.stdout.write(txid)

    def mine(self) -> None:
        block = LocalLedger().mine()
        count = block.txs.count()
        self.stdout.write(f"Mined block {block.height} with {count} transaction{'' if count == 1 else 's'}.")
