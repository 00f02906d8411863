"""Render the app icon (resources/rlhf-workbench.svg) into the formats installers want:
rlhf-workbench-256.png (PyInstaller on Linux, docs), rlhf-workbench.ico (Windows: the programs
and the installer; 16 to 256 px, PNG-compressed) and rlhf-workbench.icns (macOS app bundle).

    QT_QPA_PLATFORM=offscreen .venv/bin/python packaging/make_icons.py

The outputs are committed; run this again only when the SVG changes.
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
from PySide6.QtGui import QGuiApplication, QImage, QPainter
from PySide6.QtSvg import QSvgRenderer

RESOURCES = Path(__file__).resolve().parent.parent / "resources"
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)


def render(renderer: QSvgRenderer, size: int) -> QImage:
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    return image


def png_bytes(image: QImage) -> bytes:
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    return bytes(data)


def write_ico(path: Path, images: list[QImage]) -> None:
    """An ICO holding PNG-compressed images (Windows Vista and later read these)."""
    pngs = [png_bytes(image) for image in images]
    header = struct.pack("<HHH", 0, 1, len(pngs))
    offset = 6 + 16 * len(pngs)
    entries = b""
    for image, png in zip(images, pngs):
        side = image.width() if image.width() < 256 else 0  # 0 means 256
        entries += struct.pack("<BBBBHHII", side, side, 0, 0, 1, 32, len(png), offset)
        offset += len(png)
    path.write_bytes(header + entries + b"".join(pngs))


def main() -> int:
    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 -- QPainter needs it
    renderer = QSvgRenderer(str(RESOURCES / "rlhf-workbench.svg"))
    if not renderer.isValid():
        print("error: the SVG icon could not be read", file=sys.stderr)
        return 1
    render(renderer, 256).save(str(RESOURCES / "rlhf-workbench-256.png"))
    write_ico(RESOURCES / "rlhf-workbench.ico", [render(renderer, s) for s in ICO_SIZES])
    if not render(renderer, 512).save(str(RESOURCES / "rlhf-workbench.icns"), "ICNS"):
        print("warning: this Qt cannot write .icns; the macOS build converts the PNG instead", file=sys.stderr)
    for name in ("rlhf-workbench-256.png", "rlhf-workbench.ico", "rlhf-workbench.icns"):
        print(f"{RESOURCES / name}: {(RESOURCES / name).stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
