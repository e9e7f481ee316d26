"""Hostile and unusual images, generated (never stored), with the answer each must get.

``corpus(photo)`` turns one real RGB photo into every case of issue 12 item 3:
a JPEG whose header claims 65,500x65,500, a PNG decompression bomb, CMYK and
YCCK JPEGs, 16-bit and palette-with-alpha PNGs, grayscale, the eight EXIF
orientations, progressive JPEG, a JPEG cut mid-scan, WebP/GIF/TIFF/BMP, zero
bytes, and a few more a hostile uploader tries (a file cut and its end marker
put back, broken EXIF). Each ``Case`` says what every
entry point must answer:

* ``manifest``: the dataset entry's error code after an import or a watched
  upload (``customlabels.images.inspect_image``), None for a valid entry;
* ``detect``: DetectCustomLabels' error code, None when it answers with labels;
* ``same_as_photo``: the decoded picture is the photo's own (an upright EXIF
  copy, a lossless re-encoding), so a model gives it the photo's labels.

Everything is made with Pillow, numpy and zlib from the photo given; the
bombs cost a few hundred kilobytes and a second to make.
"""
from __future__ import annotations

import io
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

INVALID_IMAGE = "ERROR_INVALID_IMAGE"
INVALID_DIMENSION = "ERROR_INVALID_IMAGE_DIMENSION"
BAD_FORMAT = "InvalidImageFormatException"
TOO_LARGE = "ImageTooLargeException"

# EXIF orientation n: what was done to an upright picture to store it, so that a viewer applying
# the tag (ImageOps.exif_transpose) shows it upright again.
STORED_AS = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


@dataclass(frozen=True)
class Case:
    name: str
    data: bytes
    manifest: str | None  # the entry's error code after an import or upload; None: a valid entry
    detect: str | None  # DetectCustomLabels' error code; None: it answers with labels
    same_as_photo: bool = False  # decodes to the photo itself (up to JPEG re-encoding)
    suffix: str = ".jpg"  # the key's extension, as a careless uploader would name it


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


