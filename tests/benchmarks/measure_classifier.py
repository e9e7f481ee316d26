"""Measure the classifier trainer on flowers-small against a plain linear probe.

    python -m tests.benchmarks.measure_classifier [--budget 180] [--backbone auto] [--seed 0]

flowers-small (5 classes x 40 photos) is split 80/20, stratified and seeded.
Printed side by side, measured in the same run on the same split:

* ``linear probe``: what any user could write in ten lines: frozen MobileNetV2
  features (torchvision's own eval transforms: resize 256, centre crop 224)
  and scikit-learn's LogisticRegression.
* ``train_classifier``: this project's trainer, with the given budget.

Macro-F1 on the 20 % test images, and training seconds. The test images are
never seen by either during training. Set ``CUSTOMLABELS_WEIGHTS`` if the
weights are not under ./weights.

Measured (2 shared CPU cores; seeds 0-7 of ``--seed``; all numbers macro-F1):

    seed                      0     1     2     3     4     5     6     7    mean
    reference linear probe  0.904 0.819 0.901 0.901 0.793 0.852 0.876 0.920 0.871  (8-21 s)
    ours, auto (lite2)      0.949 0.876 0.902 0.975 0.872 0.875 0.924 0.923 0.912  (99-121 s)
    ours, mobilenet_v2      0.950 0.873 0.904 0.925 0.851 0.828 0.849 0.821 0.875  (43-55 s)
    ours, lite0             0.902 0.852 0.898                                      (52-63 s)
    ours, 2026-12-07 (pair) 0.924 0.919 0.876 0.975 0.857 0.850 0.901 0.948 0.906  (81-84 s)
    the same, Lite2@320     0.924 0.924 0.901 0.975 0.830 0.850 0.898 0.897 0.900  (70-77 s)

The 2026-12-07 row is the recipe as it stands (Lite2@320 + MobileNetV2 pair,
label-smoothed probes, views judged on the holdout), run on 2026-12-07 right
after the 2026-11-26 recipe (commit e9bbfd4, run from a worktree), which
reproduced its row above to the third decimal, seed by seed: on these eight
splits 2 better, 1 level, 5 worse, -0.6 points on average (standard error of
the paired mean 0.9); the feature pair is not the cause (the row below it:
``--set FEW_IMAGES=100``, Lite2@320 alone, the rest as it stands). On sixteen
more splits (seeds 8-23, both recipes and the probe in the same session):

    seeds 8-23, mean        reference 0.869   2026-11-26 0.885   2026-12-07 0.893

so over all 24 splits the probe reads 0.869, the 2026-11-26 recipe 0.894 and
the current one 0.898 (paired +0.4 points, standard error 0.75; 12 splits
better, 2 level, 10 worse; ahead of the probe on 20 and 17 of 24). At 32
images per label the few-shot gains (``bench_fewshot``) shrink to nothing
measurable, and nothing is lost.

The first classifier issue's target (>= 0.93 at 180 s on a seeded split where
the probe scores about 0.90) held on seed 0 with the 2026-11-26 recipe (0.949
against 0.904); the current one reads 0.924 there (one test image). 40 test
images make one image 2-3 points: read the mean over splits, not a seed
(bench-train, through the service, now reports 16: 0.905 against the
2026-11-26 recipe's 0.896).
Backbone comparisons by linear probes over 10 splits are in
``customlabels.ml.classifier.MEASUREMENTS``.
"""
from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path

import numpy as np
import torch
from customlabels.ml import classifier
from customlabels.ml.backbones import load_backbone
from customlabels.ml.classifier import train_classifier
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.model_selection import train_test_split

DATASET = Path(__file__).resolve().parents[2].parent / "shared" / "datasets" / "flowers-small"


def load_flowers(root: Path = DATASET) -> tuple[list[bytes], list[str], list[str]]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    images, labels = [], []
    for name in classes:
        for path in sorted((root / name).glob("*.jpg")):
            images.append(path.read_bytes())
            labels.append(name)
    return images, labels, classes


