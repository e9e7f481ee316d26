"""Image inspection and decoding, on real photos (read in place from the shared
datasets, never copied) and on images generated here."""
from __future__ import annotations

import io
import warnings
import zlib
from pathlib import Path
from typing import AsyncIterator

import numpy as np
import pytest
from PIL import Image, ImageFile

from customlabels.adapters.local_blobs import LocalBlobStore
from customlabels.images import (
    HEAD_BYTES,
    IMAGE_MAX_BYTES,
    INVALID_IMAGE,
    INVALID_IMAGE_DIMENSION,
    MAX_HEAD_BYTES,
    ImageInfo,
    ImageProblem,
    NeedMoreBytes,
    decode_image,
    inspect_blob,
    inspect_image,
)

DATASETS = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"
DAISIES = sorted((DATASETS / "flowers-small" / "daisy").glob("*.jpg"))[:5]
BLOOD = sorted((DATASETS / "bccd" / "JPEGImages").glob("*.jpg"))[:3]
needs_datasets = pytest.mark.skipif(not DAISIES or not BLOOD, reason=f"shared datasets not found at {DATASETS}")


# --- helpers ----------------------------------------------------------------------
def inspect(data: bytes, head: int = HEAD_BYTES) -> ImageInfo:
    return inspect_image(data[:head], data[-1024:], len(data))


def problem(data: bytes) -> ImageProblem:
    with pytest.raises(ImageProblem) as caught:
        inspect(data)
    return caught.value


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


def noise(width: int, height: int, mode: str = "RGB") -> Image.Image:
    """Random pixels: they do not compress, so files are big enough to cut in half."""
    channels = {"RGB": 3, "RGBA": 4}[mode]
    pixels = np.random.default_rng(7).integers(0, 256, (height, width, channels), dtype=np.uint8)
    return Image.fromarray(pixels, mode)


def png(width: int, height: int, mode: str = "RGB") -> bytes:
    return encode(Image.new(mode, (width, height), "white"), "PNG")


def jpeg(width: int, height: int, **options) -> bytes:
    return encode(Image.new("RGB", (width, height), "navy"), "JPEG", **options)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def crafted_png(width: int, height: int) -> bytes:
    """A complete-looking PNG whose header claims any size, with almost no pixel
    data behind it: nothing is allocated to make it."""
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])  # 8-bit RGB
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + png_chunk(b"IEND", b"")
    )


def with_comments(jpeg_bytes: bytes, total: int) -> bytes:
    """The JPEG with ``total`` bytes of COM segments between SOI and the rest,
    pushing the frame header that far in."""
    segments = b""
    while total > 0:
        size = min(total, 60_000)
        segments += b"\xff\xfe" + (size + 2).to_bytes(2, "big") + b"c" * size
        total -= size
    return jpeg_bytes[:2] + segments + jpeg_bytes[2:]


@pytest.fixture
def no_pixel_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self, *args, **kwargs):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", refuse)


# --- inspect_image: accepted -----------------------------------------------------------
@needs_datasets
@pytest.mark.parametrize("path", DAISIES + BLOOD, ids=lambda p: p.name)
def test_real_jpegs(path: Path) -> None:
    data = path.read_bytes()
    info = inspect(data)
    with Image.open(path) as reference:
        assert (info.format, info.width, info.height) == ("JPEG", *reference.size)
    assert info.size_bytes == len(data)
    assert info.orientation == 1


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "LA"])
def test_generated_pngs(mode: str) -> None:
    assert inspect(png(300, 200, mode)) == ImageInfo("PNG", 300, 200, len(png(300, 200, mode)))


def test_sixteen_bit_png() -> None:
    data = encode(Image.fromarray(np.full((80, 120), 40000, dtype=np.uint16)), "PNG")
    assert (inspect(data).width, inspect(data).height) == (120, 80)


@pytest.mark.parametrize("options", [{}, {"progressive": True}, {"quality": 10, "subsampling": 0}])
def test_generated_jpegs(options: dict) -> None:
    info = inspect(jpeg(640, 360, **options))
    assert (info.format, info.width, info.height) == ("JPEG", 640, 360)


