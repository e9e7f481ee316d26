"""``make bench-fewshot``: accuracy with 5, 10 and 20 images per label, through the service, beside references.

    python tests/benchmarks/bench_fewshot.py [--quick] [--sets flowers-small ...] [--shots 5 10 20]
                                             [--seeds 0 1] [--budget SECONDS] [--no-unlabeled]

The sets and their seeded splits are ``fewshot_sets``: flowers-small,
bccd (multi-label), micro-parts and bccd-cells (crops of the detection sets'
boxes). For every set, shot count and seed, a fresh project on a fresh server
process: the training images as TRAIN dataset and every other image as TEST
dataset, created through the API (``CreateDataset`` from a manifest, as any
client would), then ``CreateProjectVersion`` with the budget (the service's
default, ``CUSTOMLABELS_TRAINING_BUDGET_SECONDS``, unless ``--budget``).

Printed per run, all on the same test images:

* **service**: macro-F1 of plain decisions (arg-max for multi-class,
  score >= 0.5 for multi-label) of the exported ONNX file (the one hosting
  serves), the service's ``EvaluationResult.F1Score`` (each label at its best
  threshold), the expected calibration error from the evaluation summary beside
  its floor (``calibrated_floor``; and both again over every seed's test images
  pooled, where a target like 0.05 becomes measurable), the training seconds,
  and why training stopped early when it did (model card);
* **probe**: what any user could write instead (``bench_train.reference_features``
  and ``reference_scores``: frozen MobileNetV2, torchvision's transforms,
  scikit-learn's LogisticRegression), on the same training images; its
  features do not depend on the split, so they are computed once per set;
* **first stage**: the service's own stage 1 (``train_classifier(...,
  last_stage="linear")``, the same images in the same order as the service
  gets them), in this process.

**Unlabeled images** (``--no-unlabeled`` skips them): on bccd-cells and bccd,
at 10 labeled images per label, 30 more per label are added to the TRAIN
dataset as unlabeled entries (``source-ref`` only); that model and the
10-labeled one of the same seed are scored on the same test images (those
left after both draws).

The closing table gives, per set and shot count, the mean and the spread
(standard deviation) over seeds. ``--quick``: flowers-small, seed 0, 10 per
label, no unlabeled run (a development check, about 5 minutes).

Measured (2 CPU cores, default 300 s budget; macro-F1 of plain decisions, mean and standard deviation
over seeds, the probe and the first stage on the same splits in the same run; every run stopped early,
after the probes, and said why; with fewer than 200 images the classifier uses the Lite2 + MobileNetV2
feature pair). ECE: over every seed's test images pooled, where a target like 0.05 becomes measurable,
beside its floor (``calibrated_floor``: what a model calibrated by construction, with the same scores,
measures on as many images):

| set | per label | seeds | linear probe | first stage | service | service - probe | pooled ECE / floor (images) |
|---|---|---|---|---|---|---|---|
| flowers-small | 5 | 12 | 0.742 +-0.035 | 0.744 +-0.045 | 0.786 +-0.034 | +0.044 +-0.026 | 0.045 / 0.022 (2100) |
| flowers-small | 10 | 12 | 0.787 +-0.021 | 0.810 +-0.029 | 0.841 +-0.027 | +0.054 +-0.029 | 0.015 / 0.020 (1800) |
| flowers-small | 20 | 12 | 0.841 +-0.037 | 0.874 +-0.034 | 0.882 +-0.031 | +0.041 +-0.012 | 0.020 / 0.020 (1200) |
| micro-parts | 5 | 4 | 0.883 +-0.034 | 0.909 +-0.010 | 0.929 +-0.007 | +0.045 +-0.034 | 0.030 / 0.024 (628) |
| micro-parts | 10 | 4 | 0.942 +-0.016 | 0.939 +-0.012 | 0.955 +-0.011 | +0.012 +-0.012 | 0.020 / 0.017 (548) |
| micro-parts | 20 | 4 | 0.955 +-0.021 | 0.987 +-0.008 | 0.985 +-0.005 | +0.030 +-0.022 | 0.016 / 0.015 (388) |
| bccd-cells | 5 | 4 | 0.951 +-0.034 | 0.964 +-0.022 | 0.979 +-0.014 | +0.028 +-0.032 | 0.019 / 0.012 (1140) |
| bccd-cells | 10 | 4 | 0.974 +-0.006 | 0.991 +-0.004 | 0.991 +-0.002 | +0.017 +-0.008 | 0.013 / 0.009 (1080) |
| bccd-cells | 20 | 4 | 0.984 +-0.005 | 0.991 +-0.003 | 0.993 +-0.002 | +0.008 +-0.003 | 0.003 / 0.004 (960) |
| bccd (multi-label) | 5 | 4 | 0.750 +-0.029 | 0.778 +-0.054 | 0.800 +-0.062 | +0.050 +-0.067 | 0.227 / 0.024 (1416) |
| bccd (multi-label) | 10 | 4 | 0.822 +-0.018 | 0.819 +-0.016 | 0.863 +-0.034 | +0.042 +-0.022 | 0.162 / 0.023 (1376) |
| bccd (multi-label) | 20 | 4 | 0.852 +-0.008 | 0.864 +-0.011 | 0.870 +-0.010 | +0.018 +-0.011 | 0.093 / 0.022 (1296) |
| bccd-cells | 10 + 30 unlabeled | 4 | 0.974 +-0.008 | 0.989 +-0.007 | 0.993 +-0.005 | +0.019 +-0.006 | 0.007 / 0.008 (720) |
| bccd (multi-label) | 10 + 30 unlabeled | 4 | 0.825 +-0.015 | 0.822 +-0.017 | 0.869 +-0.034 | +0.044 +-0.023 | 0.170 / 0.025 (1136) |

Dates: every row on 2026-12-07 with the classifier as it stands (views and pseudo-labels kept when they do
not lose to the first stage on its holdout; before, when their cross-validated macro-F1 was at least the
first stage's: flowers-small 0.780 / 0.841, micro-parts 0.929 / 0.955 / 0.985, bccd 0.800 / 0.864 / 0.865,
same splits; flowers-small at 20 per label read 0.862 on seeds 0-3 alone, against a first stage of
0.864: on 12 seeds it is 0.882 against 0.874). On bccd-cells and the unlabeled rows the service's means
are those of the cross-validated rule to the third decimal. flowers-small's pooled ECE at 5
per label rose from 0.023 to 0.045 (still within 0.05; at 10 it is 0.015): the views are now kept on
splits where their out-of-fold logits, which calibration is fitted on, read worse than the other
recipe's, which is the likely cause (not checked score by score). With seeds 0-3
alone flowers-small at 5 per label once read level with the probe: the spread over seeds is as large
as the gaps, so read the 12-seed figures. 30 unlabeled images per label beside 10 labeled (same seed,
budget and test images): bccd-cells +0.006 / -0.006 / +0.006 / +0.006 (seeds 0-3; pseudo-labels taken on
every seed), bccd 0.000 / 0.000 / 0.000 / -0.001 (taken on seed 3 alone; elsewhere they lost on the
holdout or did not lower the cross-validated loss).

bccd's ECE follows the few-shot draw's label priors: RBC and WBC are on 96 and 98 % of its images, a
draw of n images with and n without each label puts them on 50-92 % of the training images, and
calibration fitted there cannot know the test images' priors; the ECE falls as the draws' priors near
the test images' (0.23 / 0.16 / 0.09 at 5 / 10 / 20 per label; not measured label by label).
See also ``customlabels.ml.classifier.MEASUREMENTS``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from customlabels.ml.evaluation import calibrated_floor, expected_calibration_error  # noqa: E402
from customlabels.ml.runtime.artifact import MODELS_BUCKET, ModelCard, artifact_prefix  # noqa: E402
from customlabels.ml.runtime.served import ServedModel  # noqa: E402

from tests.benchmarks.bench_train import (  # noqa: E402
    plain_macro_f1,
    reference_features,
    reference_scores,
)
from tests.benchmarks.fewshot_sets import SETS, Pool, Split, few_shot_split, load_set  # noqa: E402
from tests.support.api import classification_line, manifest, wait_dataset  # noqa: E402
from tests.support.server import ServerProcess  # noqa: E402
from tests.support.training import BUDGET_TAG, wait_version  # noqa: E402

UNLABELED_SETS = ("bccd-cells", "bccd")
UNLABELED_SHOTS, UNLABELED_PER_LABEL = 10, 30


def labels_line(bucket: str, key: str, labels: set[str]) -> dict:
    """A manifest line with one image-level label attribute per label (a multi-label line when several)."""
    line = {"source-ref": f"s3://{bucket}/{key}"}
    for label in sorted(labels):
        line.update({k: v for k, v in classification_line(bucket, key, label, attribute=f"label-{label}").items()
                     if k != "source-ref"})
    return line


class Bench:
    """One server process for the whole run; per set its images uploaded once, its reference features cached."""

    def __init__(self, server: ServerProcess, budget: float | None) -> None:
        self.server, self.budget = server, budget
        self.client, self.objects = server.rekognition(), server.objects()
        self.uploaded: set[str] = set()
        self.reference: dict[str, np.ndarray] = {}
        self.stage_one_features: dict[tuple, np.ndarray] = {}

    def bucket(self, pool: Pool) -> str:
        bucket = f"fewshot-{pool.name}"
        if pool.name not in self.uploaded:
            for name, data in zip(pool.names, pool.images):
                self.objects.put(bucket, name, data)
            self.uploaded.add(pool.name)
        return bucket

    def dataset(self, project: str, dataset_type: str, lines: list[dict]) -> None:
        key = f"manifests/{project.rsplit('/', 2)[1]}-{dataset_type}.manifest"
        self.objects.put("fewshot-manifests", key, manifest(lines))
        arn = self.client.create_dataset(ProjectArn=project, DatasetType=dataset_type, DatasetSource={
            "GroundTruthManifest": {"S3Object": {"Bucket": "fewshot-manifests", "Name": key}}})["DatasetArn"]
        status = wait_dataset(self.client, arn, timeout=600)["Status"]
        assert status == "CREATE_COMPLETE", status

    def run(self, pool: Pool, split: Split, run_name: str, work: Path) -> dict:
        """Train through the service on ``split``; score it, the probe and the first stage on ``split.test``."""
        bucket = self.bucket(pool)
        project = self.client.create_project(ProjectName=run_name)["ProjectArn"]
        train_lines = [labels_line(bucket, pool.names[i], pool.truth[i]) for i in split.train]
        train_lines += [{"source-ref": f"s3://{bucket}/{pool.names[i]}"} for i in split.unlabeled]
        self.dataset(project, "TRAIN", train_lines)
        self.dataset(project, "TEST", [labels_line(bucket, pool.names[i], pool.truth[i]) for i in split.test])
        tags = {BUDGET_TAG: f"{self.budget:g}"} if self.budget else {}
        self.client.create_project_version(ProjectArn=project, VersionName="v1", Tags=tags,
                                           OutputConfig={"S3Bucket": "fewshot-output", "S3KeyPrefix": f"{run_name}/"})
        started = time.monotonic()
        description = wait_version(self.client, project, "v1", timeout=3600)
        row = {"set": pool.name, "run": run_name, "train": len(split.train), "unlabeled": len(split.unlabeled),
               "test": len(split.test), "status": description["Status"], "wall": round(time.monotonic() - started),
               "train_s": description.get("BillableTrainingTimeInSeconds")}
        if description["Status"] != "TRAINING_COMPLETED":
            row["message"] = description.get("StatusMessage")
            return row
        model_dir = work / run_name
        model_dir.mkdir(parents=True)
        prefix = artifact_prefix(description["ProjectVersionArn"])
        for file in ("model.onnx", "model.json"):
            (model_dir / file).write_bytes(self.objects.get(MODELS_BUCKET, prefix + file))
        summary_object = description["EvaluationResult"]["Summary"]["S3Object"]
        aggregated = json.loads(self.objects.get(summary_object["Bucket"], summary_object["Name"]))[
            "AggregatedEvaluationResults"]
        card = ModelCard.from_json((model_dir / "model.json").read_bytes())
        row.update(f1=description["EvaluationResult"]["F1Score"], ece=aggregated.get("ExpectedCalibrationError"),
                   card_ece=card.metrics.get("expected_calibration_error"), backbone=card.backbone,
                   input_size=card.preprocessing["input_size"], status_message=description.get("StatusMessage"),
                   stopped_early=card.provenance.get("stopped_early"),
                   chosen=next(e for e in card.provenance["log"] if e["stage"] == "chosen"))
        row.update(self.score(pool, split, ServedModel.load(model_dir), "service"))
        row.update(self.probe(pool, split))
        row.update(self.first_stage(pool, split, card.labels))
        return row

    def score(self, pool: Pool, split: Split, model: ServedModel, name: str) -> dict:
        labels = model.card.labels
        column = {label: k for k, label in enumerate(labels)}
        scores = np.zeros((len(split.test), len(labels)), np.float32)
        for row, found in enumerate(model.predict([pool.images[i] for i in split.test])):
            for p in found:
                scores[row, column[p.label]] = p.score
        return self.figures(pool, split, labels, scores, name)

    def figures(self, pool, split, labels, scores, name) -> dict:
        truth = [pool.truth[i] for i in split.test]
        matrix = np.array([[label in t for label in labels] for t in truth])
        multi_label = pool.task == "multilabel"
        return {f"{name}_macro_f1": plain_macro_f1(labels, truth, scores, pool.task),
                f"{name}_ece": expected_calibration_error(matrix, scores, multi_label=multi_label),
                f"{name}_ece_floor": calibrated_floor(scores, multi_label=multi_label),
                f"_{name}_test": (matrix, scores)}  # for the ECE pooled over seeds; not printed

    def probe(self, pool: Pool, split: Split) -> dict:
        if pool.name not in self.reference:
            self.reference[pool.name] = reference_features(pool.images)
        x = self.reference[pool.name]
        scores = reference_scores(x[split.train], [pool.truth[i] for i in split.train], x[split.test],
                                  pool.labels, pool.task)
        return self.figures(pool, split, pool.labels, scores, "probe")

    def first_stage(self, pool: Pool, split: Split, labels: list[str]) -> dict:
        """The service's stage 1 on the same images; its frozen features of the test images computed once per set."""
        import torch
        from customlabels.ml.classifier import train_classifier
        from customlabels.ml.runtime.preprocess import preprocess

        items = [(pool.images[i], pool.truth[i]) for i in split.train]  # the manifest's order, as the service has it
        budget = self.budget or float(os.environ.get("CUSTOMLABELS_TRAINING_BUDGET_SECONDS", 300))
        model = train_classifier(items, task=pool.task, labels=labels, budget_seconds=budget, last_stage="linear")
        key = (pool.name, model.backbone, model.input_size)
        if key not in self.stage_one_features:
            with torch.inference_mode():
                self.stage_one_features[key] = np.concatenate([
                    model.model.features(torch.from_numpy(preprocess(pool.images[i:i + 32], model.preprocessing)))
                    .numpy() for i in range(0, len(pool.images), 32)])
        with torch.inference_mode():
            scores = model.model.head(torch.from_numpy(self.stage_one_features[key][split.test]))
            scores = (scores.softmax(1) if pool.task == "multiclass" else scores.sigmoid()).numpy()
        return self.figures(pool, split, labels, scores, "first_stage")