@lru_cache(maxsize=2)
def png_bomb(side: int = 20_000) -> bytes:
    """A real decompression bomb: a complete, valid 8-bit greyscale PNG of ``side``² black pixels
    (400 MB decoded at 20,000) in 400 KB."""
    row = b"\x00" * (side + 1)  # filter byte 0, then the pixels
    packer = zlib.compressobj(9)
    rows_per_chunk = max(1, (8 << 20) // len(row))
    idat, left = [], side
    while left:
        n = min(rows_per_chunk, left)
        idat.append(packer.compress(row * n))
        left -= n
    idat.append(packer.flush())
    ihdr = side.to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", b"".join(idat)) + png_chunk(b"IEND", b"")


def jpeg_claiming(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` with its frame header (SOF) rewritten to claim ``width`` x ``height``."""
    data = bytearray(jpeg)
    pos = 2
    while True:
        marker, length = data[pos + 1], int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker in (0xC0, 0xC1, 0xC2):
            data[pos + 5:pos + 7] = height.to_bytes(2, "big")
            data[pos + 7:pos + 9] = width.to_bytes(2, "big")
            return bytes(data)
        pos += 2 + length


def ycck_jpeg(photo: Image.Image) -> bytes:
    """An Adobe YCCK JPEG (four components, APP14 transform 2), as Photoshop writes CMYK photos.

    Pillow writes CMYK only (transform 0), so the components written are the YCbCr
    of the inverted picture with K = 0, and the transform flag is then set to 2:
    libjpeg turns them back into the CMYK a viewer converts to the photo's colours."""
    inverted = Image.fromarray(255 - np.asarray(photo.convert("RGB"))).convert("YCbCr")
    y, cb, cr = (np.asarray(channel) for channel in inverted.split())
    # Pillow writes CMYK with Adobe's inverted polarity: hand it the complements.
    components = np.stack([255 - y, 255 - cb, 255 - cr, np.zeros_like(y)], axis=-1)
    data = bytearray(encode(Image.fromarray(components, "CMYK"), "JPEG", quality=95))
    adobe = data.index(b"\xff\xee") + 4  # APP14: marker, length (2), then "Adobe"
    assert data[adobe:adobe + 5] == b"Adobe"
    data[adobe + 11] = 2  # "Adobe", version (2), flags0 (2), flags1 (2), then the transform
    return bytes(data)


def cut(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


def corpus(photo: Image.Image) -> list[Case]:
    """Every case, made from ``photo`` (RGB, at least 64 px a side; a flowers-small photo is 320x240)."""
    photo = photo.convert("RGB")
    jpeg = encode(photo, "JPEG", quality=95)
    progressive = encode(photo, "JPEG", quality=95, progressive=True)
    grey = photo.convert("L")
    cases = [
        Case("baseline", jpeg, None, None, same_as_photo=True),
        Case("claims-65500x65500", jpeg_claiming(jpeg, 65_500, 65_500), INVALID_DIMENSION, TOO_LARGE),
        Case("png-decompression-bomb", png_bomb(), INVALID_DIMENSION, TOO_LARGE, suffix=".png"),
        Case("png-4096-solid", encode(Image.new("RGB", (4096, 4096), "olive"), "PNG"), None, None, suffix=".png"),
        Case("cmyk-jpeg", encode(photo.convert("CMYK"), "JPEG", quality=95), None, None),
        Case("ycck-jpeg", ycck_jpeg(photo), None, None),
        Case("png-16-bit-grey", encode(Image.fromarray(np.asarray(grey).astype(np.uint16) * 257), "PNG"),
             None, None, suffix=".png"),
        Case("png-16-bit-rgb", _png_16bit_rgb(photo), None, None, suffix=".png"),
        Case("png-palette-alpha", encode(photo.quantize(64), "PNG", transparency=0), None, None, suffix=".png"),
        Case("png-rgba", encode(photo.convert("RGBA"), "PNG"), None, None, same_as_photo=True, suffix=".png"),
        Case("grey-jpeg", encode(grey, "JPEG", quality=95), None, None),
        Case("grey-png", encode(grey, "PNG"), None, None, suffix=".png"),
        Case("progressive-jpeg", progressive, None, None, same_as_photo=True),
        Case("jpeg-cut-mid-scan", cut(jpeg, 0.6), INVALID_IMAGE, BAD_FORMAT),
        Case("progressive-cut-mid-scan", cut(progressive, 0.6), INVALID_IMAGE, BAD_FORMAT),
        # The end marker put back after the cut: inspection (header and tail) passes. libjpeg fills the
        # missing rows with grey, as browsers show such a file; a PNG's broken pixel stream is refused.
        Case("jpeg-cut-then-end-marker", cut(jpeg, 0.6) + b"\xff\xd9", None, None),
        Case("png-idat-cut-then-iend", _png_cut_inside_idat(photo), None, BAD_FORMAT, suffix=".png"),
        Case("exif-garbage", jpeg[:2] + _app1(b"Exif\0\0II*\0" + (0x7FFFFFFF).to_bytes(4, "little") + bytes(64)) + jpeg[2:],
             None, None, same_as_photo=True),
        Case("webp", encode(photo, "WEBP"), INVALID_IMAGE, BAD_FORMAT, suffix=".webp"),
        Case("gif", encode(photo, "GIF"), INVALID_IMAGE, BAD_FORMAT, suffix=".gif"),
        Case("tiff", encode(photo, "TIFF"), INVALID_IMAGE, BAD_FORMAT, suffix=".tif"),
        Case("bmp", encode(photo, "BMP"), INVALID_IMAGE, BAD_FORMAT, suffix=".bmp"),
        Case("webp-named-jpg", encode(photo, "WEBP"), INVALID_IMAGE, BAD_FORMAT),
        Case("zero-bytes", b"", INVALID_IMAGE, BAD_FORMAT),
        Case("jpeg-magic-then-garbage", b"\xff\xd8\xff" + bytes(range(256)) * 8 + b"\xff\xd9", INVALID_IMAGE, BAD_FORMAT),
    ]
    for orientation in range(1, 9):
        cases.append(Case(f"exif-orientation-{orientation}", exif_oriented(photo, orientation), None, None,
                          same_as_photo=True))
    return cases


def _app1(payload: bytes) -> bytes:
    return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload


def exif_oriented(photo: Image.Image, orientation: int) -> bytes:
    """A JPEG stored turned (``STORED_AS``) with the EXIF tag that turns it upright again."""
    stored = photo if STORED_AS[orientation] is None else photo.transpose(STORED_AS[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "JPEG", quality=95, exif=exif)


def _png_16bit_rgb(photo: Image.Image) -> bytes:
    """A 48-bit RGB PNG (Pillow reads it, but writes no such file: the chunks are made here)."""
    pixels = np.asarray(photo).astype(">u2") * 257
    height, width, _ = pixels.shape
    raw = b"".join(b"\x00" + pixels[row].tobytes() for row in range(height))
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([16, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b"")


def _png_cut_inside_idat(photo: Image.Image) -> bytes:
    """A PNG whose pixel data stops halfway, with a well-formed IEND after it."""
    noisy = np.random.default_rng(3).integers(0, 256, (photo.height, photo.width, 3), dtype=np.uint8)
    raw = b"".join(b"\x00" + noisy[row].tobytes() for row in range(photo.height))
    compressed = zlib.compress(raw)
    ihdr = photo.width.to_bytes(4, "big") + photo.height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", compressed[: len(compressed) // 2])
            + png_chunk(b"IEND", b""))
