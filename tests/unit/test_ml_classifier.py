"""The image-classification core: backbones, preprocessing, training, ONNX export.

Real weights (installed under $CUSTOMLABELS_WEIGHTS, default ./weights) and
real photos (../shared/datasets/flowers-small); nothing is downloaded. About
45 s on two CPU cores, most of it two small trainings.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from customlabels.images import ImageProblem
from customlabels.ml import backbones, classifier
from customlabels.ml.backbones import (
    BACKBONES,
    FeaturePair,
    WeightsMissing,
    load_backbone,
    load_imagenet_model,
    map_lukemelas_state_dict,
)
from customlabels.ml.classifier import macro_f1, train_classifier
from customlabels.ml.export import export
from customlabels.ml.runtime.artifact import ModelCard
from customlabels.ml.runtime.preprocess import (
    Preprocessing,
    load_pixels,
    normalize,
    preprocess,
)
from customlabels.ml.runtime.served import ServedModel
from customlabels.ml.splits import stratified_holdout
from PIL import Image

from tests.support.ml import WEIGHTS, offline, two_threads  # noqa: F401 (autouse fixtures)
from tests.support.work_clock import work_clock

ROOT = Path(__file__).resolve().parents[2]
FLOWERS = ROOT.parent / "shared" / "datasets" / "flowers-small"
DAISY = 985  # the ImageNet class

pytestmark = pytest.mark.skipif(not FLOWERS.is_dir(), reason=f"the shared datasets are expected at {FLOWERS}")


def photos(name: str, start: int, count: int) -> list[bytes]:
    return [p.read_bytes() for p in sorted((FLOWERS / name).glob("*.jpg"))[start : start + count]]


# --- backbones --------------------------------------------------------------------
@pytest.mark.parametrize("name", list(BACKBONES))
def test_backbone_loads_offline_and_recognises_a_daisy(name):
    model = load_imagenet_model(name, WEIGHTS)
    spec = BACKBONES[name].preprocessing()
    with torch.inference_mode():
        probabilities = model(torch.from_numpy(preprocess(photos("daisy", 0, 4), spec))).softmax(1)
    top5 = probabilities.topk(5).indices
    assert sum(DAISY in row for row in top5.tolist()) >= 3, f"{name} does not see daisies: {top5.tolist()}"
    assert probabilities[:, DAISY].mean() > 0.3


def test_feature_extractor_shape():
    features, dim, size = load_backbone("mobilenet_v2", WEIGHTS)
    assert (dim, size) == (1280, 224)
    with torch.inference_mode():
        assert features(torch.zeros(2, 3, 160, 160)).shape == (2, 1280)


def test_corrupt_or_missing_weights_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(backbones, "_verified", set())
    with pytest.raises(WeightsMissing, match="missing"):
        load_backbone("efficientnet_lite0", tmp_path)
    (tmp_path / "efficientnet-lite0-57934424.pth").write_bytes(b"not the weights")
    with pytest.raises(WeightsMissing, match="sha256"):
        load_backbone("efficientnet_lite0", tmp_path)


def test_lukemelas_mapping_checks_shapes():
    source = {"_conv_stem.weight": torch.zeros(32, 3, 3, 3), "_fc.bias": torch.zeros(1000)}
    target = {"conv_stem.weight": torch.zeros(32, 3, 3, 3), "classifier.bias": torch.zeros(1000)}
    assert list(map_lukemelas_state_dict(source, target)) == list(target)
    with pytest.raises(ValueError, match="does not fit"):
        map_lukemelas_state_dict(source, {"conv_stem.weight": torch.zeros(16, 3, 3, 3), "classifier.bias": torch.zeros(1000)})
    with pytest.raises(ValueError, match="tensors"):
        map_lukemelas_state_dict(source, {"conv_stem.weight": torch.zeros(32, 3, 3, 3)})


# --- preprocessing ------------------------------------------------------------------
def jpeg(width: int, height: int) -> bytes:
    rng = np.random.default_rng(width * height)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return buffer.getvalue()


def test_preprocessing_is_deterministic_and_shaped():
    spec = Preprocessing(224)
    data = photos("tulips", 0, 3)
    first, second = preprocess(data, spec), preprocess(data, spec)
    assert first.dtype == np.float32 and first.shape == (3, 3, 224, 224)
    assert np.array_equal(first, second)
    assert np.array_equal(first, normalize(np.stack([load_pixels(d, 224) for d in data]), spec))
    # normalised: roughly zero-centred, unit-ish spread
    assert -1.5 < first.mean() < 1.5 and 0.3 < first.std() < 2


def test_preprocessing_keeps_up_to_four_by_three_and_crops_beyond():
    # A wide image whose left and right quarters are white and middle black:
    # a 4:3 crop of a 2:1 image keeps only the middle, so the result is all black.
    image = np.zeros((200, 400, 3), dtype=np.uint8)
    image[:, :60] = image[:, -60:] = 255  # the 4:3 crop keeps columns 66..333
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    pixels = load_pixels(buffer.getvalue(), 64)
    assert pixels.shape == (64, 64, 3) and pixels.max() < 40
    # 4:3 is squashed whole: the white border survives
    image = np.zeros((300, 400, 3), dtype=np.uint8)
    image[:, :20] = 255
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    assert load_pixels(buffer.getvalue(), 64)[:, 0].min() > 200


def test_preprocessing_uses_draft_and_refuses_garbage():
    assert load_pixels(jpeg(1600, 1200), 224).shape == (224, 224, 3)
    with pytest.raises(ImageProblem):
        load_pixels(b"not an image", 224)


# --- training -----------------------------------------------------------------------
CLASSES = ["daisy", "sunflowers", "tulips"]


@pytest.fixture(scope="module", autouse=True)
def clock(two_threads):
    """Budgets, and these tests' measures of them, in this process's work (``tests.support.work_clock``):
    what a budget buys, and by how much it is overrun, do not depend on other processes' load."""
    with work_clock() as clock:
        yield clock


