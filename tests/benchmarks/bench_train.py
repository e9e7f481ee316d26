"""``make bench-train``: training through the service on real labeled sets, beside a reference in the same run.

    python tests/benchmarks/bench_train.py [--quick] [--only flowers-small bccd ...] [--seeds 0 1 ...]

A fresh server process; each set imported with the ``customlabels`` CLI and
trained with CreateProjectVersion (budget tag), exactly as a user would:

| set | task | train / test | budget |
|---|---|---|---|
| flowers-small | multi-class | 160 / 40, sklearn's seeded stratified 80/20 splits (``--seeds``, 0 to 15) | 180 s each |
| bccd | multi-label (boxes collapsed to image labels) | VOC trainval 292 / test 72 | 180 s |
| microcontroller | object localization | all 149, the service's 20 % split | 1200 s |
| raccoon | object localization | all 200, the service's 20 % split | 1200 s |

Printed per set: the service's ``EvaluationResult.F1Score`` (the reference's
definition: each label at its best-F1 threshold on the test set), the
macro-F1 of plain decisions (arg-max for multi-class, score >= 0.5 for
multi-label; the figure the issue's target is stated in), mAP@0.5 for
detectors, training seconds and budget. The reference, for the
classification sets, is what any user could write instead: frozen MobileNetV2
features (torchvision's eval transforms) and scikit-learn's LogisticRegression
(one-vs-rest for multi-label), trained on the same training images and scored
on the same test images with the same two metrics. Our scores come from the
exported ONNX file itself (``customlabels export``), the one hosting serves.

flowers-small is measured on several seeded splits (each in its own project,
one after another): on one split of 40 test images a recipe's figure moves by
two or three images with nothing but the split (``measure_classifier``), so
the figure is the mean over the splits beside the reference's mean, with the
paired difference, its standard error and how many splits were better, level
or worse. Seed 0 is the split of the single-split rows below.

``--quick`` divides every budget by 6 (a smoke run, not the figures).

Measured, flowers-small over 16 seeded splits (2026-12-07, 2 CPU cores, one run each, this script; the
2026-11-26 recipe run from a git worktree of e9bbfd4 with this script, same session, one after the other):

| splits | reference macro-F1 | 2026-11-26 recipe | current recipe | paired difference | better / level / worse | train s |
|---|---|---|---|---|---|---|
| seeds 0-7 | 0.871 | 0.912 | 0.907 | -0.005 +- 0.011 | 3 / 2 / 3 | 47-51 / 89-109 |
| seeds 8-15 | 0.871 | 0.879 | 0.902 | +0.023 +- 0.016 | 4 / 3 / 1 | 48-55 / 92-109 |
| **all 16** | **0.871** | **0.896** | **0.905** | **+0.009 +- 0.010** | 7 / 5 / 4 | |

(+- is the standard error of the paired mean; level: under 0.5 / 40, half a test image's worth. F1 by the
service's rule, all 16: 0.950 and 0.947, the reference 0.920.) Across these splits the 2026-11-26 recipe read
0.787 to 0.975 and the current one 0.820 to 1.000; seed 0 is among the 2026-11-26 recipe's best: 0.949 against
0.901 now. The current recipe takes about twice the time at 160 images (the feature pair and its
holdout-judged views, ``classifier``), which is what buys its few-shot gains (``bench_fewshot``); at 32 images
per label it is level with the earlier one. ``measure_classifier`` (the recipe in one process, 24 splits)
agrees: +0.004 +- 0.0075.

Measured on one split each (2026-11-26 unless dated, 2 CPU cores; microcontroller not yet run at 1200 s):

| set | budget | train s | F1 (service) | macro-F1 | reference macro-F1 | ratio | reference F1 (service's rule) |
|---|---|---|---|---|---|---|---|
| flowers-small, seed 0 | 180 | 105 | 0.958 | 0.949 | 0.904 | 1.05x | 0.948 |
| bccd | 180 | 106 | 0.895 | 0.864 | 0.819 | 1.05x | 0.902 |
| raccoon (detection) | 1200 | 1198 | 0.953 | mAP@0.5 0.967 | - | - | - |
| flowers-small, seed 0, current recipe (2026-12-07) | 180 | 99 | 0.971 | 0.901 | 0.904 | 1.00x | 0.948 |
| bccd, current recipe (2026-12-07) | 180 | 134 | 0.898 | 0.882 | 0.819 | 1.08x | 0.902 |

Between those two dates seed 0 read 0.924 with the feature pair, 0.901 with label-smoothed probes and 0.924
without, 0.901 with the views judged on the holdout: one or two of its 40 test images each time, the
reason this benchmark now takes the mean over splits.
"""
from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from customlabels.ml.runtime.artifact import MODELS_BUCKET, artifact_prefix  # noqa: E402
from customlabels.ml.runtime.served import ServedModel  # noqa: E402
from customlabels.ml.evaluation import evaluate_classification  # noqa: E402
from tests.support.server import DATASETS, ServerProcess  # noqa: E402
from tests.support.training import BUDGET_TAG, cli, project_arn, wait_version  # noqa: E402

