"""The one image preprocessing used by training, evaluation and serving.

    pixels = load_pixels(image_bytes, 224)          # (224, 224, 3) uint8, cacheable
    batch = normalize(np.stack([pixels]), spec)     # (1, 3, 224, 224) float32, the model input
    batch = preprocess([image_bytes], spec)         # both steps at once

Steps, and why:

1. **Decode** with ``customlabels.images.decode_image`` (bomb-safe, EXIF
   orientation applied) and ``draft_to`` the target size: a JPEG decodes at
   1/2, 1/4 or 1/8 scale when that still covers the target, several times
   faster for big photos, and the result is still at least the target size.
2. **Bounded centre crop**: the longer side is cropped (centred) to at most
   4/3 of the shorter side, then the picture is **resized to a square**
   (Pillow bilinear with antialiasing). A plain ImageNet centre crop throws
   away 25 % of a 4:3 photo, and a label can sit at the edge; a plain squash
   distorts a 16:9 or panoramic image far beyond anything the backbone saw.
   ImageNet training itself resized crops of aspect 3/4..4/3 to squares
   (RandomResizedCrop), so up to 4:3 the squash is in distribution, and
   beyond it a centred crop is the lesser evil. On flowers-small linear probes
   the two plain choices were within noise of each other (MobileNetV2: crop
   0.858, squash 0.853; EfficientNet-Lite2: crop 0.892, squash 0.900 macro-F1,
   mean of 10 splits).
   Object localization uses ``resize="stretch"`` instead: the whole image is
   resized to the square, never cropped, so no object is cut away and a box's
   ratios of the image are its ratios of the model input, one to one.
3. **Normalise** with the backbone's own mean and std (ImageNet statistics for
   MobileNetV2; 0.5/0.5 for the EfficientNet-Lite checkpoints, which were
   ported from TensorFlow and expect inputs in [-1, 1]: with ImageNet
   statistics their linear probe lost 3.6 points), to float32 NCHW.

Everything is Pillow + numpy, deterministic, and the same array feeds torch
(``torch.from_numpy``) and onnxruntime, so both runtimes see identical inputs.
Training caches the uint8 output of ``load_pixels`` (decode once) and draws its
augmentations from it.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from customlabels.images import decode_image

MAX_ASPECT = 4 / 3  # the widest aspect ratio squashed into a square; beyond it, centre crop
# How the picture becomes a square (``Preprocessing.resize``), as ``to_dict`` describes it.
RESIZE_MODES = {
    "crop": "centre-crop to aspect <= 4:3, then bilinear resize to a square",
    "stretch": "bilinear resize of the whole image to a square, no crop",
}

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HALF = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class Preprocessing:
    """What a model expects: recorded with every trained model and exported with it."""

    input_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resize: str = "crop"  # a key of RESIZE_MODES: "crop" (classification) or "stretch" (localization)

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, not {self.resize!r}")

    def to_dict(self) -> dict:
        return {"input_size": self.input_size, "mean": list(self.mean), "std": list(self.std),
                "resize": RESIZE_MODES[self.resize]}

    @classmethod
    def from_dict(cls, data: dict) -> Preprocessing:
        # "resize" holds the description (older files: always the crop one); a bare mode name is taken too.
        described = {text: mode for mode, text in RESIZE_MODES.items()}
        resize = data.get("resize", "crop")
        return cls(int(data["input_size"]), tuple(data["mean"]), tuple(data["std"]), described.get(resize, resize))


def load_pixels(data: bytes, size: int, resize: str = "crop") -> np.ndarray:
    """Decode image bytes to a ``(size, size, 3)`` uint8 RGB array (steps 1 and 2).

    Raises ``customlabels.images.ImageProblem`` for bytes that are not a usable image.
    """
    image = decode_image(data, draft_to=(size, size))
    if resize == "stretch":
        return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR))
    return np.asarray(square(image, size))


def square(image: Image.Image, size: int) -> Image.Image:
    """Crop the longer side (centred) to at most ``MAX_ASPECT`` times the shorter, resize to ``size``²."""
    width, height = image.size
    if width > height * MAX_ASPECT:
        keep = round(height * MAX_ASPECT)
        left = (width - keep) // 2
        image = image.crop((left, 0, left + keep, height))
    elif height > width * MAX_ASPECT:
        keep = round(width * MAX_ASPECT)
        top = (height - keep) // 2
        image = image.crop((0, top, width, top + keep))
    return image.resize((size, size), Image.Resampling.BILINEAR)


def normalize(pixels: np.ndarray, spec: Preprocessing) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 -> ``(N, 3, H, W)`` float32, normalised (step 3)."""
    mean = np.asarray(spec.mean, dtype=np.float32) * 255
    inv_std = 1 / (np.asarray(spec.std, dtype=np.float32) * 255)
    batch = (pixels.astype(np.float32) - mean) * inv_std
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))


def preprocess(images: Iterable[bytes], spec: Preprocessing) -> np.ndarray:
    """Image bytes -> the model's ``(N, 3, size, size)`` float32 input."""
    pixels = [load_pixels(data, spec.input_size, spec.resize) for data in images]
    if not pixels:
        return np.zeros((0, 3, spec.input_size, spec.input_size), dtype=np.float32)
    return normalize(np.stack(pixels), spec)