@pytest.fixture(scope="module")
def trained_multiclass(clock):
    items = [(data, {name}) for name in CLASSES for data in photos(name, 0, 12)]
    start = clock.monotonic()
    model = train_classifier(items, task="multiclass", labels=CLASSES, budget_seconds=15, seed=0)
    return model, clock.monotonic() - start


def test_multiclass_training_beats_chance_on_unseen_photos(trained_multiclass):
    model, seconds = trained_multiclass
    test = [(data, k) for k, name in enumerate(CLASSES) for data in photos(name, 20, 6)]
    scores = model.predict([data for data, _ in test])
    assert scores.shape == (18, 3)
    np.testing.assert_allclose(scores.sum(axis=1), 1, atol=1e-5)  # softmax
    accuracy = np.mean(scores.argmax(axis=1) == [k for _, k in test])
    assert accuracy >= 0.75, f"accuracy {accuracy:.2f} (chance 0.33); log: {model.log}"
    assert seconds <= 15 + 3, f"budget 15 s, took {seconds:.1f} s"
    stages = [entry["stage"] for entry in model.log]
    assert "linear" in stages and stages[-1] == "chosen"
    assert model.labels == CLASSES and model.input_size == BACKBONES[model.backbone].input_size


def test_multilabel_training_on_synthetic_labels(clock):
    # Two overlapping labels made from the flower classes: "yellow" (sunflowers,
    # dandelion) and "round" (daisy, sunflowers); tulips carry neither.
    meaning = {"sunflowers": {"yellow", "round"}, "dandelion": {"yellow"}, "daisy": {"round"}, "tulips": set()}
    items = [(data, labels) for name, labels in meaning.items() for data in photos(name, 0, 8)]
    start = clock.monotonic()
    model = train_classifier(items, task="multilabel", labels=["yellow", "round"], budget_seconds=8, seed=1)
    assert clock.monotonic() - start <= 8 + 3
    test = [(data, labels) for name, labels in meaning.items() for data in photos(name, 20, 4)]
    scores = model.predict([data for data, _ in test])
    targets = np.array([[label in labels for label in ("yellow", "round")] for _, labels in test], dtype=np.float32)
    assert scores.shape == (16, 2) and ((scores >= 0) & (scores <= 1)).all()
    assert not np.allclose(scores.sum(axis=1), 1)  # sigmoids, not a softmax
    assert macro_f1(scores, targets, "multilabel") >= 0.7, model.log


def test_a_budget_shorter_than_feature_extraction_still_gives_a_model(clock):
    """1.5 s is less than two batches of features plus the stop margin on any machine: it stops after the first."""
    items = [(data, {name}) for name in CLASSES for data in photos(name, 0, 30)]  # 90 images, 3 batches
    start = clock.monotonic()
    model = train_classifier(items, task="multiclass", labels=CLASSES, budget_seconds=1.5,
                             backbone="efficientnet_lite0", seed=0)
    assert clock.monotonic() - start <= 1.5 + 3
    assert model.predict(photos("daisy", 35, 1)).shape == (1, 3)
    assert any("budget reached" in entry.get("note", "") for entry in model.log), model.log


