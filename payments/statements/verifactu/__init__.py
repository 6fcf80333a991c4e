"""VERI*FACTU: the chained invoice records of every statement, their QR code and their AEAT XML (docs/spain.md)."""
