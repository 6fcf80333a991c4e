from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from payments.statements.models import InvoiceRecordChain
from payments.statements.verifactu import export, records


class Command(BaseCommand):
    help = "Write an issuer's VERI*FACTU invoice records, its whole chain in order, to PATH as the AEAT's XML."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", help="The XML file to write (replaced if it exists).")
        parser.add_argument("--issuer", help="The issuer's NIF; needed only when records of several issuers exist.")

    def handle(self, *args, path: str, issuer: str | None, **options) -> None:
        chain = self.chain(issuer)
        problems = records.verify(chain)
        if problems:
            # Exported anyway (it is the evidence), but the operator must know the chain is not whole.
            self.stderr.write(f"The chain of {chain.issuer_tax_id} is broken:\n  " + "\n  ".join(problems[:20]))
        target = Path(path)
        if not target.parent.is_dir():
            raise CommandError(f"The folder {target.parent} does not exist.")
        temporary = target.with_name(f".{target.name}.partial")
        with temporary.open("wb") as out:
            count = export.write(chain, out)
        temporary.replace(target)  # a reader never sees half a file
        self.stdout.write(f"Wrote {count} records of {chain.issuer_tax_id} to {target}.")
        if problems:
            raise CommandError(f"{len(problems)} problems in the chain (above).")

    def chain(self, issuer: str | None) -> InvoiceRecordChain:
        chains = InvoiceRecordChain.objects.all()
        if issuer is not None:
            chain = chains.filter(issuer_tax_id=records.nif(issuer) or issuer).first()
            if chain is None:
                raise CommandError(f"There are no invoice records of the issuer {issuer!r}.")
            return chain
        found = list(chains[:2])
        if not found:
            raise CommandError("There are no invoice records yet.")
        if len(found) > 1:
            known = ", ".join(chains.values_list("issuer_tax_id", flat=True))
            raise CommandError(f"Records of several issuers exist ({known}): choose one with --issuer.")
        return found[0]