def test_fine_tuning_stage_runs_within_the_budget(monkeypatch, clock):
    # On this CPU the gate keeps small budgets to the probes; force the fine-tuning path.
    monkeypatch.setattr(classifier, "MIN_FINETUNE_EPOCHS", 0)
    monkeypatch.setattr(classifier, "MIN_FINETUNE_HOLDOUT", 0)
    monkeypatch.setattr(classifier, "MAX_VIEWS", 1)
    items = [(data, {name}) for name in CLASSES for data in photos(name, 0, 10)]
    start = clock.monotonic()
    model = train_classifier(items, task="multiclass", labels=CLASSES, budget_seconds=20,
                             backbone="efficientnet_lite0", seed=0)
    assert clock.monotonic() - start <= 20 + 3
    epochs = [entry for entry in model.log if entry["stage"].startswith("finetune epoch")]
    assert epochs and all(0 <= entry["holdout_f1"] <= 1 for entry in epochs), model.log
    assert all(p.requires_grad for p in model.model.parameters())  # nothing left frozen for the next user
    assert model.predict(photos("tulips", 30, 2)).shape == (2, 3)


def test_unlabeled_images_are_used_and_the_first_stage_can_be_asked_for(clock):
    items = [(data, {name}) for name in CLASSES for data in photos(name, 0, 6)]
    unlabeled = [data for name in CLASSES for data in photos(name, 6, 8)] + [b"not an image"]
    model = train_classifier(items, task="multiclass", labels=CLASSES, budget_seconds=25,
                             backbone="efficientnet_lite0", seed=0, unlabeled=unlabeled)
    entries = {entry["stage"]: entry for entry in model.log}
    assert entries["unlabeled"]["images"] == 24 and entries["unlabeled"]["skipped_images"] == 1, model.log
    assert [e["recipe"] for e in model.log if e["stage"] == "cross-validation"][0] == "linear", model.log
    tested = [e for e in model.log if e["stage"] == "holdout test"]
    assert tested[-1]["recipe"].endswith("pseudo-labels"), model.log
    assert all(e["passed"] == (e["holdout_f1"] >= e["first_stage_holdout_f1"]) for e in tested), model.log
    chosen = entries["chosen"]
    assert chosen["holdout_f1"] >= chosen["first_stage_holdout_f1"] == entries["linear"]["holdout_f1"], model.log
    assert entries["calibration"]["fitted_on"] == "cross-validation"

    first = train_classifier(items, task="multiclass", labels=CLASSES, budget_seconds=25,
                             backbone="efficientnet_lite0", seed=0, last_stage="linear")
    assert [e["stage"] for e in first.log][-2:] == ["linear", "chosen"]
    assert first.stopped_early == "asked to stop after the first stage"
    assert torch.equal(first.model.calibration_scale, torch.ones(3))  # the first stage as it stood: uncalibrated


