"""Measure the object-localization trainer on the shared VOC datasets, against a reference recipe.

    python -m tests.benchmarks.measure_detector --dataset raccoon --budget 600 [--seed 0] [--device cuda]
    python -m tests.benchmarks.measure_detector --dataset raccoon --budget 600 --reference   # both, one split

Each dataset (microcontroller: train/ and test/ together, 149 images;
raccoon: 200; bccd: 364) is split 80/20, seeded, and stratified by each
image's rarest label. Training sees the 80 % only; the 20 % are scored with
``evaluate_detection`` (IoU 0.5): macro-F1 with each label at its best-F1
threshold (the headline number, as the product reports it) and mAP@0.5.

``--reference`` also trains the recipe the issue compares against:
torchvision's documented custom-backbone Faster R-CNN on MobileNetV2
``features`` (out_channels 1280, one feature map, anchors
((32, 64, 128, 256, 512),) x ((0.5, 1, 2),), RoIAlign 7x7 sampling 2, images
resized by the model to 512 px (``min_size = max_size = 512``), SGD lr 0.005
momentum 0.9 weight decay 5e-4, batch 2, 20 epochs, horizontal flips), with
the same split and scoring. Its images are decoded once, like ours. On a CPU
20 epochs take hours, so ``--reference-cap`` (default: the budget) stops it
early; the printed epochs say how far it got.

Measured (seed 0; full table and notes in ``customlabels.ml.detector.MEASUREMENTS``):

    H100, 60 s (gpu_detector.py)   ours F1 / mAP     reference F1 / mAP
    microcontroller                1.000 / 1.000     0.936 / 0.945
    raccoon                        0.976 / 0.970     0.927 / 0.948
    bccd                           0.866 / 0.886     0.725 / 0.691

    2 shared CPU cores             ours F1 / mAP
    microcontroller, 300 s         0.914 / 0.944
    microcontroller, 600 s         0.820 / 0.820     (heavy load from other jobs: 174 steps)
    raccoon, 600 s                 0.940 / 0.935     reference capped at 600 s: 0.004 / 0.000
    bccd, 600 s                    0.819 / 0.820
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DATASETS = ROOT.parent / "shared" / "datasets"

if str(ROOT / "shared") not in sys.path:  # run from a bare checkout (the GPU machine) too
    sys.path.insert(0, str(ROOT / "shared"))

from customlabels.ml.detector import train_detector
from customlabels.ml.evaluation.detection import Box, evaluate_detection


# --- datasets -------------------------------------------------------------------------------
def _voc(xml_path: Path) -> tuple[str, list[tuple[str, float, float, float, float]], tuple[int, int]]:
    root = ET.parse(xml_path).getroot()
    size = root.find("size")
    width, height = int(float(size.find("width").text)), int(float(size.find("height").text))
    boxes = []
    for obj in root.findall("object"):
        b = obj.find("bndbox")
        x0, y0, x1, y1 = (float(b.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
        boxes.append((obj.find("name").text.strip(), x0, y0, x1, y1))
    return root.find("filename").text, boxes, (width, height)


def load_dataset(name: str, root: Path | None = None) -> tuple[list[bytes], list[list[Box]], list[str]]:
    """``(image bytes, boxes as ratios, sorted labels)`` of a VOC dataset under ``root`` (default ../shared/datasets)."""
    from PIL import Image

    root = Path(root or DATASETS) / name
    if name == "microcontroller":
        pairs = [(x, x.with_suffix(".jpg")) for part in ("train", "test") for x in sorted((root / part).glob("*.xml"))]
    elif name == "raccoon":
        pairs = [(x, root / "images" / _voc(x)[0]) for x in sorted((root / "annotations").glob("*.xml"))]
    elif name == "bccd":
        pairs = [(x, root / "JPEGImages" / (x.stem + ".jpg")) for x in sorted((root / "Annotations").glob("*.xml"))]
    else:
        raise ValueError(f"unknown dataset {name!r}")
    images, boxes = [], []
    for xml_path, image_path in pairs:
        if not image_path.exists():
            continue
        data = image_path.read_bytes()
        width, height = Image.open(io.BytesIO(data)).size  # the real size (the XML's can be wrong)
        _, voc_boxes, _ = _voc(xml_path)
        images.append(data)
        # VOC corners are 1-based pixel indices, inclusive: xmin..xmax covers xmax - xmin + 1 pixels,
        # but datasets disagree; corners as given, divided by the size, is what Rekognition tools do.
        boxes.append([Box(label, x0 / width, y0 / height, (x1 - x0) / width, (y1 - y0) / height)
                      for label, x0, y0, x1, y1 in voc_boxes])
    labels = sorted({b.label for image in boxes for b in image})
    return images, boxes, labels


def split(boxes: list[list[Box]], labels: list[str], seed: int, test_share: float = 0.2):
    """Seeded train/test indices, stratified by each image's rarest label."""
    counts = {name: 0 for name in labels}
    for image in boxes:
        for b in image:
            counts[b.label] += 1
    rarest = [min((counts[b.label], b.label) for b in image)[1] if image else "" for image in boxes]
    rng = np.random.default_rng(seed)
    test = []
    for group in sorted(set(rarest)):
        members = rng.permutation([i for i, r in enumerate(rarest) if r == group])
        test.extend(members[: round(test_share * len(members))].tolist())
    test = np.sort(np.asarray(test, dtype=np.int64))
    train = np.setdiff1d(np.arange(len(boxes)), test)
    return train, test


