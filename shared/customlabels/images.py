"""Images: bounded inspection (manifest import) and safe decoding (training, serving).

``inspect_image`` judges an image from its first bytes (the header) and its
last bytes, never decoding pixels, so checking a dataset of thousands of images
costs a few kilobytes each and a hostile file (a PNG claiming 20000x20000
pixels) costs nothing. It applies the reference's limits and answers in its
terms: ``ERROR_INVALID_IMAGE`` (not PNG/JPEG, unreadable, truncated, too big,
missing) or ``ERROR_INVALID_IMAGE_DIMENSION`` (a side outside 64..4096 pixels,
or an aspect ratio over 20:1).

``decode_image`` turns bytes into an RGB picture, refusing decompression bombs
from the header before any pixel is decoded, answering ``ImageProblem`` and
nothing else for any bytes, and keeping the pixels decoded at once in a
process under ``DECODE_PIXEL_BUDGET``.
"""
from __future__ import annotations

import ctypes
import io
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

from PIL import Image, ImageOps, UnidentifiedImageError

from customlabels.ports.blobs import BlobStore, InvalidKey, NoSuchBucket, NoSuchKey

IMAGE_MIN_SIDE = 64
IMAGE_MAX_SIDE = 4096
IMAGE_MAX_BYTES = 15 * 1024 * 1024
MAX_ASPECT_RATIO = 20

INVALID_IMAGE = "ERROR_INVALID_IMAGE"
INVALID_IMAGE_DIMENSION = "ERROR_INVALID_IMAGE_DIMENSION"

# inspect_blob reads this much of the start first, growing (a JPEG can carry
# large EXIF/ICC segments before its frame header) up to the maximum.
HEAD_BYTES = 64 * 1024
MAX_HEAD_BYTES = 1024 * 1024
TAIL_BYTES = 1024

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_IEND = b"IEND\xaeB`\x82"  # chunk type and its (constant) CRC
_JPEG_SOI = b"\xff\xd8\xff"
_JPEG_EOI = b"\xff\xd9"
# Start-of-frame markers carry the dimensions; C4 (DHT), C8 (JPG) and CC (DAC) are not frames.
_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RSTn: no length field
_EXIF_ORIENTATION = 0x0112
# To name the format in the message when it is a known one we do not take.
_OTHER_FORMATS = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"RIFF", "WebP"),
)


class ImageProblem(Exception):
    """An image the service cannot use; ``code`` is the reference's error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class NeedMoreBytes(Exception):
    """The header goes on past the bytes given: call again with at least ``needed`` bytes."""

    def __init__(self, needed: int) -> None:
        super().__init__(f"the image header needs at least {needed} bytes")
        self.needed = needed


@dataclass(frozen=True)
class ImageInfo:
    """What the header says.

    ``width`` and ``height`` are the stored pixel grid, before any EXIF
    rotation: bounding boxes are checked against these. ``orientation`` is the
    JPEG's EXIF orientation (1 = display as stored; 5-8 swap the sides when
    shown), kept so a caller can tell when the displayed image differs.
    """

    format: Literal["JPEG", "PNG"]
    width: int
    height: int
    size_bytes: int
    orientation: int = 1

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) as a viewer honouring EXIF shows the image."""
        if self.orientation in (5, 6, 7, 8):
            return self.height, self.width
        return self.width, self.height


# --- inspection -----------------------------------------------------------------
def inspect_image(head: bytes, tail: bytes, size: int, *, name: str = "the image") -> ImageInfo:
    """Check an image from its first bytes (``head``), its last bytes (``tail``,
    1 KiB is plenty) and its total ``size``, without decoding pixels.

    Raises ``ImageProblem`` for an image the service refuses, and
    ``NeedMoreBytes`` when ``head`` ends before the header does (never when
    ``head`` already holds the whole file). ``name`` starts the messages.
    """
    _check_size(size, name)
    fmt = _sniff(head, size, name)
    if fmt == "PNG":
        width, height = _png_dimensions(head, size, name)
        orientation = 1
    else:
        width, height, orientation = _jpeg_header(head, size, name)
    # The header's claims first: a 20000x20000 header is a dimension problem
    # whether or not the pixels follow it.
    _check_dimensions(width, height, name)
    _check_complete(fmt, tail, name)
    return ImageInfo(fmt, width, height, size, orientation)