def plan(args) -> list[tuple[str, int, int, int]]:
    """(set, shots, seed, unlabeled per label) runs, in order; a run with unlabeled images after its pair."""
    runs = [(name, shots, seed, 0) for name in args.sets for shots in args.shots for seed in args.seeds]
    if not args.no_unlabeled and UNLABELED_SHOTS in args.shots:
        runs += [(name, UNLABELED_SHOTS, seed, UNLABELED_PER_LABEL) for name in args.sets if name in UNLABELED_SETS
                 for seed in args.seeds]
    return runs


def cell(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    spread = statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} ±{spread:.3f}"


def pooled_ece(group: list[dict], task: str) -> str:
    """The service's ECE over the test images of every seed together, beside its calibrated floor: at 150 test
    images the floor alone is about 0.07, so a target like 0.05 can only be read on more images."""
    truth = np.concatenate([r["_service_test"][0] for r in group])
    scores = np.concatenate([r["_service_test"][1] for r in group])
    multi_label = task == "multilabel"
    return (f"{expected_calibration_error(truth, scores, multi_label=multi_label):.3f} / "
            f"{calibrated_floor(scores, multi_label=multi_label):.3f} ({len(scores)})")


def print_tables(rows: list[dict], pairs: list[tuple[dict, float]], tasks: dict[str, str]) -> None:
    done = [r for r in rows if r["status"] == "TRAINING_COMPLETED"]
    print("\nmacro-F1 (plain decisions) on the test images: mean ±std over seeds")
    print("| set | per label | seeds | linear probe | first stage | service | service - probe | F1 (service's rule) "
          "| ECE (summary) | ECE floor | pooled ECE / floor (images) | train s | stopped early |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    groups: dict[tuple, list[dict]] = {}
    for r in done:
        groups.setdefault((r["set"], r["shots"], r["unlabeled_per_label"]), []).append(r)
    for (name, shots, unlabeled), group in groups.items():
        delta = [r["service_macro_f1"] - r["probe_macro_f1"] for r in group]
        early = "/".join(sorted({"yes" if r.get("stopped_early") else "no" for r in group}))
        print(f"| {name} | {shots}{f' + {unlabeled} unlabeled' if unlabeled else ''} | {len(group)} "
              f"| {cell([r['probe_macro_f1'] for r in group])} | {cell([r['first_stage_macro_f1'] for r in group])} "
              f"| {cell([r['service_macro_f1'] for r in group])} | {cell(delta)} | {cell([r['f1'] for r in group])} "
              f"| {cell([r['ece'] for r in group])} | {cell([r['service_ece_floor'] for r in group])} "
              f"| {pooled_ece(group, tasks[name])} | {cell([r['train_s'] for r in group])} | {early} |")
    if pairs:
        print(f"\nunlabeled images: {UNLABELED_SHOTS} labeled per label, without and with {UNLABELED_PER_LABEL} "
              "unlabeled per label, same seed, same budget, same test images (macro-F1)")
        print("| set | seed | test images | labeled only | + unlabeled | difference |")
        print("|---|---|---|---|---|---|")
        for row, alone in pairs:
            print(f"| {row['set']} | {row['seed']} | {row['test']} | {alone:.3f} | {row['service_macro_f1']:.3f} "
                  f"| {row['service_macro_f1'] - alone:+.3f} |")
    for r in rows:
        if r["status"] != "TRAINING_COMPLETED":
            print(f"FAILED {r['run']}: {r['status']}: {r.get('message')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="*", choices=SETS, default=list(SETS))
    parser.add_argument("--shots", nargs="*", type=int, default=[5, 10, 20])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1])
    parser.add_argument("--budget", type=float, help="training seconds (default: the service's default)")
    parser.add_argument("--no-unlabeled", action="store_true", help="skip the unlabeled-images comparison")
    parser.add_argument("--quick", action="store_true", help="flowers-small, 10 per label, seed 0, no unlabeled run")
    args = parser.parse_args()
    if args.quick:
        args.sets, args.shots, args.seeds, args.no_unlabeled = ["flowers-small"], [10], [0], True
    import torch

    torch.set_num_threads(2)
    work = Path(tempfile.mkdtemp(prefix="bench-fewshot-"))
    server = ServerProcess(work / "data").start()
    bench = Bench(server, args.budget)
    rows: list[dict] = []
    pairs: list[tuple[dict, float]] = []  # (run with unlabeled images, macro-F1 of its labeled-only pair there)
    tasks: dict[str, str] = {}  # set -> multiclass / multilabel
    print(f"load: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}", flush=True)
    try:
        for name, shots, seed, unlabeled in plan(args):
            pool = load_set(name)
            tasks[name] = pool.task
            split = few_shot_split(pool, shots, seed, unlabeled=unlabeled)
            run_name = f"{name}-{shots}-s{seed}" + (f"-u{unlabeled}" if unlabeled else "")
            print(f"{run_name}: {len(split.train)} training, {len(split.unlabeled)} unlabeled, "
                  f"{len(split.test)} test images ...", flush=True)
            row = bench.run(pool, split, run_name, work)
            row.update(shots=shots, seed=seed, unlabeled_per_label=unlabeled, load=os.getloadavg()[0])
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if not k.startswith("_")}, default=str), flush=True)
            alone = work / f"{name}-{shots}-s{seed}"  # the labeled-only run: the same training images
            if unlabeled and row["status"] == "TRAINING_COMPLETED" and (alone / "model.onnx").exists():
                scores = bench.score(pool, split, ServedModel.load(alone), "alone")
                pairs.append((row, scores["alone_macro_f1"]))
    finally:
        server.stop()
        print(f"load: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
        print_tables(rows, pairs, tasks)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