def score(labels, truth: list[list[Box]], predicted: list[list[tuple]]) -> dict:
    """Macro-F1 (best threshold per label) and mAP@0.5; ``predicted``: (label, score, left, top, width, height)."""
    true_boxes = [[Box(b.label, b.left, b.top, b.width, b.height) for b in image] for image in truth]
    pred_boxes = [[Box(label, left, top, width, height, min(max(s, 0.0), 1.0)) for label, s, left, top, width, height in image]
                  for image in predicted]
    evaluation = evaluate_detection(labels, true_boxes, pred_boxes)
    return {"macro_f1": round(evaluation.aggregate.f1, 4),
            "map50": round(evaluation.aggregate.average_precision or 0.0, 4),
            "per_label_f1": {name: round(m.f1, 4) for name, m in evaluation.metrics.items()}}


# --- ours --------------------------------------------------------------------------------------
def run_ours(images, boxes, labels, train, test, *, budget, seed, device=None, backbone=None, weights=None,
             input_size=None, quiet=False) -> dict:
    def progress(stage, fraction, message):
        if not quiet:
            print(f"  [{fraction:5.2f}] {stage}: {message}", flush=True)

    start = time.monotonic()
    model = train_detector([(images[i], boxes[i]) for i in train], labels=labels, budget_seconds=budget,
                           seed=seed, progress=progress, device=device, backbone=backbone, weights_dir=weights,
                           input_size=input_size)
    seconds = time.monotonic() - start
    if device and device.startswith("cuda"):
        model.model.to(device)
    start = time.monotonic()
    found = model.predict([images[i] for i in test])
    predict_seconds = time.monotonic() - start
    model.model.cpu()
    predicted = [[(labels[d.label_index], d.score, d.left, d.top, d.width, d.height) for d in image] for image in found]
    result = score(labels, [boxes[i] for i in test], predicted)
    trained = next((e for e in model.log if e.get("stage") == "train" and "steps" in e), {})
    plan = next((e for e in model.log if e.get("stage") == "plan"), {})
    result.update({
        "train_seconds": round(seconds, 1), "backbone": model.backbone, "input_size": model.input_size,
        "epochs": trained.get("epochs"), "steps": trained.get("steps"),
        "train_images_per_second": round(trained.get("images_seen", 0) / max(seconds, 1e-9), 1),
        "batch": plan.get("batch"), "predict_images_per_second": round(len(test) / max(predict_seconds, 1e-9), 1),
        "chosen": next((e for e in model.log if e.get("stage") == "chosen"), {}),
        "log": model.log,
    })
    return result


# --- the reference recipe: torchvision's custom-backbone Faster R-CNN on MobileNetV2 -----------------
REFERENCE_SIZE = 512
REFERENCE_EPOCHS = 20
REFERENCE_BATCH = 2


def reference_model(num_classes: int, weights=None):
    """torchvision's documented "FasterRCNN with a MobileNetV2 backbone" (from the detection tutorial)."""
    import torchvision
    from customlabels.ml.backbones import load_imagenet_model
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.rpn import AnchorGenerator

    backbone = load_imagenet_model("mobilenet_v2", weights).features  # the same verified ImageNet file
    backbone.out_channels = 1280
    anchors = AnchorGenerator(sizes=((32, 64, 128, 256, 512),), aspect_ratios=((0.5, 1.0, 2.0),))
    pooler = torchvision.ops.MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=2)
    return FasterRCNN(backbone, num_classes=num_classes + 1, rpn_anchor_generator=anchors, box_roi_pool=pooler,
                      min_size=REFERENCE_SIZE, max_size=REFERENCE_SIZE)


def _reference_tensor(data: bytes):
    """Decoded once: the image scaled so its longer side is 512 (what the model's transform does anyway)."""
    import torch
    from customlabels.images import decode_image
    from PIL import Image

    image = decode_image(data, draft_to=(REFERENCE_SIZE, REFERENCE_SIZE))
    scale = REFERENCE_SIZE / max(image.size)
    image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                         Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)  # uint8 CHW