async def inspect_blob(blobs: BlobStore, bucket: str, key: str, size: int | None = None) -> ImageInfo:
    """``inspect_image`` on a stored object, reading only its head and tail
    (``size``, when the caller has just stat'ed the object, saves a stat)."""
    name = f"image s3://{bucket}/{key}"
    try:
        if size is None:
            size = (await blobs.stat(bucket, key)).size
        _check_size(size, name)  # before reading anything of an oversized object
        tail = await blobs.read_range(bucket, key, -TAIL_BYTES, TAIL_BYTES)
        want = HEAD_BYTES
        while True:
            head = await blobs.read_range(bucket, key, 0, want)
            try:
                return inspect_image(head, tail, size, name=name)
            except NeedMoreBytes as more:
                if want >= MAX_HEAD_BYTES or more.needed > MAX_HEAD_BYTES:
                    raise ImageProblem(
                        INVALID_IMAGE,
                        f"{name} carries more than {MAX_HEAD_BYTES // 1024} KiB of metadata before its "
                        "image header; remove the metadata (EXIF, ICC profile, comments) and upload it again",
                    ) from None
                want = min(max(more.needed, want * 2), MAX_HEAD_BYTES)
    except (NoSuchKey, NoSuchBucket):
        raise ImageProblem(
            INVALID_IMAGE, f"{name} was not found: check the bucket and key, and that the image was uploaded"
        ) from None
    except InvalidKey as exc:
        raise ImageProblem(INVALID_IMAGE, f"{name} cannot be read: {exc}") from None


def _check_size(size: int, name: str) -> None:
    if size > IMAGE_MAX_BYTES:
        raise ImageProblem(
            INVALID_IMAGE,
            f"{name} is {size} bytes ({size / 1024 / 1024:.1f} MB); the limit is "
            f"{IMAGE_MAX_BYTES // 1024 // 1024} MB. Compress or resize it",
        )
    if size == 0:
        raise ImageProblem(INVALID_IMAGE, f"{name} is empty (0 bytes); upload a PNG or JPEG image")


def _sniff(head: bytes, size: int, name: str) -> Literal["JPEG", "PNG"]:
    """The format from the magic bytes, whatever the key's extension says."""
    if head.startswith(_PNG_SIGNATURE):
        return "PNG"
    if head.startswith(_JPEG_SOI):
        return "JPEG"
    if len(head) < len(_PNG_SIGNATURE) and size > len(head):
        raise NeedMoreBytes(len(_PNG_SIGNATURE))
    known = next((fmt for magic, fmt in _OTHER_FORMATS if head.startswith(magic)), None)
    found = f"it is a {known} image" if known else f"it starts with bytes {head[:8].hex(' ')}"
    raise ImageProblem(INVALID_IMAGE, f"{name} is not a PNG or JPEG image ({found}); convert it to PNG or JPEG")


def _need(head: bytes, size: int, needed: int, name: str) -> None:
    """Insist that ``head`` holds ``needed`` bytes: ask for more, or, when the
    file has no more, report it cut short."""
    if len(head) >= needed:
        return
    if len(head) >= size:
        raise ImageProblem(INVALID_IMAGE, f"{name} is truncated: the file ends inside its header ({size} bytes)")
    raise NeedMoreBytes(needed)