SETS = {
    "flowers-small": ("multiclass", 180),
    "bccd": ("multilabel", 180),
    "microcontroller": ("detection", 1200),
    "raccoon": ("detection", 1200),
}


def import_set(server, name: str, work: Path, project: str, seed: int = 0) -> None:
    """Import set ``name`` into a new project ``project``; flowers-small split with ``seed``."""
    def run(*args):
        done = cli(server, *args)
        assert done.returncode == 0, done.stderr

    if name == "flowers-small":
        from sklearn.model_selection import train_test_split

        files = sorted(DATASETS.glob("flowers-small/*/*.jpg"))
        labels = [f.parent.name for f in files]
        train, test = train_test_split(np.arange(len(files)), test_size=0.2, stratify=labels, random_state=seed)
        for split, rows in (("train", train), ("test", test)):
            for i in rows:
                target = work / split / labels[i] / files[i].name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(files[i])
        run("import-folder", str(work / "train"), "--project", project, "--create-project")
        run("import-folder", str(work / "test"), "--project", project, "--dataset", "test")
    elif name == "bccd":
        run("import-voc", str(DATASETS / "bccd"), "--split", "trainval", "--as-labels", "--project", project,
            "--create-project")
        run("import-voc", str(DATASETS / "bccd"), "--split", "test", "--as-labels", "--project", project,
            "--dataset", "test")
    else:
        run("import-voc", str(DATASETS / name), "--project", project, "--create-project")


def lines_of(objects, s3_object: dict) -> list[dict]:
    return [json.loads(line) for line in objects.get(s3_object["Bucket"], s3_object["Name"]).splitlines() if line]


def image_labels(line: dict) -> set[str]:
    return {meta["class-name"] for key, meta in line.items()
            if key.endswith("-metadata") and isinstance(meta, dict) and "class-name" in meta}


def plain_macro_f1(labels: list[str], truth: list[set[str]], scores: np.ndarray, task: str) -> float:
    from sklearn.metrics import f1_score

    y = np.array([[label in t for label in labels] for t in truth])
    if task == "multiclass":
        predicted = np.zeros_like(y)
        predicted[np.arange(len(y)), scores.argmax(axis=1)] = True
    else:
        predicted = scores >= 0.5
    present = y.any(axis=0)  # as the service: labels with ground truth in the test set
    return float(f1_score(y[:, present], predicted[:, present], average="macro", zero_division=0))


def reference_probe(train_images, train_truth, test_images, labels, task) -> tuple[np.ndarray, float]:
    """Frozen MobileNetV2 + LogisticRegression: test scores (images, labels) and seconds."""
    start = time.monotonic()
    scores = reference_scores(reference_features(train_images), train_truth, reference_features(test_images),
                              labels, task)
    return scores, time.monotonic() - start


