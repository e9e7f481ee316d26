"""A batch of files dropped in the browser, already uploaded under
``<project>/<kind>/`` of the account's upload bucket (``Batch.bucket``), turned into manifest lines by the
shared converters (``customlabels.manifests.converters``, the CLI's too: one
way to read a folder, VOC, COCO or YOLO labels).

Modes: ``unlabeled`` (one line with only ``source-ref`` per image),
``folders`` (the folder holding an image names its label), ``voc``,
``coco``, ``yolo`` (the annotation files dropped with the images). For the
last three the batch is laid out again in a temporary folder (fetched from
the blob store) so the converters read exactly what the CLI would.
"""
from __future__ import annotations

import asyncio
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from customlabels import errors
from customlabels.ports.blobs import BlobStore, BlobStoreError, InvalidKey, Unavailable, check_key

from customlabels.manifests import converters
from customlabels.manifests.converters import Conversion, ConversionError
from services.console.images import ANNOTATION_SUFFIXES, UPLOAD_BUCKET

MODES = ("unlabeled", "folders", "voc", "coco", "yolo")
MAX_FILES = 100_000


@dataclass(frozen=True)
class Batch:
    """What the page uploaded: paths relative to the dropped folder(s)."""

    project: str
    kind: str
    mode: str
    paths: tuple[str, ...]
    bucket: str = UPLOAD_BUCKET  # where they were uploaded: the signed-in account's upload bucket

    @property
    def prefix(self) -> str:
        return f"{self.project}/{self.kind}/"

    @classmethod
    def from_request(cls, project: str, kind: str, body: object, bucket: str = UPLOAD_BUCKET) -> Batch:
        if not isinstance(body, dict):
            raise errors.InvalidParameter("The import request must be a JSON object.")
        mode, paths = body.get("mode"), body.get("paths")
        if mode not in MODES:
            raise errors.InvalidParameter(f"mode must be one of {', '.join(MODES)}.")
        if not isinstance(paths, list) or not paths or len(paths) > MAX_FILES or not all(isinstance(p, str) for p in paths):
            raise errors.InvalidParameter(f"paths must list 1 to {MAX_FILES} uploaded files.")
        for path in paths:
            try:
                check_key(f"{project}/{kind}/{path}")
            except InvalidKey as exc:
                raise errors.InvalidParameter(f"{path}: {exc}") from None
        return cls(project, kind, mode, tuple(dict.fromkeys(paths)), bucket)


async def batch_conversion(blobs: BlobStore, batch: Batch) -> Conversion:
    images = [p for p in batch.paths if p.lower().endswith(converters.IMAGE_SUFFIXES)]
    if batch.mode == "unlabeled":
        result = Conversion()
        for path in images:
            key = batch.prefix + path
            result.entries.append(converters.Entry(Path(path), key, {"source-ref": converters.source_ref(batch.bucket, key)}))
        return result
    if batch.mode == "folders":
        return converters.labels_from_folders([PurePosixPath(p) for p in images], bucket=batch.bucket, prefix=batch.prefix)
    annotations = [p for p in batch.paths if p.lower().endswith(ANNOTATION_SUFFIXES)]
    if not annotations:
        raise errors.InvalidParameter(f"A {batch.mode.upper()} import needs its annotation files dropped with the images.")
    with tempfile.TemporaryDirectory(prefix="console-import-") as folder:
        root = Path(folder)
        await _fetch(blobs, batch, [*images, *annotations], root)
        try:
            return await asyncio.to_thread(_convert, batch, root, images, annotations)
        except ConversionError as exc:
            raise errors.InvalidParameter(str(exc)) from None


async def _fetch(blobs: BlobStore, batch: Batch, paths: list[str], root: Path) -> None:
    gate = asyncio.Semaphore(16)

    async def one(path: str) -> None:
        async with gate:
            try:
                data = await blobs.get(batch.bucket, batch.prefix + path)
            except Unavailable:
                raise
            except BlobStoreError:
                raise errors.InvalidParameter(f"{path} was not uploaded (or could not be read back); upload it again.") from None
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(target.write_bytes, data)

    await asyncio.gather(*(one(path) for path in paths))


def _convert(batch: Batch, root: Path, images: list[str], annotations: list[str]) -> Conversion:
    if batch.mode == "voc":
        return converters.voc_detection(root, bucket=batch.bucket, prefix=batch.prefix)
    if batch.mode == "yolo":
        return converters.yolo_detection(root, bucket=batch.bucket, prefix=batch.prefix)
    result = Conversion()
    for json_path in (p for p in annotations if p.lower().endswith(".json")):
        images_dir = _coco_images_dir(root, json_path, images)
        relative = images_dir.relative_to(root).as_posix()
        prefix = batch.prefix + ("" if relative == "." else relative + "/")
        part = converters.coco_detection(root / json_path, images_dir, bucket=batch.bucket, prefix=prefix)
        result.entries += part.entries
        result.warnings += part.warnings
    if not result.entries and not result.warnings:
        raise ConversionError("a COCO import needs its annotations .json file dropped with the images")
    return result


def _coco_images_dir(root: Path, json_path: str, images: list[str]) -> Path:
    """The folder the COCO file's file_names are relative to: the one, among
    the JSON's own folder and the folders holding dropped images, where most
    of them are found."""
    try:
        names = [str(i.get("file_name", "")) for i in json.loads((root / json_path).read_text()).get("images", [])]
    except (ValueError, AttributeError):
        return (root / json_path).parent
    candidates = {(root / json_path).parent, root, *((root / p).parent for p in images)}
    return max(sorted(candidates), key=lambda folder: sum((folder / name).is_file() for name in names[:500] if name))