def _png_dimensions(head: bytes, size: int, name: str) -> tuple[int, int]:
    # Signature (8), then the IHDR chunk: length (4) = 13, "IHDR", width (4),
    # height (4), 5 more bytes, CRC (4) over type and data.
    _need(head, size, 33, name)
    if head[8:16] != b"\x00\x00\x00\x0dIHDR" or zlib.crc32(head[12:29]) != int.from_bytes(head[29:33], "big"):
        raise ImageProblem(INVALID_IMAGE, f"{name} is a damaged PNG: its header (IHDR) is corrupt")
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def _jpeg_header(head: bytes, size: int, name: str) -> tuple[int, int, int]:
    """Walk the JPEG's marker segments up to the frame header: (width, height, orientation)."""
    pos, orientation = 2, 1
    while True:
        _need(head, size, pos + 4, name)
        if head[pos] != 0xFF:
            raise ImageProblem(INVALID_IMAGE, f"{name} is a damaged JPEG: no marker at byte {pos} of its header")
        marker = head[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame
            raise ImageProblem(INVALID_IMAGE, f"{name} is a damaged JPEG: it has no frame header")
        length = int.from_bytes(head[pos + 2 : pos + 4], "big")
        if length < 2:
            raise ImageProblem(INVALID_IMAGE, f"{name} is a damaged JPEG: bad segment length at byte {pos}")
        if marker in _JPEG_SOF:
            # FF Cn, length (2), precision (1), height (2), width (2)
            _need(head, size, pos + 9, name)
            height = int.from_bytes(head[pos + 5 : pos + 7], "big")
            width = int.from_bytes(head[pos + 7 : pos + 9], "big")
            return width, height, orientation
        end = pos + 2 + length
        if marker == 0xE1:  # APP1: EXIF (or XMP, which exif_orientation ignores)
            _need(head, size, end, name)
            orientation = _exif_orientation(head[pos + 4 : end]) or orientation
        pos = end


def _exif_orientation(payload: bytes) -> int | None:
    """The orientation tag of IFD0 in an APP1 Exif payload, if there is one."""
    if not payload.startswith(b"Exif\x00\x00"):
        return None
    tiff = payload[6:]
    order: Literal["little", "big"]
    if tiff[:2] == b"II":
        order = "little"
    elif tiff[:2] == b"MM":
        order = "big"
    else:
        return None
    ifd = int.from_bytes(tiff[4:8], order)
    count = int.from_bytes(tiff[ifd : ifd + 2], order)
    for i in range(count):
        entry = tiff[ifd + 2 + 12 * i : ifd + 14 + 12 * i]
        if len(entry) < 12:
            return None
        if int.from_bytes(entry[0:2], order) == _EXIF_ORIENTATION:
            value = int.from_bytes(entry[8:10], order)  # a SHORT, left-justified in the value field
            return value if 1 <= value <= 8 else None
    return None


def _check_complete(fmt: str, tail: bytes, name: str) -> None:
    """A cut-off upload is the usual damage: look for the end marker in the last
    bytes (after it, padding or appended data is tolerated)."""
    if fmt == "JPEG" and _JPEG_EOI not in tail:
        raise ImageProblem(
            INVALID_IMAGE,
            f"{name} is truncated or damaged: a JPEG ends with the end-of-image marker (FF D9), "
            f"which is not in its last {len(tail)} bytes. Upload the complete file again",
        )
    if fmt == "PNG" and _PNG_IEND not in tail:
        raise ImageProblem(
            INVALID_IMAGE,
            f"{name} is truncated or damaged: a PNG ends with an IEND chunk, which is not in its "
            f"last {len(tail)} bytes. Upload the complete file again",
        )


def _check_dimensions(width: int, height: int, name: str) -> None:
    if min(width, height) < IMAGE_MIN_SIDE or max(width, height) > IMAGE_MAX_SIDE:
        raise ImageProblem(
            INVALID_IMAGE_DIMENSION,
            f"{name} is {width}x{height} pixels; each side must be between {IMAGE_MIN_SIDE} and "
            f"{IMAGE_MAX_SIDE} pixels. Resize it",
        )
    ratio = max(width, height) / min(width, height)
    if ratio > MAX_ASPECT_RATIO:
        raise ImageProblem(
            INVALID_IMAGE_DIMENSION,
            f"{name} is {width}x{height} pixels, an aspect ratio of {ratio:.1f}:1; the limit is "
            f"{MAX_ASPECT_RATIO}:1. Crop or pad it",
        )


# --- decoding -------------------------------------------------------------------
# Pixels being decoded at once in this process, at most: what a flood of large
# images (a 4096x4096 PNG needs 130-190 MB while it decodes; a JPEG decodes in
# draft mode for a fraction of that) can make a unit, a training worker or the
# console hold. Two of the largest images accepted fit at a time; small images
# (a 640x480 photo is 0.3 Mpx) never wait.
DECODE_PIXEL_BUDGET = 2 * IMAGE_MAX_SIDE * IMAGE_MAX_SIDE
_M_MMAP_THRESHOLD = -3  # mallopt's parameter (malloc.h)


class PixelBudget:
    """At most ``limit`` pixels held at once by ``hold``; a request over the limit is taken as the limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        pixels = max(0, min(pixels, self.limit))
        with self._changed:
            self._changed.wait_for(lambda: self.held + pixels <= self.limit)
            self.held += pixels
        try:
            yield
        finally:
            with self._changed:
                self.held -= pixels
                self._changed.notify_all()


DECODING = PixelBudget(DECODE_PIXEL_BUDGET)


def return_freed_memory_to_the_os(threshold: int = 1 << 20) -> bool:
    """Have glibc's malloc serve every allocation over ``threshold`` bytes with its own mapping, so
    that the memory of a decoded image goes back to the system when the image is freed.

    By default glibc raises that threshold after each large free (up to 32 MB), and from then on
    decoded images come from per-thread heaps that keep their highest level for good: measured, 8
    threads decoding 4096x4096 PNGs grew a process by 840 MB with the budget above, 270 MB with it and
    this. For a process that decodes untrusted images all day (an inference unit). False where the C
    library has no ``mallopt`` (not glibc): nothing changed.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))