def reference_features(images: list[bytes]) -> np.ndarray:
    """The reference's features: frozen MobileNetV2 on torchvision's own eval transforms (resize 256, crop 224)."""
    import torch
    from customlabels.ml.backbones import load_backbone
    from PIL import Image
    from torchvision.models import MobileNet_V2_Weights

    features, _, _ = load_backbone("mobilenet_v2")
    transform = MobileNet_V2_Weights.IMAGENET1K_V1.transforms()
    with torch.inference_mode():
        return np.concatenate([features(torch.stack([transform(Image.open(io.BytesIO(b)).convert("RGB"))
                                                     for b in images[i:i + 32]])).numpy()
                               for i in range(0, len(images), 32)])


def reference_scores(x_train, train_truth, x_test, labels, task) -> np.ndarray:
    """scikit-learn's LogisticRegression (one-vs-rest for multi-label) on reference features: test scores."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    if task == "multiclass":
        y = [next(iter(t)) for t in train_truth]
        clf = LogisticRegression(max_iter=1000).fit(x_train, y)
        proba = clf.predict_proba(x_test)
        return np.stack([proba[:, list(clf.classes_).index(label)] if label in clf.classes_
                         else np.zeros(len(x_test)) for label in labels], axis=1)
    y = np.array([[label in t for label in labels] for t in train_truth], dtype=int)
    return OneVsRestClassifier(LogisticRegression(max_iter=1000)).fit(x_train, y).predict_proba(x_test)


def bench_set(server, name: str, budget: float, work: Path, seed: int | None = None) -> dict:
    """One set trained through the service and scored beside the reference; ``seed``: flowers-small's split."""
    task = SETS[name][0]
    client, objects = server.rekognition(), server.objects()
    project_name = name if seed is None else f"{name}-seed{seed}"
    import_set(server, name, work / project_name, project_name, seed or 0)
    project = project_arn(client, project_name)
    client.create_project_version(ProjectArn=project, VersionName="bench", Tags={BUDGET_TAG: f"{budget:g}"},
                                  OutputConfig={"S3Bucket": "bench", "S3KeyPrefix": f"{project_name}/"})
    started = time.monotonic()
    description = wait_version(client, project, "bench", timeout=budget * 3 + 600)
    row = {"set": project_name, "task": task, "budget": budget, "wall": time.monotonic() - started,
           "status": description["Status"], "train_s": description.get("BillableTrainingTimeInSeconds")}
    if description["Status"] != "TRAINING_COMPLETED":
        row["message"] = description.get("StatusMessage")
        return row
    summary = json.loads(objects.get(description["EvaluationResult"]["Summary"]["S3Object"]["Bucket"],
                                     description["EvaluationResult"]["Summary"]["S3Object"]["Name"]))
    row["f1"] = description["EvaluationResult"]["F1Score"]
    row["map50"] = summary["AggregatedEvaluationResults"].get("AveragePrecision")
    row["test_images"] = summary["EvaluationDetails"]["NumberOfTestingImages"]
    if task == "detection":
        return row

    # Our scores from the exported file; the reference on the same images.
    model_dir = work / f"{project_name}-model"
    model_dir.mkdir()
    prefix = artifact_prefix(description["ProjectVersionArn"])
    for file in ("model.onnx", "model.json"):
        (model_dir / file).write_bytes(objects.get(MODELS_BUCKET, prefix + file))
    model = ServedModel.load(model_dir)
    results = description["TrainingDataResult"]["Output"]["Assets"][0]["GroundTruthManifest"]["S3Object"]
    tests = description["TestingDataResult"]["Validation"]["Assets"][0]["GroundTruthManifest"]["S3Object"]
    fetch = lambda line: objects.get(*line["source-ref"][5:].split("/", 1))  # noqa: E731
    train_lines = [line for line in lines_of(objects, results) if image_labels(line)]
    test_lines = [line for line in lines_of(objects, tests) if image_labels(line) & set(model.card.labels)]
    test_images = [fetch(line) for line in test_lines]
    truth = [image_labels(line) & set(model.card.labels) for line in test_lines]
    column = {label: i for i, label in enumerate(model.card.labels)}
    ours = np.zeros((len(test_images), len(column)), np.float32)
    for row_index, found in enumerate(model.predict(test_images)):
        for p in found:
            ours[row_index, column[p.label]] = p.score
    reference, reference_s = reference_probe([fetch(line) for line in train_lines],
                                             [image_labels(line) for line in train_lines], test_images,
                                             model.card.labels, task)
    row.update(
        macro_f1=plain_macro_f1(model.card.labels, truth, ours, task),
        ref_macro_f1=plain_macro_f1(model.card.labels, truth, reference, task),
        ref_f1=float(evaluate_classification(model.card.labels, truth, reference,
                                             multi_label=task == "multilabel").f1_score),
        ref_s=reference_s, backbone=model.card.backbone,
    )
    return row


