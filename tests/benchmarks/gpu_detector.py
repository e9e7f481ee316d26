"""One GPU run: our detector against the reference recipe on microcontroller, raccoon and bccd.

    python3 tests/benchmarks/gpu_detector.py [--data ../shared/datasets] [--weights weights] [--budget 60]

Meant for a bare CUDA machine that has torch and torchvision (timm and onnx
optional) but not this repository's virtual environment: it puts ``shared/``
on the path itself, needs no network, and reads the datasets from ``--data``
and the weight files from ``--weights`` (the layout of ``weights/``:
``efficientnet-lite0-*.pth`` and ``torch/hub/checkpoints/mobilenet_v2-*.pth``).

For each dataset (seeded 80/20 split, as ``measure_detector.py``): ours with
``--budget`` seconds on cuda (bf16 autocast, channels_last, the decoded images
cached on the GPU), then the reference Faster R-CNN recipe (20 epochs, capped at
``--reference-cap`` seconds), both scored on the same test images. Prints one
table and writes everything to ``$OUT/gpu_detector.json`` (or ``--json``).
About 2 x 60 s per dataset plus decoding and scoring: under 8 minutes for all three.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
for path in (ROOT / "shared", ROOT):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets"))
    parser.add_argument("--weights", default=os.environ.get("CUSTOMLABELS_WEIGHTS", str(ROOT / "weights")))
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--reference-cap", type=float, default=60.0)
    parser.add_argument("--datasets", default="microcontroller,raccoon,bccd")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--only", default=None,
                        help="comma-separated dataset:run pairs to do, e.g. raccoon:reference,bccd:ours")
    parser.add_argument("--json", default=None, help="default: $OUT/gpu_detector.json, else ./gpu_detector.json")
    args = parser.parse_args()

    import torch
    import torchvision

    os.environ["CUSTOMLABELS_WEIGHTS"] = str(Path(args.weights).resolve())
    # cuDNN autotuning stays off: it re-tunes every new input shape (the first step took 25-40 s, and the
    # reference's variable-size images were re-tuned all the time: 4 epochs instead of 20 on raccoon).
    torch.backends.cudnn.benchmark = False
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    device = "cuda" if torch.cuda.is_available() else "cpu"
    env = {"torch": torch.__version__, "torchvision": torchvision.__version__, "device": device,
           "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None, "cpus": os.cpu_count()}
    for module in ("timm", "onnx", "onnxruntime"):
        try:
            env[module] = __import__(module).__version__
        except ImportError:
            env[module] = None
    print(json.dumps(env), flush=True)

    from customlabels.ml.detector import BACKBONE

    from tests.benchmarks.measure_detector import (
        load_dataset,
        run_ours,
        run_reference,
        split,
    )

    backbone = BACKBONE
    print(f"backbone for ours: {backbone}", flush=True)
    results = {"environment": env, "budget": args.budget, "reference_cap": args.reference_cap, "seed": args.seed,
               "backbone": backbone, "datasets": {}}
    out_path = Path(args.json) if args.json else Path(os.environ.get("OUT", ".")) / "gpu_detector.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    if device == "cuda":
        # Warm-up (CUDA context, cuDNN, first kernels), as a running service would be, and a fail-fast check
        # that the cuda path trains at all before minutes are spent.
        from customlabels.ml.detector import train_detector

        images, boxes, labels = load_dataset("microcontroller", Path(args.data))
        for candidate in dict.fromkeys([backbone, "mobilenet_v2"]):
            try:
                warm = train_detector(list(zip(images[:24], boxes[:24])), labels=labels, budget_seconds=12,
                                      device=device, backbone=candidate, weights_dir=args.weights)
            except Exception:  # noqa: BLE001  reported; the next backbone is tried
                traceback.print_exc()
                print(f"warm-up with {candidate} failed", flush=True)
                continue
            backbone = results["backbone"] = candidate
            results["warm_up"] = warm.log
            print(f"warm-up ({candidate}):", json.dumps(warm.log), flush=True)
            break
        else:
            out_path.write_text(json.dumps(results, indent=2))
            sys.exit(2)
    for name in [n for n in args.datasets.split(",") if n]:
        entry = results["datasets"].setdefault(name, {})
        try:
            images, boxes, labels = load_dataset(name, Path(args.data))
        except Exception as exc:  # noqa: BLE001  a dataset that is not there must not stop the others
            entry["error"] = f"{type(exc).__name__}: {exc}"
            print(f"{name}: {entry['error']}", flush=True)
            continue
        train, test = split(boxes, labels, args.seed)
        entry.update({"images": len(images), "train": len(train), "test": len(test), "labels": labels})
        print(f"\n== {name}: {len(images)} images, {len(labels)} labels, train {len(train)}, test {len(test)} "
              f"({time.monotonic() - started:.0f} s so far)", flush=True)
        data = (images, boxes, labels, train, test)
        runs = [("ours", partial(run_ours, *data, budget=args.budget, seed=args.seed, device=device,
                                 backbone=backbone, weights=args.weights))]
        if not args.no_reference:
            runs.append(("reference", partial(run_reference, *data, cap_seconds=args.reference_cap, seed=args.seed,
                                              device=device, weights=args.weights, quiet=True)))
        for key, run in runs:
            if args.only and f"{name}:{key}" not in args.only.split(","):
                continue
            try:
                entry[key] = run()
                print(f"{key}: {json.dumps({k: v for k, v in entry[key].items() if k != 'log'})}", flush=True)
            except Exception as exc:  # noqa: BLE001  one failed run must not lose the others
                entry[key] = {"error": f"{type(exc).__name__}: {exc}"}
                traceback.print_exc()
            if device == "cuda":
                torch.cuda.empty_cache()
            out_path.write_text(json.dumps(results, indent=2))  # what is done so far survives a kill
    results["total_seconds"] = round(time.monotonic() - started, 1)
    out_path.write_text(json.dumps(results, indent=2))

    print(f"\n{'dataset':16} {'run':10} {'macro-F1':>8} {'mAP@0.5':>8} {'seconds':>8} {'train img/s':>11}  notes")
    for name, entry in results["datasets"].items():
        for key in ("ours", "reference"):
            r = entry.get(key)
            if not r:
                continue
            if "error" in r:
                print(f"{name:16} {key:10} error: {r['error']}")
                continue
            notes = (f"{r.get('backbone')} {r.get('input_size')} px, batch {r.get('batch')}, {r.get('epochs')} epochs"
                     if key == "ours" else f"{r.get('epochs')} epochs" + (" (capped)" if r.get("stopped_early") else ""))
            print(f"{name:16} {key:10} {r['macro_f1']:8.3f} {r['map50']:8.3f} {r['train_seconds']:8.1f} "
                  f"{r['train_images_per_second']:11.1f}  {notes}")
    print(f"\nwritten to {out_path} ({results['total_seconds']} s in all)")


if __name__ == "__main__":
    main()