def decode_image(
    data: bytes, *, max_side: int = IMAGE_MAX_SIDE, draft_to: tuple[int, int] | None = None
) -> Image.Image:
    """Decode a PNG or JPEG to RGB, upright (EXIF orientation applied).

    The dimensions are read from the header and checked (no side over
    ``max_side``, at most ``max_side``² pixels) before any pixel is decoded,
    and the decoding waits its turn in ``DECODING`` (memory stays bounded
    however many threads decode). ``draft_to`` (width, height, as displayed)
    lets a JPEG decode at a reduced scale no smaller than that size, which is
    much faster for big photos; the result is then at least that size, not
    exactly it. Whatever the bytes, the only exception is ``ImageProblem``.
    """
    # The header as inspection reads it, before Pillow parses anything: the same format and size checks
    # as an import's, in the same words.
    name = "the image"
    _check_size(len(data), name)
    if _sniff(data, len(data), name) == "PNG":
        _refuse_bomb(_png_dimensions(data, len(data), name), max_side)
    else:
        _refuse_bomb(_jpeg_header(data, len(data), name)[:2], max_side)
    try:
        image = Image.open(io.BytesIO(data), formats=("JPEG", "PNG"))
    except Image.DecompressionBombError as exc:  # Pillow's own (much higher) cap
        raise ImageProblem(INVALID_IMAGE_DIMENSION, f"the image is too large to decode: {exc}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ImageProblem(INVALID_IMAGE, "the image is not a readable PNG or JPEG") from None
    _refuse_bomb(image.size, max_side)  # what Pillow read, in case it differs
    with DECODING.hold(image.width * image.height):
        try:
            # A JPEG's EXIF is in its header; a PNG's eXIf chunk may follow the pixels, so Pillow decodes them
            # to find it: inside this ``try``, where a damaged file is reported.
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
            if draft_to is not None and image.format == "JPEG":
                width, height = draft_to
                if orientation in (5, 6, 7, 8):  # draft works on the stored grid, the caller thinks upright
                    width, height = height, width
                image.draft("RGB", (width, height))
            image.load()
            return _to_rgb(ImageOps.exif_transpose(image))
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageProblem(INVALID_IMAGE, f"the image is truncated or damaged: {exc}") from None


def _refuse_bomb(size: tuple[int, int], max_side: int) -> None:
    width, height = size
    if width < 1 or height < 1 or max(width, height) > max_side or width * height > max_side * max_side:
        raise ImageProblem(
            INVALID_IMAGE_DIMENSION,
            f"the image is {width}x{height} pixels; refusing to decode more than {max_side} pixels a side",
        )


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode.startswith("I"):
        # 16-bit greyscale PNG: scale to 8 bits (a plain convert would clip
        # everything above 255 to white).
        image = image.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    elif image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # what Pillow wants before dropping a palette's transparency
    return image.convert("RGB") if image.mode != "RGB" else image
