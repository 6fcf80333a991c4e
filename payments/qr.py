"""QR codes as SVG text, for deposit addresses. Framework-free; qrcode's SVG factory needs no PIL."""

from __future__ import annotations

import qrcode
from qrcode.image.svg import SvgPathImage


def qr_svg(data: str) -> str:
    """An SVG document (one path, a viewBox, no fixed pixel size) that encodes ``data``.

    Error correction M survives a scratched phone screen or a printout; a quiet zone of 4 modules
    is what the QR standard asks for, so scanners find the code against any page background.
    """
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, border=4, image_factory=SvgPathImage)
    code.add_data(data)
    code.make(fit=True)
    return code.make_image().to_string(encoding="unicode")