def split(labels: list[str], seed: int) -> tuple[np.ndarray, np.ndarray]:
    index = np.arange(len(labels))
    train, test = train_test_split(index, test_size=0.2, stratify=labels, random_state=seed)
    return np.sort(train), np.sort(test)


def linear_probe(images, labels, train, test) -> tuple[float, float]:
    """Frozen MobileNetV2 + LogisticRegression, as a user would write it."""
    from torchvision.models import MobileNet_V2_Weights

    start = time.monotonic()
    features, _, _ = load_backbone("mobilenet_v2")
    transform = MobileNet_V2_Weights.IMAGENET1K_V1.transforms()
    with torch.inference_mode():
        feats = np.concatenate([
            features(torch.stack([transform(Image.open(io.BytesIO(images[i])).convert("RGB")) for i in chunk])).numpy()
            for chunk in np.array_split(np.arange(len(images)), max(1, len(images) // 32))
        ])
    y = np.asarray(labels)
    clf = LogisticRegression(max_iter=1000).fit(feats[train], y[train])
    seconds = time.monotonic() - start  # features of the test images included: negligible either way
    return f1_score(y[test], clf.predict(feats[test]), average="macro"), seconds


def ours(images, labels, classes, train, test, budget, backbone, seed) -> tuple[float, float, list[dict]]:
    items = [(images[i], {labels[i]}) for i in train]
    start = time.monotonic()
    model = train_classifier(items, task="multiclass", labels=classes, budget_seconds=budget,
                             backbone=backbone, seed=seed)
    seconds = time.monotonic() - start
    scores = model.predict([images[i] for i in test])
    predicted = [classes[k] for k in scores.argmax(axis=1)]
    return f1_score([labels[i] for i in test], predicted, average="macro"), seconds, model.log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=180)
    parser.add_argument("--backbone", default="auto", help="auto, mobilenet_v2, efficientnet_lite0/1/2")
    parser.add_argument("--seed", type=int, nargs="+", default=[0], help="split (and training) seeds")
    parser.add_argument("--no-probe", action="store_true", help="skip the linear-probe reference")
    parser.add_argument("--log", action="store_true", help="print the trainer's log")
    parser.add_argument("--set", nargs="*", default=[], metavar="NAME=VALUE",
                        help="override a recipe constant of customlabels.ml.classifier (for measurements)")
    args = parser.parse_args()
    for assignment in args.set:
        name, value = assignment.split("=", 1)
        setattr(classifier, name, type(getattr(classifier, name))(value))
        print(f"recipe override: {name} = {getattr(classifier, name)}")
    torch.set_num_threads(2)
    images, labels, classes = load_flowers()
    backbone = None if args.backbone == "auto" else args.backbone
    print(f"flowers-small: {len(images)} images, {len(classes)} classes; 80/20 stratified split")
    print(f"{'seed':>4}  {'method':44s} {'macro-F1':>8}  {'train s':>7}")
    for seed in args.seed:
        train, test = split(labels, seed)
        if not args.no_probe:
            f1, seconds = linear_probe(images, labels, train, test)
            print(f"{seed:>4}  {'linear probe (MobileNetV2 + LogisticRegression)':44s} {f1:8.3f}  {seconds:7.1f}", flush=True)
        f1, seconds, log = ours(images, labels, classes, train, test, args.budget, backbone, seed)
        chosen = next(e for e in log if e["stage"] == "chosen")
        name = f"train_classifier {args.backbone}, budget {args.budget:.0f} s"
        print(f"{seed:>4}  {name:44s} {f1:8.3f}  {seconds:7.1f}   chose {chosen['from']}", flush=True)
        if args.log:
            for entry in log:
                print("      ", json.dumps(entry))


if __name__ == "__main__":
    main()