def run_reference(images, boxes, labels, train, test, *, cap_seconds, seed, device="cpu", weights=None,
                  quiet=False) -> dict:
    import torch

    torch.manual_seed(seed)
    start = time.monotonic()
    index = {name: i + 1 for i, name in enumerate(labels)}  # 0 is the background
    tensors = [_reference_tensor(images[i]) for i in range(len(images))]
    model = reference_model(len(labels), weights).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.005, momentum=0.9, weight_decay=5e-4)
    usable = [i for i in train if any(b.width > 0 and b.height > 0 for b in boxes[i])]  # the recipe needs boxes
    rng = np.random.default_rng(seed)
    epochs_done, steps, seen, stopped = 0, 0, 0, False
    for epoch in range(REFERENCE_EPOCHS):
        model.train()
        order = rng.permutation(usable)
        for k in range(0, len(order), REFERENCE_BATCH):
            if time.monotonic() - start > cap_seconds:
                stopped = True
                break
            batch_images, batch_targets = [], []
            for i in order[k : k + REFERENCE_BATCH]:
                image = tensors[i].to(device).float() / 255
                height, width = image.shape[1:]
                kept = [b for b in boxes[i] if b.width > 0 and b.height > 0]
                t = torch.tensor([[b.left * width, b.top * height, (b.left + b.width) * width,
                                   (b.top + b.height) * height] for b in kept], dtype=torch.float32)
                if rng.random() < 0.5:  # horizontal flip
                    image = image.flip(-1)
                    t = torch.stack([width - t[:, 2], t[:, 1], width - t[:, 0], t[:, 3]], dim=1)
                batch_images.append(image)
                batch_targets.append({"boxes": t.to(device),
                                      "labels": torch.tensor([index[b.label] for b in kept], device=device)})
            losses = model(batch_images, batch_targets)
            loss = sum(losses.values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            steps += 1
            seen += len(batch_images)
        if stopped:
            break
        epochs_done += 1
        if not quiet:
            print(f"  reference epoch {epochs_done}: loss {float(loss):.3f} ({time.monotonic() - start:.0f} s)",
                  flush=True)
    seconds = time.monotonic() - start
    model.eval()
    predicted = []
    with torch.inference_mode():
        for k in range(0, len(test), 8):
            chunk = test[k : k + 8]
            outputs = model([tensors[i].to(device).float() / 255 for i in chunk])
            for i, out in zip(chunk, outputs):
                height, width = tensors[i].shape[1:]
                image = []
                for (x0, y0, x1, y1), s, label in zip(out["boxes"].tolist(), out["scores"].tolist(),
                                                      out["labels"].tolist()):
                    image.append((labels[label - 1], s, x0 / width, y0 / height, (x1 - x0) / width,
                                  (y1 - y0) / height))
                predicted.append(image)
    result = score(labels, [boxes[i] for i in test], predicted)
    result.update({"train_seconds": round(seconds, 1), "epochs": epochs_done,
                   "steps": steps, "stopped_early": stopped,
                   "train_images_per_second": round(seen / max(seconds, 1e-9), 1)})
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["microcontroller", "raccoon", "bccd"], required=True)
    parser.add_argument("--budget", type=float, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    parser.add_argument("--backbone", default=None)
    parser.add_argument("--input-size", type=int, default=None)
    parser.add_argument("--reference", action="store_true", help="also train the reference recipe")
    parser.add_argument("--reference-only", action="store_true")
    parser.add_argument("--reference-cap", type=float, default=None, help="seconds (default: the budget)")
    parser.add_argument("--data", default=None, help="folder holding the datasets (default ../shared/datasets)")
    parser.add_argument("--weights", default=os.environ.get("CUSTOMLABELS_WEIGHTS"))
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    images, boxes, labels = load_dataset(args.dataset, Path(args.data) if args.data else None)
    train, test = split(boxes, labels, args.seed)
    print(f"{args.dataset}: {len(images)} images, labels {labels}; train {len(train)}, test {len(test)}", flush=True)
    results = {"dataset": args.dataset, "seed": args.seed, "budget": args.budget}
    if not args.reference_only:
        results["ours"] = run_ours(images, boxes, labels, train, test, budget=args.budget, seed=args.seed,
                                   device=args.device, backbone=args.backbone, weights=args.weights,
                                   input_size=args.input_size)
        print("ours:", json.dumps({k: v for k, v in results["ours"].items() if k != "log"}), flush=True)
    if args.reference or args.reference_only:
        results["reference"] = run_reference(images, boxes, labels, train, test,
                                             cap_seconds=args.reference_cap or args.budget, seed=args.seed,
                                             device=args.device or "cpu", weights=args.weights)
        print("reference:", json.dumps(results["reference"]), flush=True)
    print()
    print(f"{'':10} {'macro-F1':>8} {'mAP@0.5':>8} {'seconds':>8} {'train img/s':>11}")
    for name in ("ours", "reference"):
        if name in results:
            r = results[name]
            print(f"{name:10} {r['macro_f1']:8.3f} {r['map50']:8.3f} {r['train_seconds']:8.1f} "
                  f"{r['train_images_per_second']:11.1f}")
    if "ours" in results and "reference" in results:
        ratio = results["ours"]["macro_f1"] / max(results["reference"]["macro_f1"], 1e-9)
        print(f"ours / reference macro-F1: {ratio:.2f}" if math.isfinite(ratio) else "")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