@pytest.mark.parametrize("size", [(64, 64), (64, 1280), (4096, 205), (1280, 64)])
def test_limits_are_inclusive(size: tuple[int, int]) -> None:
    assert (inspect(png(*size)).width, inspect(png(*size)).height) == size


def test_exactly_the_byte_limit(no_pixel_decoding: None) -> None:
    data = png(100, 100)
    assert inspect_image(data, data[-1024:], IMAGE_MAX_BYTES).size_bytes == IMAGE_MAX_BYTES


def test_padding_after_the_end_marker_is_tolerated() -> None:
    assert inspect(jpeg(100, 100) + b"\x00" * 200).format == "JPEG"
    assert inspect(png(100, 100) + b"\n").format == "PNG"


def test_exif_orientation_is_reported_but_sizes_stay_as_stored() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    info = inspect(encode(Image.new("RGB", (300, 100)), "JPEG", exif=exif))
    assert (info.width, info.height, info.orientation) == (300, 100, 6)
    assert info.display_size == (100, 300)


def test_extension_does_not_matter_magic_bytes_do() -> None:
    # inspect_image never sees a name: a PNG called .jpg is a PNG.
    assert inspect(png(100, 100)).format == "PNG"


# --- inspect_image: refused ----------------------------------------------------------
def test_not_an_image() -> None:
    caught = problem(b"name,label\ncat.jpg,cat\n" * 10)
    assert caught.code == INVALID_IMAGE
    assert "not a PNG or JPEG" in caught.message


@pytest.mark.parametrize(
    "fmt, options, named",
    [("GIF", {}, "GIF"), ("BMP", {}, "BMP"), ("WEBP", {}, "WebP"), ("TIFF", {}, "TIFF")],
)
def test_other_formats_are_named(fmt: str, options: dict, named: str) -> None:
    caught = problem(encode(Image.new("RGB", (100, 100)), fmt, **options))
    assert caught.code == INVALID_IMAGE
    assert named in caught.message and "convert it to PNG or JPEG" in caught.message


def test_empty_file() -> None:
    assert problem(b"").code == INVALID_IMAGE