def print_table(rows: list[dict]) -> None:
    def f(value, spec=".3f"):
        return "-" if value is None else format(value, spec)

    print("\n| set | task | budget s | train s | F1 (service) | macro-F1 | reference macro-F1 | ratio "
          "| reference F1 (same rule as service) | mAP@0.5 | test images |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["status"] != "TRAINING_COMPLETED":
            print(f"| {r['set']} | {r['task']} | {r['budget']:.0f} | - | {r['status']}: {r.get('message')} |||||||")
            continue
        ratio = r["macro_f1"] / r["ref_macro_f1"] if r.get("ref_macro_f1") else None
        print(f"| {r['set']} | {r['task']} | {r['budget']:.0f} | {r['train_s']} | {f(r['f1'])} | {f(r.get('macro_f1'))} "
              f"| {f(r.get('ref_macro_f1'))} | {f(ratio, '.2f')}x | {f(r.get('ref_f1'))} | {f(r.get('map50'))} "
              f"| {r['test_images']} |")
    print("\nreference = frozen MobileNetV2 + scikit-learn LogisticRegression on the same split (classification sets)")
    split_rows = [r for r in rows if r.get("seed") is not None and r.get("macro_f1") is not None]
    if len(split_rows) > 1:
        print(paired_summary(split_rows))


def paired_summary(rows: list[dict]) -> str:
    """flowers-small over its splits: both means, the paired difference with its standard error, and the count of
    splits where the service was better / level / worse (level: a difference under 0.5 / test images, half an
    image's worth of accuracy)."""
    ours = np.array([r["macro_f1"] for r in rows])
    reference = np.array([r["ref_macro_f1"] for r in rows])
    difference = ours - reference
    error = difference.std(ddof=1) / np.sqrt(len(rows))
    level = 0.5 / min(r["test_images"] for r in rows)
    counts = (int((difference > level).sum()), int((abs(difference) <= level).sum()), int((difference < -level).sum()))
    return (f"\nflowers-small over {len(rows)} splits (seeds {', '.join(str(r['seed']) for r in rows)}): macro-F1 "
            f"{ours.mean():.3f} (min {ours.min():.3f}, max {ours.max():.3f}) against the reference's "
            f"{reference.mean():.3f}; paired difference {difference.mean():+.3f} +- {error:.3f} (standard error); "
            f"better / level / worse on {counts[0]} / {counts[1]} / {counts[2]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", choices=list(SETS), default=list(SETS))
    parser.add_argument("--quick", action="store_true", help="budgets / 6 (a smoke run)")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(16)), help="flowers-small's split seeds")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    server = ServerProcess(work / "data").start()
    rows = []
    try:
        for name in args.only:
            budget = SETS[name][1] / (6 if args.quick else 1)
            for seed in args.seeds if name == "flowers-small" else (None,):
                print(f"{name}{'' if seed is None else f' (split {seed})'}: training with a {budget:.0f} s budget ...",
                      flush=True)
                rows.append({**bench_set(server, name, budget, work, seed), "seed": seed})
                print(json.dumps(rows[-1]), flush=True)
    finally:
        server.stop()
        print_table(rows)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