def test_views_are_kept_only_when_they_do_not_lose_to_the_first_stage_on_its_holdout():
    """Views of the same images keep their labels: kept. Views whose labels belong to other images: turned away."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16)) * 2
    targets = np.eye(3, dtype=np.float32)[np.repeat(np.arange(3), 20)]
    features = (centres[targets.argmax(1)] + rng.normal(size=(60, 16))).astype(np.float32)
    holdout = stratified_holdout(targets, 0.15, rng)
    split = classifier._Data(pixels=np.zeros((60, 1, 1, 3), np.uint8), targets=targets,
                             fit=np.setdiff1d(np.arange(60), holdout), holdout=holdout)
    first = classifier.fit_probe(features[split.fit], targets[split.fit], "multiclass")
    first_f1 = macro_f1(first.logits(features[split.holdout]), targets[split.holdout], "multiclass")

    def choose(views):
        data = classifier.ProbeData(features, views, targets, "multiclass")
        log = []
        choice = classifier._choose_recipe(data, split, first_f1, np.random.default_rng(1),
                                           classifier.Budget(600), 1e-4, log)
        return choice, [e for e in log if e["stage"] == "holdout test"]

    faithful = [(features + 0.3 * rng.normal(size=features.shape)).astype(np.float32) for _ in range(2)]
    choice, tested = choose(faithful)
    assert choice.recipe.views == 2 and tested[0]["passed"] and choice.holdout_f1 >= first_f1
    # every image's views carry another class's features (shifted one class on): the probe learns nonsense
    swapped = [np.roll(features, 20, axis=0) for _ in range(8)]
    choice, tested = choose(swapped)
    assert choice.recipe.views == 0 and not tested[0]["passed"] and tested[0]["holdout_f1"] < first_f1
    assert choice.holdout_f1 == first_f1


def test_the_feature_pair_is_chosen_only_for_few_images_and_only_when_the_budget_affords_it():
    assert classifier.choose_backbone(50, 300) == (classifier.PAIR, 320)
    assert classifier.choose_backbone(classifier.FEW_IMAGES, 300)[0] == "efficientnet_lite2"  # fine-tuning may follow
    assert classifier.choose_backbone(50, 10)[0] != classifier.PAIR  # 50 images at 0.18 s > a quarter of 10 s


def test_a_feature_pair_trains_with_balanced_blocks_and_exports_the_same_scores(clock, tmp_path):
    items = [(data, {name}) for name in CLASSES for data in photos(name, 0, 5)]
    model = train_classifier(items, task="multiclass", labels=CLASSES, budget_seconds=10, backbone=classifier.PAIR,
                             seed=0)
    pair = model.model.features
    assert isinstance(pair, FeaturePair) and model.backbone == classifier.PAIR
    with torch.inference_mode():
        features = pair(torch.from_numpy(preprocess([data for data, _ in items], model.preprocessing))).numpy()
    first, second = np.linalg.norm(features[:, :1280], axis=1).mean(), np.linalg.norm(features[:, 1280:], axis=1).mean()
    assert abs(first / second - 1) < 0.01  # balanced on the training images (balance_on)
    path = export(model, tmp_path / "pair.onnx")
    card = ModelCard(task=model.task, labels=model.labels, preprocessing=model.preprocessing.to_dict(),
                     backbone=model.backbone)
    served = ServedModel(path, card, threads=2)
    images = photos("daisy", 30, 2) + photos("tulips", 30, 1)
    served_scores = np.array([[{p.label: p.score for p in image}[label] for label in CLASSES]
                              for image in served.predict(images)])
    np.testing.assert_allclose(served_scores, model.predict(images), atol=1e-4)


def test_stratified_holdout_keeps_rare_labels_in_training():
    targets = np.zeros((23, 3), dtype=np.float32)
    targets[:20, 0] = 1
    targets[20:22, 1] = 1
    targets[22, 2] = 1
    holdout = stratified_holdout(targets, 0.15, np.random.default_rng(0))
    assert len(holdout) == 3 and targets[holdout, 0].all()  # 15 % of the big class; the rare ones stay


def test_bad_items_are_refused():
    with pytest.raises(ValueError, match="exactly one"):
        train_classifier([(b"", {"a", "b"})], task="multiclass", labels=["a", "b"], budget_seconds=1)
    with pytest.raises(ValueError, match="not in the label list"):
        train_classifier([(b"", {"c"})], task="multiclass", labels=["a", "b"], budget_seconds=1)


# --- ONNX ---------------------------------------------------------------------------
def test_served_onnx_scores_equal_torch_scores(trained_multiclass, tmp_path):
    model, _ = trained_multiclass
    path = export(model, tmp_path / "model.onnx", extra_metadata={"customlabels.provenance": {"train": "x"}})
    card = ModelCard(task=model.task, labels=model.labels, preprocessing=model.preprocessing.to_dict(),
                     backbone=model.backbone)
    served = ServedModel(path, card, threads=2)
    assert served.onnx.labels == CLASSES and served.onnx.task == "multiclass"
    assert served.onnx.backbone == model.backbone and served.preprocessing == model.preprocessing
    assert served.onnx.metadata["customlabels.provenance"] == '{"train": "x"}'

    def scores(predictions):  # per image, in label order
        return np.array([[{p.label: p.score for p in image}[label] for label in CLASSES] for image in predictions])

    images = photos("daisy", 30, 3) + photos("roses", 0, 2)  # a batch of 5: the batch axis is dynamic
    np.testing.assert_allclose(scores(served.predict(images)), model.predict(images), atol=1e-4)
    np.testing.assert_allclose(scores(served.predict(images[:1])), model.predict(images[:1]), atol=1e-4)

    # What the file serves is the calibrated softmax: the head's logits times the fitted temperature's inverse.
    scale = model.model.calibration_scale
    assert (scale == scale[0]).all() and not torch.allclose(scale, torch.ones(3), atol=1e-3), model.log
    with torch.inference_mode():
        logits = model.model.logits(torch.from_numpy(preprocess(images, model.preprocessing)))
    np.testing.assert_allclose(scores(served.predict(images)), (logits * scale).softmax(1).numpy(), atol=1e-4)
    assert not np.allclose(scores(served.predict(images)), logits.softmax(1).numpy(), atol=1e-3)