@needs_datasets
def test_truncated_real_jpeg() -> None:
    data = BLOOD[0].read_bytes()
    caught = problem(data[: len(data) // 2])
    assert caught.code == INVALID_IMAGE
    assert "truncated" in caught.message and "FF D9" in caught.message


def test_truncated_png() -> None:
    data = encode(noise(200, 200), "PNG")
    caught = problem(data[: len(data) // 2])
    assert caught.code == INVALID_IMAGE
    assert "truncated" in caught.message and "IEND" in caught.message


def test_file_cut_inside_its_header() -> None:
    # The whole file is given and still ends in the header: truncated, not NeedMoreBytes.
    assert problem(png(100, 100)[:20]).code == INVALID_IMAGE
    assert problem(jpeg(100, 100)[:10]).code == INVALID_IMAGE


def test_corrupt_png_header() -> None:
    data = bytearray(png(100, 100))
    data[17] ^= 0xFF  # inside the width: the IHDR CRC no longer matches
    caught = problem(bytes(data))
    assert caught.code == INVALID_IMAGE and "IHDR" in caught.message


def test_huge_claimed_png_is_refused_from_its_header(no_pixel_decoding: None) -> None:
    data = crafted_png(20000, 20000)
    assert len(data) < 200
    caught = problem(data)
    assert caught.code == INVALID_IMAGE_DIMENSION
    assert "20000x20000" in caught.message and "4096" in caught.message


def test_too_small() -> None:
    caught = problem(png(32, 32))
    assert caught.code == INVALID_IMAGE_DIMENSION
    assert "32x32" in caught.message and "64" in caught.message


def test_too_wide_a_side() -> None:
    assert problem(png(4097, 300)).code == INVALID_IMAGE_DIMENSION


def test_aspect_ratio_over_twenty() -> None:
    caught = problem(png(100, 2100))
    assert caught.code == INVALID_IMAGE_DIMENSION
    assert "100x2100" in caught.message and "21.0:1" in caught.message and "20:1" in caught.message


def test_over_fifteen_megabytes(no_pixel_decoding: None) -> None:
    data = jpeg(200, 200)
    caught = problem_for_size(data, IMAGE_MAX_BYTES + 1)
    assert caught.code == INVALID_IMAGE
    assert str(IMAGE_MAX_BYTES + 1) in caught.message and "15 MB" in caught.message


def problem_for_size(data: bytes, size: int) -> ImageProblem:
    with pytest.raises(ImageProblem) as caught:
        inspect_image(data, data[-1024:], size)
    return caught.value


# --- NeedMoreBytes -----------------------------------------------------------------------
def test_need_more_bytes_for_a_short_png_head() -> None:
    data = png(100, 100)
    with pytest.raises(NeedMoreBytes) as first:
        inspect_image(data[:4], data[-1024:], len(data))
    with pytest.raises(NeedMoreBytes) as second:
        inspect_image(data[: first.value.needed], data[-1024:], len(data))
    assert second.value.needed == 33
    assert inspect_image(data[: second.value.needed], data[-1024:], len(data)).width == 100


def test_need_more_bytes_for_a_jpeg_with_big_metadata() -> None:
    data = with_comments(jpeg(120, 90), 200_000)
    with pytest.raises(NeedMoreBytes) as caught:
        inspect(data, head=HEAD_BYTES)
    assert not isinstance(caught.value, ImageProblem)  # callers tell the two apart
    assert caught.value.needed > HEAD_BYTES
    assert inspect(data, head=len(data)).width == 120


# --- inspect_blob ------------------------------------------------------------------------
class SpyStore(LocalBlobStore):
    """Records what inspect_blob reads."""

    reads: list[tuple[int, int]]

    async def read_range(self, bucket: str, key: str, start: int, length: int) -> bytes:
        self.reads.append((start, length))
        return await super().read_range(bucket, key, start, length)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SpyStore]:
    spy = SpyStore(tmp_path / "blobs")
    spy.reads = []
    await spy.start()
    await spy.ensure_bucket("images")
    yield spy
    await spy.close()


@needs_datasets
async def test_inspect_blob_reads_head_and_tail_only(store: SpyStore) -> None:
    data = DAISIES[0].read_bytes()
    await store.put("images", "daisy/1.jpg", data)
    info = await inspect_blob(store, "images", "daisy/1.jpg")
    with Image.open(DAISIES[0]) as reference:
        assert (info.width, info.height) == reference.size
    assert sorted(store.reads) == [(-1024, 1024), (0, HEAD_BYTES)]


async def test_inspect_blob_grows_the_head_for_big_metadata(store: SpyStore) -> None:
    await store.put("images", "meta.jpg", with_comments(jpeg(120, 90), 200_000))
    assert (await inspect_blob(store, "images", "meta.jpg")).height == 90
    heads = [length for start, length in store.reads if start == 0]
    assert heads[0] == HEAD_BYTES and heads[-1] <= MAX_HEAD_BYTES and len(heads) <= 3


async def test_inspect_blob_gives_up_past_one_mebibyte_of_metadata(store: SpyStore) -> None:
    await store.put("images", "meta.jpg", with_comments(jpeg(120, 90), MAX_HEAD_BYTES + 1000))
    with pytest.raises(ImageProblem) as caught:
        await inspect_blob(store, "images", "meta.jpg")
    assert caught.value.code == INVALID_IMAGE and "metadata" in caught.value.message
    assert max(length for _, length in store.reads) <= MAX_HEAD_BYTES


@pytest.mark.parametrize("bucket, key", [("images", "missing.jpg"), ("no-such-bucket", "a.jpg")])
async def test_inspect_blob_missing_object(store: SpyStore, bucket: str, key: str) -> None:
    with pytest.raises(ImageProblem) as caught:
        await inspect_blob(store, bucket, key)
    assert caught.value.code == INVALID_IMAGE
    assert f"s3://{bucket}/{key}" in caught.value.message and "not found" in caught.value.message


async def test_inspect_blob_invalid_key(store: SpyStore) -> None:
    with pytest.raises(ImageProblem) as caught:
        await inspect_blob(store, "images", "../etc/passwd")
    assert caught.value.code == INVALID_IMAGE


async def test_inspect_blob_names_the_image_in_problems(store: SpyStore) -> None:
    await store.put("images", "small.png", png(32, 32))
    with pytest.raises(ImageProblem) as caught:
        await inspect_blob(store, "images", "small.png")
    assert caught.value.code == INVALID_IMAGE_DIMENSION
    assert caught.value.message.startswith("image s3://images/small.png is 32x32 pixels")


async def test_inspect_blob_oversized_object_is_not_read(store: SpyStore) -> None:
    big = png(100, 100)
    await store.put("images", "big.png", big + b"\x00" * (IMAGE_MAX_BYTES + 1 - len(big)))
    with pytest.raises(ImageProblem) as caught:
        await inspect_blob(store, "images", "big.png")
    assert caught.value.code == INVALID_IMAGE and "15 MB" in caught.value.message
    assert store.reads == []


# --- decode_image ------------------------------------------------------------------------
@needs_datasets
def test_decode_real_jpeg() -> None:
    data = BLOOD[0].read_bytes()
    image = decode_image(data)
    assert (image.mode, image.size) == ("RGB", (640, 480))


@needs_datasets
def test_decode_with_draft_reduces_the_scale() -> None:
    image = decode_image(BLOOD[0].read_bytes(), draft_to=(160, 120))
    assert image.mode == "RGB"
    assert image.size == (160, 120)  # libjpeg decoded at 1/4 scale
    near = decode_image(BLOOD[0].read_bytes(), draft_to=(200, 150))
    assert near.size[0] >= 200 and near.size[1] >= 150  # never smaller than asked


def test_draft_is_in_displayed_orientation() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.new("RGB", (800, 400)), "JPEG", exif=exif)
    assert decode_image(data).size == (400, 800)  # upright
    assert decode_image(data, draft_to=(100, 200)).size == (100, 200)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "P"])
