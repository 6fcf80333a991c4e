"""QR codes as SVG text, for deposit addresses and the statements' tax QR. Framework-free; qrcode's SVG factory
needs no PIL."""

from __future__ import annotations

import re
from decimal import Decimal

import qrcode
from qrcode.image.svg import SvgPathImage

QUIET_ZONE = 4  # modules: what the QR standard asks for, so scanners find the code against any background


def qr_svg(data: str, *, symbol_mm: Decimal | None = None) -> str:
    """An SVG document (one path, a viewBox) that encodes ``data``.

    Error correction M survives a scratched phone screen or a printout. Without ``symbol_mm`` the SVG
    has no fixed size the page need follow; with it, the code itself (the quiet zone not counted)
    measures that many millimetres wide and high, as a printed document that prescribes a size needs.
    """
    code = qrcode.QRCode(
        error_correction=qrcode.constants.ERROR_CORRECT_M, border=QUIET_ZONE, image_factory=SvgPathImage
    )
    code.add_data(data)
    code.make(fit=True)
    svg = code.make_image().to_string(encoding="unicode")
    if symbol_mm is None:
        return svg
    modules = code.modules_count
    side = (Decimal(symbol_mm) * (modules + 2 * QUIET_ZONE) / modules).quantize(Decimal("0.01"))
    return re.sub(r'width="[^"]*" height="[^"]*"', f'width="{side}mm" height="{side}mm"', svg, count=1)