def test_decode_png_modes_to_rgb(mode: str) -> None:
    image = decode_image(png(100, 80, mode))
    assert (image.mode, image.size) == ("RGB", (100, 80))


def test_decode_palette_with_transparency_quietly() -> None:
    paletted = Image.new("P", (100, 100), 3)
    data = encode(paletted, "PNG", transparency=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert decode_image(data).mode == "RGB"


def test_decode_sixteen_bit_png_scales_rather_than_clips() -> None:
    data = encode(Image.fromarray(np.full((80, 120), 32768, dtype=np.uint16)), "PNG")
    pixel = decode_image(data).getpixel((5, 5))
    assert all(120 <= value <= 136 for value in pixel)  # mid grey, not white


def test_decode_refuses_a_bomb_before_decoding(no_pixel_decoding: None) -> None:
    for data in (crafted_png(20000, 20000), crafted_png(5000, 5000), crafted_png(4096, 4097)):
        with pytest.raises(ImageProblem) as caught:
            decode_image(data)
        assert caught.value.code == INVALID_IMAGE_DIMENSION


def test_decode_honours_max_side(no_pixel_decoding: None) -> None:
    with pytest.raises(ImageProblem) as caught:
        decode_image(png(300, 200), max_side=256)
    assert "300x200" in caught.value.message


@needs_datasets
def test_decode_truncated_jpeg() -> None:
    data = DAISIES[0].read_bytes()
    with pytest.raises(ImageProblem) as caught:
        decode_image(data[: len(data) // 2])
    assert caught.value.code == INVALID_IMAGE


@pytest.mark.parametrize("data", [b"not an image", encode(Image.new("RGB", (10, 10)), "GIF")], ids=["text", "gif"])
def test_decode_refuses_other_content(data: bytes) -> None:
    with pytest.raises(ImageProblem) as caught:
        decode_image(data)
    assert caught.value.code == INVALID_IMAGE
